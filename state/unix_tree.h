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
// it (image::kSharePeer, restorer/tree_share.h), its unix-bound record moved to
// the server's records (checkpoint/tree_share.cc). A client in an earlier
// process than its server, an accepted end whose maker is not its listener's,
// a datagram socket connected across processes are reasons.
//
//   detect   UnixMembers tells, for the socket kinds, which member holds which
//            unix socket first (/proc/<pid>/fd of each member, the caller's rights);
//   restore  check_unix_given checks a kSharePeer fd given by a unix-bound fd;
//            unix_bound_given finds the socket to hand over in stage 1.
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <set>
#include <span>
#include <vector>

#include "common/image_reader.h"
#include "common/result.h"
#include "state/kind.h"

namespace crfs::state {

class UnixTable;
struct UnixBoundSet;

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

  private:
    size_t self_ = 0;
    std::vector<pid_t> pids_;
    std::vector<std::set<uint64_t>> held_;
    std::map<uint64_t, size_t> first_;
};

// The socket whose maker makes unix socket `ino` too: its peer, or the
// listener a waiting client waits in; 0: none (classify_sharing's MemberFd::peer).
uint64_t unix_made_with(UnixTable& table, uint64_t ino);

// Restore: fd `taker` of a later process is given (kSharePeer) by the unix-bound
// fd `giver_fd` of `giver`: the unix-bound record with the taker's inode is in
// the giver's records, no fd of the giver holds it, and it is the client
// connected to the accepted socket at `giver_fd`, or a client waiting in the
// listener at `giver_fd`.
Status check_unix_given(const DecodedImage& giver, const FdEntry& giver_fd, const FdEntry& taker);

// Stage 1, after the giver's fds are in place: the socket to hand over, or -1.
int unix_bound_given(const UnixBoundSet& set, uint64_t ino);

}  // namespace crfs::state
