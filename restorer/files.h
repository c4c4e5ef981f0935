// File descriptors of the task to restore: the fd table's dispatcher. The
// parent prepares each fd through its kind (files: state/file_kind.h, kernel
// objects: state/kobj.h, pipes, sockets); stage 1 in the new task opens each
// open file description once with the image's flags and the task's
// file-system credentials, puts it at its lowest fd number with its
// close-on-exec flag, seeks it to its offset, and dups it to the other fds of
// its group (same_as), each with its own close-on-exec flag.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "common/image_reader.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "state/kobj.h"
#include "state/memfd.h"
#include "state/mqueue.h"
#include "state/pipe.h"
#include "state/unix_bound.h"
#include "state/unix_socket.h"

namespace crfs {

struct TreeRestore;  // state/tree_restore.h

// share: a description this process restores and hands to a later process of
// its tree (state/tree_share_restore.h), on `channel` (a socketpair end it keeps).
struct ShareSend {
    int channel = -1;
    int owner_fd = -1;  // this process's fd of the description, or an end of the pipe to give
    uint32_t end = 0;   // image::kShare*
    uint64_t ino = 0;   // the taker's socket (kSharePeer of a unix-bound fd: state/unix_tree.h)
    // sock, kSharePairMade (state/tree_share_restore.h): the pair's type, the maker's ids.
    uint32_t type = 0, euid = 0, egid = 0;
    // kShareReopen: the taker's open flags and offset (state/tree_share_restore.h).
    int flags = 0;
    uint64_t pos = 0;
};

struct FdAction {
    int target = -1;
    int same_as = -1;  // >= 0: dup of that earlier target (one open file description)
    int open_flags = 0;
    bool cloexec = false;
    bool seek = false;
    uint64_t pos = 0;
    std::string path;        // a deleted file: "/proc/self/fd/N" of its prepared copy
    mode_t type = 0;         // S_IFREG or S_IFCHR: what the opened file must be
    dev_t rdev = 0;          // S_IFCHR: the device it must be
    state::KobjPlan kobj;    // kind != 0: made by its kind (state/kobj.h), not opened here
    int pipe = -1;           // >= 0: an end of FdPlan::pipes[pipe] (state/pipe.h)
    int unix_end = -1;       // >= 0: FdPlan::unix_sockets[unix_end] (state/unix_socket.h)
    int unix_bound = -1;     // >= 0: FdPlan::unix_bound.socks[unix_bound] (state/unix_bound.h)
    int prepared = -1;       // made by the daemon (inet socket, O_TMPFILE file): dup'd, not opened
    int reopen_of = -1;      // deltwice: another description of the object at this earlier target
    bool tcp_live = false;   // an established connection: stage 1 ends its repair mode
    bool shared = false;     // kShared: received from an earlier process of the tree
    int share_from = -1;     // ... on this channel (state/tree_share_restore.h)
    uint32_t share_end = 0;  // image::kShare*
    // fifo: a FIFO an earlier process of the tree restores with its bytes, reopened at
    // `path` (it must be FIFO fifo_dev:fifo_ino) once that process hands over an end to
    // hold on `share_from` (state/tree_share_restore.h).
    bool fifo_join = false;
    uint64_t fifo_dev = 0, fifo_ino = 0;
};

struct FdPlan {
    std::vector<FdAction> actions;
    std::vector<UniqueFd> copies;  // deleted files' copies, prepared sockets (parent side)
    std::vector<std::pair<int, int>> early;  // deltwice: state/file_kind.h FilePlanIn::early
    std::vector<state::PipePlan> pipes;
    std::vector<state::UnixPlan> unix_sockets;
    state::UnixBoundSet unix_bound;
    state::MqueuesMade mqueues;            // failclean: restore_image keeps them (NamesMade)
    std::vector<state::MemfdHeld> memfds;  // kobj: held until the blob seals them (state/memfd.h)
    int max_target = -1;
    int min_fd = -1;                                // the lowest fd number no target uses
    const std::vector<ShareSend>* sends = nullptr;  // trees: given once every fd is in place
};

// `min_fd`: the copies are moved to numbers >= min_fd (clear of every target).
// Runs with the writer's credentials (restorer/writer.h as_writer): a deleted
// file's copy is created by the writer (state/file_deleted.cc); `chown`
// (root writers only) gives it the task's owner.
// `tree`, `index`: the tree being restored and this member (share39: state/file_kind.h).
Result<FdPlan> plan_fds(const DecodedImage& img, int image_fd, int min_fd, bool chown,
                        TreeRestore* tree = nullptr, uint32_t index = 0);

// Stage 1 (child): opens every fd of the plan, O_NONBLOCK first (a FIFO or a
// socket where a file was recorded fails at once instead of blocking), checks
// its type, then clears O_NONBLOCK unless the record had it. Syscalls only.
void child_open_fds(const FdPlan& plan, int status_fd);
// Stage 1: moves the freshly made `fd` to a.target with its close-on-exec flag.
void child_place_fd(int fd, const FdAction& a, int status_fd);

}  // namespace crfs
