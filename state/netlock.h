// The network lock: while an established TCP connection belongs to an image
// (from its checkpoint until its restore), the packets of its 4-tuple are
// dropped, so that neither the old socket (killed) nor the peer's
// retransmissions reach the other side and no reset is sent.
//
// The lock is one nftables table "crfs_<daemon tgid>" with the `owner` flag
// per network namespace that holds a locked connection, created by an
// `nft -ie` child of the daemon started in that namespace, which reads
// commands from a pipe: the kernel removes an owned table when its owner's
// netlink socket closes, so the lock goes when the daemon dies in any way (the
// pipe's end closes, nft exits), and the daemon ends the child (so the table
// goes) when the namespace's last connection leaves the lock.
// docs/network.md has the rules and when elements come and go.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
#include "crfs/image_format.h"

namespace crfs::state {

// One connection as nft set elements, both directions:
// "127.0.0.1 . 5000 . 127.0.0.1 . 41234" in set c4 or c6, and the network
// namespace whose lock holds it.
struct LockedConn {
    bool v6 = false;
    std::string out, in;                    // local -> peer, peer -> local
    uint8_t local[16] = {};                 // the local address (4 bytes when !v6)
    std::shared_ptr<const UniqueFd> netns;  // null: the daemon's own
};

// The connection an image record names (v4-mapped IPv6 addresses as IPv4:
// their packets are IPv4), in the lock of namespace `netns` (null: the daemon's).
LockedConn locked_conn(const image::InetSocketRecord& rec,
                       std::shared_ptr<const UniqueFd> netns = nullptr);

// Daemon side (root): the established TCP connections of task `pid`, from
// /proc/<pid>/fd and /proc/<pid>/net/tcp{,6}, in the task's network namespace.
std::vector<LockedConn> established_connections(pid_t pid);
// Adds them to the lock of their namespace and returns once the kernel has them.
Status netlock_add(const std::vector<LockedConn>& conns);
// Removes them from the lock of their namespace (errors are logged: an
// element that is gone is gone). A checkpoint that failed.
void netlock_remove(const std::vector<LockedConn>& conns);
// The restore of `conns` into namespace `netns` (null: the daemon's) is over.
// Restored: they leave that namespace's lock; in any other namespace that
// holds them (the checkpoint's, for a migration) they stay while their local
// address is still the namespace's own (a packet reaching it there would be
// answered with a reset) and leave once it is not (watched with rtnetlink).
// Failed: they leave every lock (nothing of a failed restore stays behind).
void netlock_release(const std::vector<LockedConn>& conns,
                     const std::shared_ptr<const UniqueFd>& netns, bool restored);

// Worker side (the checkpoint worker, a child of the daemon): is the
// connection of `rec`, socket `sock`, in the daemon's lock of the socket's
// namespace? EBUSY naming it when not.
Status netlock_covers(int sock, const image::InetSocketRecord& rec);

}  // namespace crfs::state
