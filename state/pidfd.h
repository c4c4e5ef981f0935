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
#include <vector>

#include "common/result.h"
#include "crfs/restorer_args.h"

namespace crfs {
struct TreeRestore;
struct FdPlan;
struct DecodedImage;
}  // namespace crfs

namespace crfs::state {

// restore_tree, once every member is planned (before the root's clone): a
// channel for each pidfd whose target is neither an ancestor nor a child of
// its holder (state/pidfd.cc check_target allowed it); thpidfd: the pipe of
// each member another one holds a pidfd of a thread of (a tid that is no
// thread of a member is refused here, before any process is made).
Status tree_pidfd_plan(TreeRestore& tree);

// thpidfd: the pidfds of threads among the task's fds (PIDFD_THREAD of a tid
// that is not a process: its own thread, or another member's), which the blob
// makes once the threads exist (restorer/blob/thread_pidfds.h), and their dups.
// Marks each so that stage 1 leaves a placeholder at its fd; for another
// member's thread, tree_pidfd_plan gives the placeholder, the read end of that
// member's pipe (closed by its blob once its threads exist):
//
//   daemon, before the root's clone    member t (its blob)         holder h (its blob)
//   pipe: t's write end >= min_fd_t    create_threads              create_threads
//         h's read end >= min_fd_h     close(write end) -------->  read(fd N) until EOF
//         (stage 1 puts it at fd N)                                pidfd_open(tid), dup3 to N
//
// thpidfd2: the epoll watches of these fds (stage 1 adds none on a
// placeholder) come last, added by the blob once they are made; an fd of a
// later member of a tree given the description of an earlier member's such
// fd (a share-fd record: a fork after the pidfd_open) is a placeholder too,
// the receiving end of a channel that member's blob sends the description on
// once made, one message per later holder (`give`, `gives` of its entry):
//
//   daemon (at the taker's plan)          giver g (its blob)       taker t (its blob)
//   socketpair: g's end >= min_fd_g       pidfd_open, dup3 to N    recvmsg on fd M
//     t's end >= min_fd_t (at fd M)       sendmsg(N) per taker --> dup3 to M
// `tree`, `index`: the tree being restored (else a thread of another member
// is refused) and this member.
Result<std::vector<crfs_ra_thread_pidfd>> plan_thread_pidfds(const DecodedImage& img, FdPlan& fds,
                                                             TreeRestore* tree, uint32_t index = 0);

// Stage 1 of the cloner, right after member j's clone (pid): its pidfds for
// later holders. A failure is reported on status_fd and ends the caller.
void child_pidfd_give(const TreeRestore& tree, size_t j, pid_t pid, int status_fd);

}  // namespace crfs::state
