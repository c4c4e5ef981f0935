// Sessions and process groups of a tree (docs/trees.md, "Sessions and
// groups"): which the restore rebuilds exactly, which are reasons. The
// classification is shared by `reason` (live /proc fields) and the restore
// (the image's process records), so the two cannot disagree.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "state/kind.h"

namespace crfs::state {

// One process of a tree: pid, parent, group and session (stat fields 1, 4-6).
struct TreeIds {
    pid_t pid = 0, ppid = 0, pgid = 0, sid = 0;
};

// How a process other than the root gets its group at restore.
enum class GroupSource {
    kOwn,          // it leads it (setpgid(0, 0), or setsid)
    kMember,       // a member of the tree leads it (created first, then joined)
    kRoot,         // the root's group, led from outside the tree (as the root's)
    kPlaceholder,  // its leader is gone: a placeholder with the leader's pid makes it
};

// The source of member i's group (i > 0; members parents first, root first).
GroupSource group_source(const std::vector<TreeIds>& m, size_t i);

// What the restore cannot rebuild from the ids alone, one text per process
// ("session S is neither its own nor its parent's ..."); empty when it can.
// Outside holders of a leaderless group are the caller's to check.
std::vector<std::pair<pid_t, std::string>> tree_group_problems(const std::vector<TreeIds>& m);

// Reason lines for the live tree `members` (root first): the problems above,
// and a group whose leader is not in the tree but whose number is still held
// outside it (its leader alive, or other members).
Status detect_tree_groups(const std::vector<TaskView*>& members, Reasons& out);

}  // namespace crfs::state
