#include "state/tree_share.h"

#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <unordered_map>

#include "common/strfmt.h"
#include "crfs/image_format.h"
#include "state/fds.h"
#include "state/kcmp_cache.h"
#include "state/memfd.h"
#include "state/pipe.h"
#include "state/unix_socket.h"
#include "state/unix_tree.h"

namespace crfs::state {
namespace {

struct Held {
    size_t member;
    const MemberFd* f;
    size_t owner;  // who restores it: the member itself, or its giver
    int owner_fd;
    uint32_t end;
};

std::string both(pid_t a, int fa, pid_t b, int fb) {
    return strfmt("pid {} (fd {}) and pid {} (fd {})", a, fa, b, fb);
}

}  // namespace

void classify_sharing(std::span<const pid_t> pids, std::span<const std::vector<MemberFd>> fds,
                      std::vector<ShareRef>& refs, Reasons& out, KcmpCache* cache) {
    KcmpCache own;
    KcmpCache& kcmp = cache ? *cache : own;
    // The descriptions of a file held by several members, told by sorting
    // its fds (state/kcmp_cache.h) when that asks less than every pair; else,
    // or when a kcmp fails, pair by pair (whose error names the pair).
    std::unordered_map<KcmpItem, int, KcmpItemHash> description;  // perf: hashed
    {
        std::map<std::pair<dev_t, ino_t>, std::vector<std::pair<size_t, KcmpItem>>> holders;
        for (size_t m = 0; m < fds.size(); ++m)
            for (const MemberFd& f : fds[m])
                holders[{f.dev, f.ino}].push_back({m, kcmp_fd(pids[m], f.fd)});
        for (const auto& [inode, held] : holders) {
            uint64_t pairs = 0, before = 0;  // at most: each fd against the earlier members'
            for (size_t i = 0; i < held.size(); ++i) {
                if (i > 0 && held[i].first != held[i - 1].first) before = i;
                pairs += before;
            }
            if (!KcmpCache::worth_sorting(held.size(), pairs)) continue;
            std::vector<KcmpItem> items;
            for (const auto& h : held) items.push_back(h.second);
            if (auto cls = kcmp.classes(KCMP_FILE, items))
                for (size_t i = 0; i < items.size(); ++i) description[items[i]] = (*cls)[i];
        }
    }
    std::map<std::pair<dev_t, ino_t>, std::vector<Held>> by_inode;
    // perf: of an inode whose descriptions were sorted above, the first holder
    // of each description (its index in by_inode): a member's fd finds the
    // earlier holder of its own in one lookup instead of asking each earlier
    // holder in turn. n members that each opened one file themselves (3 x 63
    // fds of /dev/null in the 64-process bench tree) asked n^2 / 2 questions:
    // ~3.8 ms of that tree's detect.
    std::map<std::pair<dev_t, ino_t>, std::unordered_map<int, size_t>> first_of_class;
    for (size_t m = 0; m < fds.size(); ++m) {
        std::vector<Held> mine;  // added after the member: its own fds never compare
        for (const MemberFd& f : fds[m]) {
            auto it = by_inode.find({f.dev, f.ino});
            if (it == by_inode.end()) {
                // A socketpair end whose peer an earlier member holds as its own.
                const Held* peer = nullptr;
                if (f.peer)
                    if (auto p = by_inode.find({f.dev, ino_t(f.peer)}); p != by_inode.end())
                        for (const Held& h : p->second)
                            if (h.end == image::kShareSame) peer = &h;
                if (peer) {
                    refs.push_back({m, f.fd, peer->owner, peer->owner_fd, image::kSharePeer});
                    mine.push_back({m, &f, peer->owner, peer->owner_fd, image::kSharePeer});
                } else {
                    mine.push_back({m, &f, m, f.fd, image::kShareSame});
                }
                continue;
            }
            const Held* same = nullptr;
            bool refused = false;
            // Sorted: every fd of this inode has its description's class (a
            // sort gives all of them one, or none). Else asked pair by pair.
            auto known = description.find(kcmp_fd(pids[m], f.fd));
            auto index = known == description.end() ? first_of_class.end()
                                                    : first_of_class.find({f.dev, f.ino});
            if (index != first_of_class.end()) {
                if (auto at = index->second.find(known->second); at != index->second.end())
                    same = &it->second[at->second];
            } else {
                for (const Held& h : it->second) {
                    // kcmp(KCMP_FILE): 0 the same description, > 0 not, -errno.
                    int r = kcmp.order(KCMP_FILE, kcmp_fd(pids[h.member], h.f->fd),
                                       kcmp_fd(pids[m], f.fd));
                    if (r == 0) {
                        same = &h;
                        break;
                    }
                    if (r < 0 && r != -ESRCH && r != -EBADF) {
                        out.push_back(both(pids[h.member], h.f->fd, pids[m], f.fd) +
                                      ": cannot tell whether they share one open file description "
                                      "(kcmp): " +
                                      std::strerror(-r));
                        refused = true;
                        break;
                    }
                }
            }
            if (refused) continue;
            const Held& first = it->second.front();
            if (same) {
                refs.push_back({m, f.fd, same->owner, same->owner_fd, same->end});
                mine.push_back({m, &f, same->owner, same->owner_fd, same->end});
            } else if (f.fifo) {
                // Its own description, reopened by its path; the bytes are the
                // first FIFO holder's (docs/trees.md "FIFOs between members").
                const Held* bytes = nullptr;
                for (const Held& h : it->second)
                    if (!bytes && h.f->fifo && h.owner == h.member) bytes = &h;
                if (bytes)  // else only O_PATH fds of it so far: this member holds the bytes
                    refs.push_back({m, f.fd, bytes->member, bytes->f->fd, kShareFifoJoin});
                mine.push_back({m, &f, m, f.fd, image::kShareSame});
            } else if (f.pipe) {
                const Held* same_end = nullptr;
                for (const Held& h : it->second)
                    if (h.f->acc == f.acc) same_end = &h;
                uint32_t end = f.acc == O_WRONLY ? image::kShareWriteEnd : image::kShareReadEnd;
                if (same_end || f.acc == O_RDWR || first.owner != first.member) {
                    const Held& o = same_end ? *same_end : first;
                    out.push_back(both(pids[o.member], o.f->fd, pids[m], f.fd) +
                                  ": two open file descriptions of one end of a pipe in two "
                                  "processes of the tree" +
                                  std::string(kNotYet));
                    continue;
                }
                refs.push_back({m, f.fd, first.member, first.f->fd, end});
                mine.push_back({m, &f, first.member, first.f->fd, end});
            } else if (f.reopenable && first.f->reopenable) {  // each opened it itself
                mine.push_back({m, &f, m, f.fd, image::kShareSame});
            } else if (f.by_fd && first.f->gives && first.owner == first.member &&
                       first.end == image::kShareSame) {
                // Opened again by the first holder: a description of this member's own,
                // which it gives on to whoever holds it after it.
                refs.push_back({m, f.fd, first.member, first.f->fd, image::kShareReopen});
                mine.push_back({m, &f, m, f.fd, image::kShareSame});
            } else {
                out.push_back(both(pids[first.member], first.f->fd, pids[m], f.fd) +
                              ": one object, opened separately by two processes of the tree "
                              "(restored, they would be two); such an object" +
                              std::string(kNotYet));
            }
        }
        for (const Held& h : mine) {
            auto& held = by_inode[{h.f->dev, h.f->ino}];
            if (auto d = description.find(kcmp_fd(pids[h.member], h.f->fd)); d != description.end())
                first_of_class[{h.f->dev, h.f->ino}].try_emplace(d->second, held.size());
            held.push_back(h);
        }
    }
}

uint32_t reopen_flags(uint32_t kind) {
    using K = image::FdKind;
    constexpr uint32_t kOLargefile = 0100000;  // the kernel's (glibc defines it 0 here)
    uint32_t queue = O_ACCMODE | O_NONBLOCK | kOLargefile;  // mqueue_check_flags
    if (kind == uint32_t(K::kMqueue)) return queue;
    if (kind == uint32_t(K::kMemfd)) return queue | O_APPEND | O_NOATIME;  // the memfd kind's
    if (kind == uint32_t(K::kDeleted))
        return queue | O_APPEND | O_DSYNC | O_DIRECT | O_NOATIME | O_SYNC;
    // deldir: read-only; O_NOFOLLOW would refuse the /proc/self/fd link, FASYNC is no open's.
    if (kind == uint32_t(K::kDeletedDir) || kind == uint32_t(K::kTreeCwdDir))  // cwdtree: 43
        return O_DIRECTORY | O_NONBLOCK | kOLargefile | O_NOATIME | O_DSYNC | O_SYNC;
    return 0;
}

uint32_t reopen_flags(uint32_t kind, uint64_t pos) {
    using K = image::FdKind;
    bool dir = kind == uint32_t(K::kDeletedDir) || kind == uint32_t(K::kTreeCwdDir);
    return reopen_flags(kind) | (dir && pos ? uint32_t(O_NOFOLLOW) : 0);
}

Result<std::vector<MemberFd>> member_fds(TaskView& v) {
    auto fds = v.fds();
    if (!fds) return std::unexpected(fds.error());
    std::vector<FdIdentity> ids;
    for (const FdView& f : **fds) ids.push_back({f.fd, f.st.st_dev, f.st.st_ino});
    auto lead = description_groups(v.pid(), ids, v.kcmp().get());
    if (!lead) return std::unexpected(lead.error());
    std::vector<MemberFd> out;
    UnixTable unix_sockets;  // read on the first socket
    for (size_t i = 0; i < (*fds)->size(); ++i) {
        if ((*lead)[i] >= 0) continue;
        const FdView& f = (**fds)[i];
        // An anonymous inode is one inode for every eventfd, epoll, ...: each
        // description is its own object.
        bool reopenable = f.link.starts_with("anon_inode:") ||
                          (f.link.starts_with("/") && !f.link.ends_with(" (deleted)") &&
                           (S_ISDIR(f.st.st_mode) || S_ISCHR(f.st.st_mode) ||
                            (S_ISREG(f.st.st_mode) && f.st.st_nlink > 0)));
        uint64_t peer = 0;
        if (f.link.starts_with("socket:["))
            peer = unix_made_with(unix_sockets, uint64_t(f.st.st_ino));  // state/unix_tree.h
        // A queue is told apart at restore only: its flags are a subset of a file's.
        auto k = is_memfd_path(f.link) ? image::FdKind::kMemfd : image::FdKind::kDeleted;
        if (S_ISDIR(f.st.st_mode)) k = image::FdKind::kDeletedDir;  // deldir: state/dir_deleted.cc
        uint32_t flags = f.info.flags & ~uint32_t(O_CLOEXEC);
        // share39: a removed directory's description at an offset (a getdents
        // cookie, which ext4 takes no more once it is removed) is opened and
        // seeked by its maker's restore before the rmdir (state/fs_tree.cc),
        // by its name: O_NOFOLLOW too.
        // fdshare: the giver's own flags are its own kind's to restore; a
        // reopen from it takes the taker's.
        bool gives = (S_ISREG(f.st.st_mode) || S_ISDIR(f.st.st_mode)) && f.st.st_nlink == 0 &&
                     !(flags & O_PATH);
        bool by_fd = gives && !(flags & ~reopen_flags(uint32_t(k), f.info.pos)) &&
                     (flags & O_ACCMODE) != O_ACCMODE;
        bool fifo = is_fifo(f) && !(f.info.flags & O_PATH);  // O_PATH: no end of it
        out.push_back({f.fd, f.st.st_dev, f.st.st_ino, f.info.flags & O_ACCMODE, is_pipe(f), fifo,
                       reopenable, by_fd, gives, peer, f.link.starts_with("socket:[")});
    }
    return out;
}

}  // namespace crfs::state
