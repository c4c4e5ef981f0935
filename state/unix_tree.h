// Unix connections between the processes of one image (docs/trees.md, "Unix
// connections between members"): a server process with a listening socket,
// the connections it accepted whose clients are other processes of the tree,
// and the clients still waiting in its listener's queue.
//
// Who makes what at restore: the first process of the image (parents first)
// holding a unix socket is its maker; every socket of one listener (the
// listener, its accepted ends, their clients, its waiting clients) is made by
// the listener's maker, the server, with the single-process code
// (state/unix_bound.h), and a client end held by a later process is handed to
// it (image::kSharePeer, state/tree_share_restore.h), its unix-bound record moved to
// the server's records (state/tree_share_dump.cc). A client in an earlier
// process than its server, an accepted end whose maker is not its listener's
// are reasons.
//
// Datagrams (docs/trees.md "Datagrams between members"): the datagram sockets
// of the tree fall into groups, joined by a connection (one connected to the
// other) or by a datagram queued at one from the other's name (an unconnected
// sender: nothing but the receiver's queue tells whom a socket sent to). The
// first member holding a socket of a group makes every socket of it (binds
// each, sends every queued datagram from its real sender, bound to its name,
// connects), and hands each one a later member holds to it (kSharePeer with
// the group's anchor: classify_sharing), whose records (unix-bound,
// unix-sender) move to the maker's. A relative name whose holder's directory
// is not its maker's is a reason.
//
//   detect   UnixMembers tells, for the socket kinds, which member holds which
//            unix socket first (/proc/<pid>/fd of each member, the caller's rights);
//   restore  check_unix_given checks a kSharePeer fd given by a unix-bound fd;
//            unix_bound_given finds the socket to hand over in stage 1.
//
// SO_PEERCRED: the kernel fills it in at listen() (a listener, and every
// client that connects to it) and connect() (the accepted end: the
// connecting process), and nothing sets it later. So a client held by a later
// process is made and connected by that process itself, at the server's turn:
//
//   server (stage 1, its fds)                  client process (stage 1, before its fds)
//   bind, listen
//   for each client of another process, in queue order:
//     "your turn" (+ its cwd for a relative name) --> socket, options, name, connect
//     accept (an accepted one), fill queues      <-- the connected socket (SCM_RIGHTS)
//   ... its fds in place: hands the client back (state/tree_share_restore.h), as before
//
// A client process answers its servers in whatever order they ask (poll):
// a server waits only for its clients' answers, and a client answers as soon
// as it is asked, so nothing waits in a cycle.
#pragma once

#include <poll.h>
#include <sys/types.h>
#include <sys/un.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "common/image_reader.h"
#include "common/result.h"
#include "state/kind.h"
#include "state/tree_share.h"
#include "state/unix_bound.h"

namespace crfs::state {

class UnixTable;

// A client socket a later process of the tree connects itself (above).
struct UnixConnectPlan {
    int fd = -1;           // the taker's fd (for errors)
    int channel = -1;      // to the server (its end: UnixBoundPlan::connector)
    UnixBoundPlan client;  // its type, options and name
    sockaddr_un to{};      // the listener's name
    socklen_t to_len = 0;
    uid_t euid = 0;  // the client process's effective ids in the image
    gid_t egid = 0;
};

// The unix sockets each process of the image holds by an fd.
class UnixMembers {
  public:
    static constexpr size_t kNone = ~size_t(0);
    // `pid` in its image: `image_pids` (parents first), or when empty `pid`
    // and its descendants. A member whose fds cannot be read holds nothing.
    UnixMembers(pid_t pid, std::span<const pid_t> image_pids, pid_t self_tgid, UnixTable& table);

    size_t self() const { return self_; }
    size_t size() const { return pids_.size(); }
    bool member(pid_t p) const { return std::ranges::count(pids_, p) > 0; }
    pid_t pid(size_t m) const { return pids_[m]; }
    const std::set<uint64_t>& held(size_t m) const { return held_[m]; }
    // The first member holding socket `ino` (its maker), or kNone: outside.
    size_t first(uint64_t ino) const;
    // The member that makes socket `ino` at restore: its first holder, but
    // for a datagram socket the first member holding a socket of its group
    // (above), which hands it over like a client (kNone: outside).
    size_t maker(uint64_t ino, UnixTable& table) const;
    // The socket classify_sharing gives `ino` with (MemberFd::peer): for a
    // datagram socket its group's anchor, the one its maker holds first (0:
    // `ino` is the anchor); else unix_made_with.
    uint64_t made_with(uint64_t ino, UnixTable& table) const;

  private:
    struct Group {
        size_t maker = kNone;
        uint64_t anchor = 0;
    };
    // ino -> its datagram group (made on the first question about one).
    const Group* group(uint64_t ino, UnixTable& table) const;

    size_t self_ = 0;
    std::vector<pid_t> pids_;
    std::vector<std::set<uint64_t>> held_;
    std::map<uint64_t, std::pair<size_t, int>> first_;  // ino -> first holder, its fd
    mutable bool grouped_ = false;
    mutable std::map<uint64_t, uint64_t> root_;  // datagram socket -> its group's root
    mutable std::map<uint64_t, Group> groups_;   // root -> group
};

// The MemberFds of the image `pids` (parents first): a datagram socket's
// `peer` becomes its group's anchor (UnixMembers::made_with), so
// classify_sharing gives it by its maker.
void unix_dgram_anchors(std::span<const pid_t> pids, pid_t self_tgid,
                        std::span<std::vector<MemberFd>> fds);

// Restore: the datagram groups of one image's unix-bound records (joined by
// sock.peer and unix-sender records): ino -> the smallest ino of its group.
std::map<uint64_t, uint64_t> unix_dgram_groups(const DecodedImage& img);

// The socket whose maker makes unix socket `ino` too: its peer, or the
// listener a waiting client waits in; 0: none (classify_sharing's MemberFd::peer).
uint64_t unix_made_with(UnixTable& table, uint64_t ino);

// Restore: fd `taker` of a later process is given (kSharePeer) by the unix-bound
// fd `giver_fd` of `giver`: the unix-bound record with the taker's inode is in
// the giver's records, no fd of the giver holds it, and it is the client
// connected to the accepted socket at `giver_fd`, a client waiting in the
// listener at `giver_fd`, or a plain datagram socket of the group of the one
// at `giver_fd`.
Status check_unix_given(const DecodedImage& giver, const FdEntry& giver_fd, const FdEntry& taker);

// A plain datagram socket given by its group's maker (made and connected
// there, no connect by the taker: plan_connect skips it).
bool unix_dgram_given(const image::UnixBoundRecord& r);

// Stage 1, after the giver's fds are in place: the socket to hand over, or -1.
int unix_bound_given(const UnixBoundSet& set, uint64_t ino);

// Stage 1 of a client process, before its fds: answers every server's turn
// (`polls`: room for one per plan). Returns 0, or an errno with *failed the
// plan that failed.
int child_unix_connect(std::span<const UnixConnectPlan> plans, pollfd* polls, size_t* failed);

// One byte with at most one fd (SCM_RIGHTS; fd < 0: none) on a unix socket.
// Syscalls only (stage 1). Return 0 or an errno; recv_one_fd's *fd is -1 when
// no fd came, and end of file is EPIPE.
int send_one_fd(int channel, int fd);
int recv_one_fd(int channel, int* fd);

}  // namespace crfs::state
