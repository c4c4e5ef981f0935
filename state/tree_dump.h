// The process tree of a checkpoint (docs/trees.md): the root and every
// descendant, all threads of each, frozen together.
//
// Freezing: the root's threads first (FrozenThreads), then the children of
// every thread of every frozen process, listed again until a pass over all of
// them finds none that is not frozen yet. That is complete for the same
// reason as FrozenThreads' listing: a child being forked by a thread we froze
// is in its parent's children list before the fork returns to user space
// (where the interrupt stops the parent), and frozen processes fork nothing.
// A child that exits before it is seized is skipped; a zombie child is not
// frozen (ptrace cannot seize it): it is read once (state/zombie.h), and the
// post-freeze `reason` says whether it can come back.
//
// Tracers (common/tracers.h): each member is seized, and released, by the
// thread that traces it, which its capture runs on; the new children found in
// one pass are frozen together, each by its own tracer. Without Tracers every
// member is this thread's.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "common/image_writer.h"
#include "common/procfs.h"
#include "common/result.h"
#include "common/tracers.h"
#include "state/threads.h"
#include "state/zombie.h"

namespace crfs {

class FrozenTree {
  public:
    struct Member {
        pid_t pid = 0;
        uint64_t starttime = 0;
        FrozenThreads threads;
        size_t depth = 0;   // 0: the root, else its parent's + 1
        size_t tracer = 0;  // its key in Tracers: every ptrace call on it runs there
        // perf: what the freeze read of it, for the capture not to read it again:
        // its stat once it was frozen (its start time's), and its children as
        // the last pass listed them (task/*/children, as TaskView::children),
        // when every member was frozen: the tree's final lists.
        ProcStat stat;
        std::vector<pid_t> children;
    };
    static Result<FrozenTree> freeze(pid_t root, Tracers* tracers = nullptr);
    FrozenTree() = default;
    FrozenTree(FrozenTree&&) = default;
    FrozenTree& operator=(FrozenTree&&) = delete;
    ~FrozenTree();  // release() unless done: each member on its tracer
    // Parents before children; the root first.
    std::vector<Member>& members() { return members_; }
    // life: the members' zombie children, each read while its parent is frozen.
    const std::vector<state::ZombieDump>& zombies() const { return zombies_; }
    // Releases every process, children first (the deepest members together,
    // then their parents'...); the first failure is returned.
    Status release();

  private:
    // Runs `fn` on tracer `tracer`'s thread (this one without Tracers).
    std::future<void> post(size_t tracer, std::function<void()> fn);
    std::vector<Member> members_;
    Tracers* tracers_ = nullptr;
    std::vector<state::ZombieDump> zombies_;
};

// The process record that starts a member's records in a tree's image.
void add_process_record(ImageWriter& w, const ProcStat& st, bool was_stopped);
// life: a zombie's process record and zombie record (after every member).
void add_zombie_records(ImageWriter& w, const state::ZombieDump& z);

}  // namespace crfs
