// What the processes of one image share (docs/trees.md, "Sharing between
// members"): the one place that decides, for every fd of every member, whether
// its open file description (or, for a pipe, the pipe) is the member's own, is
// given by an earlier member (restored once and handed over:
// state/tree_share_restore.h), or cannot be restored exactly (a reason). `reason`
// (state/tree.cc) and the checkpoint (state/tree_share_dump.cc) both call it,
// so they cannot disagree.
//
// Rules, members in image order (parents first), each member's fds in order:
//   - a description held by an earlier member (kcmp KCMP_FILE) is given by the
//     first member that holds it (kShareSame), whatever its kind;
//   - an end of a pipe an earlier member holds an end of, with a description of
//     its own, is given by the first member holding the pipe as that end
//     (kShareReadEnd/kShareWriteEnd), if no earlier member holds that end:
//     two descriptions of one end in two members are a reason;
//   - a unix socketpair end whose peer an earlier member holds (its own
//     description) is given by that member as the peer (kSharePeer);
//   - a FIFO opened separately by several members is each one's own description,
//     reopened by its path (kShareFifoJoin); its bytes are restored once, by
//     the first member holding it as a FIFO, which gives the others an end to
//     hold while they open theirs (docs/trees.md "FIFOs between members");
//   - a file, directory or character device with a path each member opened
//     itself is each one's own;
//   - an object with no name to open it by (an unlinked POSIX message queue, a
//     deleted file, a memfd) that a later member opened separately is opened
//     again by the first member that holds it, through /proc/self/fd, with the
//     later member's flags and offset, and given to it (kShareReopen; a
//     removed directory's at an offset is opened by its maker's plan before
//     the rmdir: share39, state/fs_tree.cc); a description so made held by a
//     third member is given by the second;
//   - any other object (a kernel object) opened separately by two members is a
//     reason.
// Sharing with a process outside the image stays a reason (state/shared_desc.h).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "state/kind.h"

namespace crfs::state {

// One fd of a member: only the lowest fd of each of the member's own
// descriptions (the others are dups of it).
struct MemberFd {
    int fd = -1;
    dev_t dev = 0;
    ino_t ino = 0;
    uint32_t acc = 0;         // O_ACCMODE of its open flags
    bool pipe = false;        // an anonymous pipe ("pipe:[N]")
    bool fifo = false;        // a FIFO with a path
    bool reopenable = false;  // a file, directory or device with a path: descriptions independent
    bool by_fd = false;       // no name (nlink 0: unlinked queue, deleted file, memfd): reopened
                              // through /proc/self/fd of another description
    bool gives = false;       // fdshare: no name, whatever its own flags: another member's
                              // description may be opened again from it (by_fd: with its flags)
    uint64_t peer = 0;        // a unix socket: its peer's inode, a waiting client's listener's,
                              // a datagram socket's group anchor (state/unix_tree.h)
    bool socket = false;      // "socket:[N]"
};

// A ShareRef's end that is no share-fd value: `fd` is a FIFO of the member's
// own (fd kind kFifoJoin, no share-fd record) whose bytes `owner` restores at
// its fd `owner_fd`.
inline constexpr uint32_t kShareFifoJoin = 0x200;

// An fd given by an earlier member.
struct ShareRef {
    size_t member = 0;  // index in the image
    int fd = -1;
    size_t owner = 0;
    int owner_fd = -1;
    uint32_t end = 0;  // image::kShare*
};

// `pids[i]`'s fds in `fds[i]`; refs for every fd an earlier member gives, a
// reason line in `out` (naming both pids) for every sharing that cannot be
// restored. A kcmp that fails but with ESRCH/EBADF (gone meanwhile) is a reason.
// `kcmp`: the answers of this `reason` read or checkpoint (state/kcmp_cache.h);
// null: a cache of this call's own.
void classify_sharing(std::span<const pid_t> pids, std::span<const std::vector<MemberFd>> fds,
                      std::vector<ShareRef>& refs, Reasons& out, KcmpCache* kcmp = nullptr);

// The MemberFds of a TaskView's fds (lowest fd of each description only).
Result<std::vector<MemberFd>> member_fds(TaskView& v);

// mqtree: the open flags a description opened again through /proc/self/fd of
// an fd of `kind` (image::FdKind: an unlinked queue, a memfd, a deleted file or directory)
// may have: its kind's own restore takes them (0: no such kind). The
// checkpoint (MemberFd::by_fd) and the restore (kShareReopen) both ask it.
uint32_t reopen_flags(uint32_t kind);

// The same for a description at offset `pos`: a removed directory's at an
// offset is opened by its maker's restore by the directory's name before the
// rmdir (make_removed_dir's `later`, not through /proc/self/fd), which takes
// O_NOFOLLOW too (s19-fdshare).
uint32_t reopen_flags(uint32_t kind, uint64_t pos);

}  // namespace crfs::state
