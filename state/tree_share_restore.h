// What the processes of a restored tree share (docs/trees.md, "Sharing
// between members"): an open file description held by several processes, or
// a pipe whose ends are in different processes, is restored ONCE, by the
// first process of the image (parents first) that holds it, with the
// single-process code (restorer/files.cc, state/pipe.cc ...), and handed to
// every later process that held it over a unix socketpair (SCM_RIGHTS).
//
// Why SCM_RIGHTS on channels the daemon makes: every process of the tree is a
// copy of the daemon (state/tree_restore.h), so a socketpair made while the plans
// are made is inherited by all; the giver is an earlier process, never an
// ancestor of the taker's giver chain (givers are earlier, records may not
// point at records that are themselves given), so nothing waits in a cycle.
// The description is made by its giver in stage 1 as any fd is (the writer's
// credentials, the task's file-system credentials for a root writer): the
// daemon opens nothing. Inheritance through fork order cannot do it (a
// description opened in stage 1 exists only after the processes are made,
// and siblings share no copy), and pidfd_getfd needs ptrace rights over the
// giver that a non-root writer's processes lose with setuid.
//
//   plan of process i (daemon)         stage 1 of giver g      stage 1 of taker i
//   socketpair: taker end >= min_fd_i  fds in place            ... recvmsg (blocks)
//               giver end >= min_fd_g  sendmsg(fd) ----------> dup3 to its fd
//
// A socketpair whose SO_PEERCRED names an earlier process that holds neither
// end (a parent that made it, gave the ends to its children and closed its
// copies; unix-maker record, state/unix_socket.h) is made again by that
// process in stage 1, with its ids, and both ends go on one channel to the
// first process holding an end, which restores them as its own pair:
//
//   maker m (after its fds)                   first holder i (placing an end)
//   socketpair --------- sendmsg(end 0), sendmsg(end 1) ---------> recvmsg x2
//   close both                                 options, queues, shutdown
#pragma once

#include <cstdint>
#include <span>

#include "common/image_reader.h"
#include "common/result.h"
#include "restorer/files.h"

namespace crfs {

struct RestoreRequest;

// A ShareSend's end that is no image value: make a socketpair and send both ends.
inline constexpr uint32_t kSharePairMade = 0x100;
// fifo: send the O_RDWR end made to hold the bytes of the FIFO at owner_fd (a
// later process opens its own description of it by its path meanwhile).
inline constexpr uint32_t kShareFifoHeld = 0x200;

// After plan_fds of process req.tree_index: checks every kShared fd of `img`
// against its giver's records (an earlier process, a description of its own
// that is itself not given, a pipe end or socketpair peer it does not hold;
// several takers of one end share its one description), makes its channel, and registers the
// process for later takers. An image that is not a tree must hold no kShared fd.
Status tree_share_plan(const RestoreRequest& req, const DecodedImage& img, FdPlan& fds, int min_fd);

// mqtree: a description of the object at the giver's fd `g` (its records
// `giver`) opened again for `f` (share-fd record `r`, end kShareReopen): an
// unlinked queue, a deleted file or directory or a memfd, the same inode,
// flags that its kind's own restore accepts and a file's offset.
Status check_reopen(const DecodedImage& giver, pid_t giver_pid, const image::ShareFdRecord& r,
                    const FdEntry& g, const FdEntry& f);

// The channels process `index` sends on (sorted), kept through stage 1's close.
std::span<const int> tree_share_keep(const struct TreeRestore* tree, uint32_t index);

// Stage 1, syscalls only.
// Before the fds: connects the clients of servers of earlier processes that
// this process holds (state/unix_tree.h), at each server's turn.
void child_share_connect(const struct TreeRestore* tree, uint32_t index, int status_fd);
void child_share_recv(const FdAction& a, int status_fd);
void child_share_send(const FdPlan& plan, int status_fd);
// fifo: waits for the end the earlier process hands over, then opens the FIFO
// by its path with the fd's own flags.
void child_fifo_join(const FdAction& a, int status_fd);
// Closes every fd but `keep` and `extra` (each sorted).
void child_close_all_but(std::span<const int> keep, std::span<const int> extra, int status_fd);

}  // namespace crfs
