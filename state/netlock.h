// The network lock: while an established TCP connection belongs to an image
// (from its checkpoint until its restore), the packets of its 4-tuple are
// dropped, so that neither the old socket (killed) nor the peer's
// retransmissions reach the other side and no reset is sent.
//
// The lock is an nftables table "crfs_<daemon tgid>" with the `owner` flag,
// created by an `nft -ie` child of the daemon that reads commands from a pipe:
// the kernel removes an owned table when its owner's netlink socket closes,
// so the lock goes when the daemon dies in any way (the pipe's end closes,
// nft exits). It lives in the daemon's network namespace only.
// docs/network.md has the rules and when elements come and go.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "common/result.h"
#include "crfs/image_format.h"

namespace crfs::state {

// One connection as nft set elements, both directions:
// "127.0.0.1 . 5000 . 127.0.0.1 . 41234" in set c4 or c6.
struct LockedConn {
    bool v6 = false;
    std::string out, in;  // local -> peer, peer -> local
};

// The connection an image record names (v4-mapped IPv6 addresses as IPv4:
// their packets are IPv4).
LockedConn locked_conn(const image::InetSocketRecord& rec);

// Daemon side (root): the established TCP connections of task `pid`, from
// /proc/<pid>/fd and /proc/<pid>/net/tcp{,6}.
std::vector<LockedConn> established_connections(pid_t pid);
// Adds them to the lock and returns once the kernel has them.
Status netlock_add(const std::vector<LockedConn>& conns);
// Removes them (errors are logged: an element that is gone is gone).
void netlock_remove(const std::vector<LockedConn>& conns);

// Worker side (the checkpoint worker, a child of the daemon): is the
// connection of `rec` in the daemon's lock? EBUSY naming it when not.
Status netlock_covers(const image::InetSocketRecord& rec);

}  // namespace crfs::state
