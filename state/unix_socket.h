// Unix socketpairs whose two ends are both fds of the task: detect, dump and
// restore halves of one kind (docs/state.md "unix socketpair").
//   detect  peers, names, states and queue lengths come from the kernel's
//           unix_diag (NETLINK_SOCK_DIAG); the queue itself and the options are
//           read through a copy of the fd (pidfd_getfd). Bound, listening and
//           unconnected sockets are state/unix_bound.cc's; a peer outside the
//           task, fds in flight
//           (SCM_RIGHTS), credentials of another process and options crfs does
//           not restore are reasons;
//   dump    each end's receive queue is peeked (SO_PEEK_OFF, MSG_PEEK) while the
//           task is frozen: the socket keeps it;
//   restore stage 1 makes the pair, sets the options, sends each end's queue
//           from the other end, applies shutdown, and puts the ends at their fds.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/image_reader.h"
#include "common/result.h"
#include "state/kind.h"

namespace crfs::state {

struct FdContext;

// One unix socket as unix_diag reports it.
struct UnixDiag {
    uint64_t ino = 0, peer = 0;
    uint8_t type = 0, state = 0, shutdown = 0;
    std::string name;      // bound name: a path, or "@..." for an abstract one
    std::string raw_name;  // sun_path as bound (an abstract one starts with a NUL)
    uint32_t rqueue = 0;
    uint32_t wqueue = 0;                // listening: the backlog; else bytes sent and not yet read
    uint64_t vfs_dev = 0, vfs_ino = 0;  // a path name: its socket file
    std::vector<uint64_t> icons;        // listening: the clients waiting, first first
};

// The unix sockets of the daemon's network namespace, dumped once on first use.
class UnixTable {
  public:
    const UnixDiag* find(uint64_t ino);
    const std::map<uint64_t, UnixDiag>& all() { return load(), by_ino_; }
    const std::string& error() { return load(), error_; }

  private:
    void load();
    bool loaded_ = false;
    std::string error_;
    std::map<uint64_t, UnixDiag> by_ino_;
};

// A socket fd (link "socket:[N]") the unix table knows.
bool is_unix_socket(const FdView& f, FdContext& ctx);
std::optional<std::string> unix_socket_reason(TaskView& t, const FdView& f, FdContext& ctx);

// The unix-socket record of socket `ino` (the end at fd `fd`), read while the
// task is frozen (the socket keeps its queue), and its unix-options record
// when SO_KEEPALIVE is set, appended to `out`.
Status dump_unix_socket(pid_t pid, int fd, uint64_t ino,
                        std::vector<std::pair<image::RecordType, std::string>>& out);

// Shared with the named sockets (state/unix_bound.cc).
std::string describe_unix(const UnixDiag& d);

// SO_PEERCRED of a socket whose `call` (listen, connect, socketpair) the
// process `by` makes again at restore: that process's pid, and the effective
// ids it has (the restore calls it with the writer's, which a writer
// restoring its own task has); another is a reason (EBUSY, state/unix_tree.h).
Status check_peer_cred(const std::string& what, const ucred& peer, const char* call, pid_t by);
// The process that calls socketpair() again at restore for a pair whose
// first holder in `inside` (image order) is `holder`: an earlier process that
// SO_PEERCRED (`peer`) names, holding neither end (it makes the pair and
// hands both ends over: state/tree_share_restore.h), or else `holder`
// itself; check_peer_cred's reason when the ids do not match.
Result<pid_t> socketpair_maker(const std::string& what, std::span<const pid_t> inside, pid_t holder,
                               const ucred& peer);
// SO_PEERCRED of the socket at `fd` of `pid` (through pidfd_getfd).
Result<ucred> unix_peer_cred(pid_t pid, int fd);
uint64_t socket_ino(const FdView& f);
bool task_holds(TaskView& t, uint64_t ino);
struct UnixQueue {
    image::UnixSocketRecord rec{};
    std::vector<uint32_t> msgs;
    std::string data;
    std::vector<std::string> senders;  // per message: the sender's sun_path ("" unnamed)
    ucred peer{};  // SO_PEERCRED: who connected it (listen() for a listener), not saved
};
// The options and (unless `queue` is false: a listening socket) receive queue
// of the socket at `fd` of `pid`, through a copy of the fd, consuming nothing.
// What cannot be saved is an EBUSY error in words. `keepalive`: where
// SO_KEEPALIVE goes (null: set is a reason).
Result<UnixQueue> read_unix_socket(pid_t pid, int fd, const UnixDiag& d, bool queue = true,
                                   bool* keepalive = nullptr);
// Stage 1: SO_SNDBUF, SO_RCVBUF, SO_PASSCRED, timeouts of `rec` on `s`; 0 or an errno.
int set_unix_options(int s, const image::UnixSocketRecord& rec);
// Stage 1: sends `msgs` lengths of `data` from `from` (to `to` when not null).
int send_unix_queue(int from, const uint32_t* lens, size_t n, const char* data, uint32_t type,
                    const sockaddr* to = nullptr, socklen_t to_len = 0);

// Restore: every unix-socket record in range, paired, and matched with fds.
Status check_unix_sockets(const DecodedImage& img);

// socketpair(), listen() and connect() record the caller's effective ids
// (SO_PEERCRED); a root writer's stage 1 is root (with the task's file-system
// ids), so around those calls only it takes the task's effective ids (the
// file-system ids follow them meanwhile; sockets are named as before). Raw
// syscalls: glibc's wrappers signal threads this clone of the daemon lacks.
class TaskIds {
  public:
    TaskIds(uid_t euid, gid_t egid);  // nothing to do unless root and the task is not
    TaskIds(const TaskIds&) = delete;
    TaskIds& operator=(const TaskIds&) = delete;
    ~TaskIds() { leave(); }
    int error() const { return err_; }
    int leave();  // root again, with the file-system ids it had: 0, or the first errno

  private:
    bool on_ = false;
    int err_ = 0;
    uid_t fsuid_ = 0;
    gid_t fsgid_ = 0;
};

// `call` (0 or an errno) with the task's effective ids.
template <class F>
int as_task(uid_t euid, gid_t egid, F&& call) {
    TaskIds ids(euid, egid);
    int e = ids.error() ? ids.error() : call();
    int left = ids.leave();
    return e ? e : left;
}

// One end to make in stage 1 (mutable fields: the child's own memory copy).
struct UnixPlan {
    image::UnixSocketRecord rec{};
    uid_t euid = 0;  // the task's effective ids (TaskIds)
    gid_t egid = 0;
    size_t peer = 0;  // index of the other end in the plan
    std::vector<uint32_t> msgs;
    std::string data;
    mutable int held = -1;  // fd >= min_fd until every fd is in place
    int pair_from = -1;     // sock: the channel its pair's maker sends both ends on (or -1)
    uint32_t options = 0;   // sock: image::kUnixKeepalive (its unix-options record)
    mutable bool given = false;
};

Result<std::vector<UnixPlan>> plan_unix_sockets(const DecodedImage& img, int image_fd);

// Stage 1, syscalls only: puts end `i` at `target` (making the pair first if
// needed). Returns 0 or an errno.
int child_unix_fd(const std::vector<UnixPlan>& all, size_t i, int target, int open_flags,
                  bool cloexec, int min_fd);
void child_close_unix(const std::vector<UnixPlan>& all);
// Stage 1: socketpair() of `type` with the task's effective ids (TaskIds),
// non-blocking and close-on-exec. Returns 0 or an errno.
int make_socketpair(uint32_t type, uid_t euid, gid_t egid, int sv[2]);

}  // namespace crfs::state
