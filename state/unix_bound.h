// Named, listening and accepted unix sockets of one process: detect, dump and
// restore halves of one kind (docs/state.md "Pipes and unix sockets").
//   detect  every unix socket that is not an unnamed socketpair end: bound
//           (a path or an abstract name, autobound too), listening (with the
//           clients waiting in its queue), accepted and client ends, datagram
//           sockets connected by a name. unix_diag gives names, peers, the
//           listener's queue (UDIAG_SHOW_ICONS), queue lengths and the socket
//           file (UDIAG_SHOW_VFS); options and queues are read as for a
//           socketpair (state/unix_socket.h). A peer, a waiting client or a
//           datagram's sender outside the task, a name that no longer leads
//           to the socket, a waiting connection with bytes queued, ... are
//           reasons;
//   dump    one unix-bound record per socket, unix-sender records naming who
//           sent each queued datagram;
//   restore stage 1 makes every socket, binds the names as the writer (a
//           path left behind by the checkpointed socket itself is unlinked
//           first: same inode and no socket behind it), refills datagram
//           queues from their senders, listens, connects and accepts the
//           accepted pairs, connects the waiting clients in queue order, then
//           connects datagram sockets and applies shutdown.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <climits>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "common/image_reader.h"
#include "common/result.h"
#include "state/kind.h"
#include "state/shared_slots.h"

namespace crfs::state {

struct FdContext;

// sun_path as bind took it: an abstract name whole, a path up to its NUL
// (as a datagram's sender address reads).
std::string unix_bound_name(const std::string& raw);

// A unix socket fd this kind claims: anything but an unnamed socketpair end.
bool is_unix_bound(const FdView& f, FdContext& ctx);
std::optional<std::string> unix_bound_reason(TaskView& t, const FdView& f, FdContext& ctx);

// The records of the unix socket `ino` at `fd` of the frozen `pid`, appended
// to `out`; false (nothing appended) when it is a socketpair end. `image_pids`:
// the processes of the image (empty: `pid` and its descendants).
Result<bool> dump_unix_bound(pid_t pid, int fd, uint64_t ino,
                             std::vector<std::pair<image::RecordType, std::string>>& out,
                             std::span<const pid_t> image_pids = {});

// Restore: every unix-bound and unix-sender record in range and consistent,
// each socket held by exactly one fd.
Status check_unix_bound(const DecodedImage& img);

// A failed restore removes the socket files its stage 1 bound (docs/trees.md
// "A failed restore"). Each path socket has a slot, in a mapping the clones
// share with the daemon (state/shared_slots.h), where stage 1 records the file
// its bind made (lstat right after the bind) and its absolute path (getcwd
// for a relative name).
struct UnixBoundFile {
    uint64_t dev = 0, ino = 0;
    uint32_t made = 0;  // written last
    char path[PATH_MAX] = {};
};

// The slots of one process's sockets.
class UnixBoundFiles : public SharedSlots<UnixBoundFile> {
  public:
    using SharedSlots::SharedSlots;
    // Unlinks every file recorded that its path still names (the directory
    // is opened once; the name in it is the socket file with that dev/ino),
    // with this thread's credentials.
    void remove() const;
};

// One socket to make in stage 1 (mutable fields: the child's own memory copy).
struct UnixBoundPlan {
    image::UnixBoundRecord rec{};
    std::vector<uint32_t> msgs;
    std::string data;
    std::vector<int> senders;  // per message: the index of its sender, -1 an unnamed one
    int peer = -1, listener = -1;
    sockaddr_un addr{};
    socklen_t addr_len = 0;
    char path[sizeof addr.sun_path + 1] = {};  // a path name, NUL-terminated
    mutable int held = -1;
    mutable bool given = false;
    // trees: a client that a later process makes and connects itself, on this
    // channel to it (state/unix_tree.h child_unix_connect); -1: made here.
    int connector = -1;
    UnixBoundFile* file = nullptr;  // a path name's slot (UnixBoundSet::files)
};
struct UnixBoundSet {
    std::vector<UnixBoundPlan> socks;
    UnixBoundFiles files;         // the path names' slots: restore_image keeps them (NamesMade)
    std::vector<size_t> waiting;  // clients to connect, in their listeners' queue order
    mutable bool made = false;
    uid_t euid = 0;  // the task's effective ids: listen() and connect() record them
    gid_t egid = 0;
};

// As the writer (plan_fds): reads the queues, checks that every path name is
// free or left behind by the socket itself.
Result<UnixBoundSet> plan_unix_bound(const DecodedImage& img, int image_fd);

// Stage 1, syscalls only: makes every socket on the first call, then puts
// socket `i` at `target`. Returns 0 or an errno.
int child_unix_bound_fd(const UnixBoundSet& set, size_t i, int target, int open_flags, bool cloexec,
                        int min_fd);
void child_close_unix_bound(const UnixBoundSet& set);
// Stage 1 of a later process of a tree: makes client `c` (its options, its
// name) and connects it to `to` (a relative path from the directory `dir`).
// Returns the socket, or -errno.
// `euid`, `egid`: the process's effective ids in the image.
int child_make_client(const UnixBoundPlan& c, const sockaddr_un& to, socklen_t to_len, int dir,
                      uid_t euid, gid_t egid);

}  // namespace crfs::state
