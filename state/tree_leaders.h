// Process groups of a restored tree (docs/trees.md, "Sessions and groups"):
// a group led by another member is made by its leader first and then joined;
// a group whose leader is gone is made by a placeholder leader, as CRIU's
// helpers do: a process cloned with the leader's pid that calls setpgid(0, 0),
// waits until every member joined, and exits; its parent (the parent of the
// group's first member) reaps it in stage 1, so no restored process ever sees
// it (it is cloned with no exit signal).
//
//   parent X: session ---- clone3(placeholder G) ---- clone3(children) ---- join ---- waitpid(G)
//   placeholder G:  setpgid(0, 0), made[G] = 1 ... joined[G] == joiners ... exit
//   member J (any):  session, children, wait made[G], setpgid(0, G), joined[G]++
//
// Waits are futexes on a page shared by the whole tree (MAP_SHARED, mapped by
// the daemon before the root is cloned), each bounded. Phase order makes it
// free of cycles: making a group (session step, placeholder) depends only on
// the process existing, and every process is created before anyone joins.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "common/result.h"
#include "crfs/image_format.h"
#include "state/tree_groups.h"

namespace crfs {

class TreeGroups {
  public:
    struct Placeholder {
        pid_t pid = 0;
        int parent = -1;  // the member that clones and reaps it
        uint32_t joiners = 0;
    };
    struct Join {
        state::GroupSource source = state::GroupSource::kOwn;
        int slot = -1;  // the leader's: a member's index, or members + placeholder index
    };

    TreeGroups() = default;
    TreeGroups(const TreeGroups&) = delete;
    TreeGroups& operator=(const TreeGroups&) = delete;
    ~TreeGroups();

    // Checks the image's ids (EOPNOTSUPP naming what cannot be rebuilt, as
    // `reason` does at checkpoint), finds the placeholders, maps the page.
    Status plan(const std::vector<image::ProcessRecord>& procs);
    // EBUSY when a placeholder's pid is taken.
    Status check_free() const;
    const std::vector<Placeholder>& placeholders() const { return placeholders_; }

    // Stage 1 of member `index` (no allocation), in this order.
    void made(uint32_t index) const;                               // after its session step
    void spawn_placeholders(uint32_t index, int status_fd) const;  // before its children
    void join(uint32_t index, int status_fd) const;                // after its children
    void reap_placeholders(uint32_t index, int status_fd) const;   // last

  private:
    uint32_t* made_word(int slot) const { return sync_ + slot; }
    uint32_t* joined_word(int slot) const { return sync_ + kSlots + slot; }
    [[noreturn]] void placeholder_main(size_t k, int status_fd) const;

    static constexpr int kSlots = 512;
    std::vector<Join> joins_;  // per member
    std::vector<Placeholder> placeholders_;
    std::vector<pid_t> pgids_;  // per member
    pid_t root_ = 0;
    uint32_t* sync_ = nullptr;
};

}  // namespace crfs
