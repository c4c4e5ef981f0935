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
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "common/image_writer.h"
#include "common/procfs.h"
#include "common/result.h"
#include "state/threads.h"
#include "state/zombie.h"

namespace crfs {

class FrozenTree {
  public:
    struct Member {
        pid_t pid = 0;
        uint64_t starttime = 0;
        FrozenThreads threads;
    };
    static Result<FrozenTree> freeze(pid_t root);
    // Parents before children; the root first.
    std::vector<Member>& members() { return members_; }
    // life: the members' zombie children, each read while its parent is frozen.
    const std::vector<state::ZombieDump>& zombies() const { return zombies_; }
    // Releases every process, children first; the first failure is returned.
    Status release();

  private:
    std::vector<Member> members_;
    std::vector<state::ZombieDump> zombies_;
};

// The process record that starts a member's records in a tree's image.
void add_process_record(ImageWriter& w, const ProcStat& st, bool was_stopped);
// life: a zombie's process record and zombie record (after every member).
void add_zombie_records(ImageWriter& w, const state::ZombieDump& z);

}  // namespace crfs
