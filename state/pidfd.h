// pidfd2: a pidfd one member of a tree holds of another member that may not
// exist yet when the holder's fds are made (a sibling, a grandchild, a
// cousin: docs/trees.md "pidfds between members"). The process that clones
// the target opens it right after the clone (pidfd_open with the holder's
// flags) and hands it over on a channel the daemon made; the holder receives
// it at its fd's turn (state/pidfd.cc make). The target's cloner is its
// parent, which clones it before its own fds, so nothing waits on fds:
//
//   daemon, before the root's clone     cloner c (stage 1)          holder h (stage 1)
//   socketpair: h's end >= min_fd_h     clone3(target)              ... fds in order
//               c's end >= min_fd_c     pidfd_open(target, flags)   recvmsg (blocks)
//                                       sendmsg ---------------->   dup3 to its fd
#pragma once

#include <sys/types.h>

#include <cstddef>

#include "common/result.h"

namespace crfs {
struct TreeRestore;
}

namespace crfs::state {

// restore_tree, once every member is planned (before the root's clone): a
// channel for each pidfd whose target is neither an ancestor nor a child of
// its holder (state/pidfd.cc check_target allowed it).
Status tree_pidfd_plan(TreeRestore& tree);

// Stage 1 of the cloner, right after member j's clone (pid): its pidfds for
// later holders. A failure is reported on status_fd and ends the caller.
void child_pidfd_give(const TreeRestore& tree, size_t j, pid_t pid, int status_fd);

}  // namespace crfs::state
