#include "state/tree_share_restore.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common/strfmt.h"
#include "restorer/child.h"
#include "state/check.h"
#include "state/file_kind.h"
#include "state/fs.h"
#include "state/mqueue.h"
#include "state/pipe.h"
#include "state/tree_restore.h"
#include "state/tree_share.h"
#include "state/unix_socket.h"
#include "state/unix_tree.h"

namespace crfs {
namespace {

constexpr uint32_t kOLargefile = 0100000;  // the kernel's (glibc defines it 0 here)
constexpr uint32_t kPipeEndFlags = O_ACCMODE | O_NONBLOCK | O_DIRECT | kOLargefile;

const FdEntry* fd_of(const DecodedImage& img, int fd) {
    for (const auto& f : img.fds)
        if (f.rec.fd == fd) return &f;
    return nullptr;
}

// The end of the share-fd record of a kShared fd (none: -1).
int64_t share_end_of(const FdEntry& g) {
    image::ShareFdRecord r;
    if (g.rec.kind != uint32_t(image::FdKind::kShared) || g.kobj.size() != 1 ||
        g.kobj[0].second.size() != sizeof r)
        return -1;
    std::memcpy(&r, g.kobj[0].second.data(), sizeof r);
    return r.end;
}

}  // namespace

Status check_reopen(const DecodedImage& giver, pid_t giver_pid, const image::ShareFdRecord& r,
                    const FdEntry& g, const FdEntry& f) {
    using K = image::FdKind;
    uint32_t flags = state::reopen_flags(g.rec.kind, f.rec.pos);  // fdshare: O_NOFOLLOW early
    bool kind = (g.rec.kind == uint32_t(K::kMqueue) && state::mqueue_unlinked(g)) ||
                g.rec.kind == uint32_t(K::kMemfd) || g.rec.kind == uint32_t(K::kDeleted) ||
                g.rec.kind == uint32_t(K::kDeletedDir) ||
                g.rec.kind == uint32_t(K::kTreeCwdDir);  // cwdtree: state/fs_tree.cc
    if (giver.header.version < 12 || !kind || g.rec.ino != f.rec.ino ||
        (f.rec.open_flags & ~flags) || (f.rec.open_flags & O_ACCMODE) == O_ACCMODE ||
        f.rec.pos > uint64_t(INT64_MAX) || (g.rec.kind == uint32_t(K::kMqueue) && f.rec.pos))
        return check::bad_image(
            strfmt("fd {}: opened again from fd {} of process {}, which is no unlinked queue, "
                   "deleted file or directory or memfd of its inode, or open flags 0{:o}, "
                   "offset {}",
                   f.rec.fd, r.owner_fd, giver_pid, f.rec.open_flags, f.rec.pos));
    return {};
}

namespace {

// The giver's side of one kShared fd of process `i`.
Status check_giver(const TreeRestore& tree, uint32_t i, const FdEntry& f,
                   const image::ShareFdRecord& r) {
    std::string at = strfmt("fd {}", f.rec.fd);
    if (r.owner >= i)
        return check::bad_image(strfmt(
            "{}: given by process {}, which is not an earlier process of the tree", at, r.owner));
    const auto& giver = tree.members[r.owner];
    const FdEntry* g = giver.img ? fd_of(*giver.img, r.owner_fd) : nullptr;
    // A description opened again for the giver (mqtree) is its own: it may give it on.
    bool own = g && g->rec.same_as < 0 &&
               (g->rec.kind != uint32_t(image::FdKind::kShared) ||
                (r.end == image::kShareSame && share_end_of(*g) == image::kShareReopen));
    if (!own)
        return check::bad_image(
            strfmt("{}: given by fd {} of process {}, which has no description of its "
                   "own there (none, a dup, or one given to it in turn)",
                   at, r.owner_fd, giver.pid));
    if (giver.fds)  // thpidfd: its fd is a placeholder until its blob (state/pidfd.h)
        for (const auto& a : giver.fds->actions)
            if (a.target == r.owner_fd && a.kobj.kind == uint32_t(image::FdKind::kPidfd) &&
                a.kobj.n[2])
                return check::bad_image(
                    strfmt("{}: given by fd {} of process {}, a pidfd of a "
                           "thread (one description the blob makes)",
                           at, r.owner_fd, giver.pid));
    if (r.end == image::kShareSame) return {};
    if (r.end == image::kShareReopen) return check_reopen(*giver.img, giver.pid, r, *g, f);
    if (r.end == image::kSharePeer && g->rec.kind == uint32_t(image::FdKind::kUnixBound))
        return state::check_unix_given(*giver.img, *g, f);  // a client of a server
    if (r.end == image::kSharePeer) {  // check_unix_sockets: the giver holds the pair's records
        bool peer_recorded = false, peer_held = false;
        for (const auto& u : giver.img->unix_sockets)
            if (u.rec.ino == g->rec.ino)
                for (const auto& p : giver.img->unix_sockets)
                    peer_recorded |= p.rec.ino == u.rec.peer;
        for (const auto& u : giver.img->unix_sockets)
            if (u.rec.ino == g->rec.ino)
                for (const auto& o : giver.img->fds)
                    peer_held |= o.rec.kind == uint32_t(image::FdKind::kUnixSocket) &&
                                 o.rec.ino == u.rec.peer;
        if (g->rec.kind != uint32_t(image::FdKind::kUnixSocket) || !peer_recorded || peer_held ||
            (f.rec.open_flags & ~uint32_t(O_ACCMODE | O_NONBLOCK)) ||
            (f.rec.open_flags & O_ACCMODE) != O_RDWR)
            return check::bad_image(
                strfmt("{}: the peer of the socket at fd {} of process {}, which is no "
                       "socketpair end whose peer it records and does not hold, or open "
                       "flags 0{:o}",
                       at, r.owner_fd, giver.pid, f.rec.open_flags));
        return {};
    }
    if (r.end != image::kShareReadEnd && r.end != image::kShareWriteEnd)
        return check::bad_image(strfmt("{}: share end {}", at, r.end));
    uint32_t acc = r.end == image::kShareReadEnd ? O_RDONLY : O_WRONLY;
    if (g->rec.kind != uint32_t(image::FdKind::kPipe) || (f.rec.open_flags & ~kPipeEndFlags) ||
        (f.rec.open_flags & O_ACCMODE) != acc)
        return check::bad_image(
            strfmt("{}: an end of the pipe at fd {} of process {}, which is no pipe, or "
                   "open flags 0{:o}",
                   at, r.owner_fd, giver.pid, f.rec.open_flags));
    for (const auto& o : giver.img->fds)
        if (o.rec.kind == uint32_t(image::FdKind::kPipe) && o.rec.ino == g->rec.ino &&
            (o.rec.open_flags & O_ACCMODE) == acc)
            return check::bad_image(
                strfmt("{}: an end of pipe {} that process {} holds itself (fd {})", at, g->rec.ino,
                       giver.pid, o.rec.fd));
    return {};
}

// A client of a server given to process `i`: process `i` makes and connects
// it itself, at the server's turn (state/unix_tree.h), on a channel of its own.
Status plan_connect(TreeRestore& tree, uint32_t i, const FdEntry& f, uint32_t owner, FdPlan& fds) {
    auto& me = tree.members[i];
    auto& giver = tree.members[owner];
    auto& socks = giver.fds->unix_bound.socks;
    state::UnixBoundPlan* c = nullptr;
    for (auto& p : socks)
        if (p.rec.sock.ino == f.rec.ino) c = &p;
    // check_unix_given: a client of an accepted end, or waiting in a listener
    if (!c || c->connector >= 0)
        return check::bad_image(
            strfmt("fd {}: unix socket {} given to two processes", f.rec.fd, f.rec.ino));
    if (state::unix_dgram_given(c->rec)) return {};  // made and connected by the giver
    bool waiting = c->rec.role == uint32_t(image::UnixRole::kWaiting);
    const auto& l = socks[size_t(waiting ? c->listener : socks[size_t(c->peer)].listener)];
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return errno_error(strfmt("fd {}: connect channel to process {}", f.rec.fd, giver.pid));
    UniqueFd client_end(sv[0]), server_end(sv[1]);
    UniqueFd mine(fcntl(client_end.get(), F_DUPFD_CLOEXEC, me.min_fd));
    UniqueFd theirs(fcntl(server_end.get(), F_DUPFD_CLOEXEC, giver.min_fd));
    if (!mine || !theirs) return errno_error(strfmt("fd {}: dup of its connect channel", f.rec.fd));
    me.connects.push_back(
        {f.rec.fd, mine.get(), *c, l.addr, l.addr_len, me.img->creds.uid[1], me.img->creds.gid[1]});
    me.connect_polls.resize(me.connects.size());
    c->connector = theirs.get();
    fds.copies.push_back(std::move(mine));  // kept through stage 1 as the take channels
    giver.share_keep.insert(
        std::upper_bound(giver.share_keep.begin(), giver.share_keep.end(), theirs.get()),
        theirs.get());
    tree.share_fds.push_back(std::move(theirs));
    return {};
}

// A channel from earlier process `owner` to process `i`: the taker's end in
// `fds` (kept through stage 1), the giver's registered as a send.
Result<int> share_channel(TreeRestore& tree, uint32_t i, FdPlan& fds, uint32_t owner,
                          ShareSend send, int at) {
    auto& giver = tree.members[owner];
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return errno_error(strfmt("fd {}: channel from process {}", at, giver.pid));
    UniqueFd take_end(sv[0]), give_end(sv[1]);
    UniqueFd take(fcntl(take_end.get(), F_DUPFD_CLOEXEC, tree.members[i].min_fd));
    UniqueFd give(fcntl(give_end.get(), F_DUPFD_CLOEXEC, giver.min_fd));
    if (!take || !give) return errno_error(strfmt("fd {}: dup of its channel", at));
    int t = take.get();
    fds.copies.push_back(std::move(take));  // kept through stage 1, closed after the fds
    send.channel = give.get();
    giver.sends.push_back(send);
    giver.share_keep.insert(
        std::upper_bound(giver.share_keep.begin(), giver.share_keep.end(), give.get()), give.get());
    tree.share_fds.push_back(std::move(give));
    return t;
}

// sock: the pairs of process `i` an earlier process makes (unix-maker records,
// checked against the image by check_unix_sockets).
Status plan_pair_makers(TreeRestore& tree, uint32_t i, const DecodedImage& img, FdPlan& fds) {
    for (const auto& m : img.unix_makers) {
        std::string at = strfmt("unix socket {}", m.ino);
        if (m.maker >= i)
            return check::bad_image(
                strfmt("{}: made by process {}, which is not an earlier process of the tree", at,
                       m.maker));
        state::UnixPlan* p = nullptr;
        for (auto& u : fds.unix_sockets)
            if (u.rec.ino == m.ino) p = &u;
        const auto& maker = tree.members[m.maker];
        if (!p || !maker.img) return check::bad_image(strfmt("{}: not in the image", at));
        const int fd_for = [&] {
            for (const auto& f : img.fds)
                if (f.rec.kind == uint32_t(image::FdKind::kUnixSocket) &&
                    (f.rec.ino == m.ino || f.rec.ino == p->rec.peer))
                    return f.rec.fd;
            return -1;
        }();
        ShareSend send{-1,
                       fd_for,
                       kSharePairMade,
                       m.ino,
                       p->rec.type,
                       maker.img->creds.uid[1],
                       maker.img->creds.gid[1]};
        auto ch = share_channel(tree, i, fds, m.maker, send, fd_for);
        if (!ch) return std::unexpected(ch.error());
        p->pair_from = *ch;
    }
    return {};
}

// fifo: FIFO `a` of process `i` is reopened by its path once the first
// earlier process holding that FIFO (dev, ino) as a FIFO of its own, whose
// pipe record has its bytes, hands over the end it made to hold them: on a
// channel, as a description is given.
Status plan_fifo_join(TreeRestore& tree, uint32_t i, FdPlan& fds, FdAction& a) {
    for (uint32_t o = 0; o < i; ++o) {
        const DecodedImage* g = tree.members[o].img;
        if (!g) continue;  // a zombie
        for (const FdEntry& f : g->fds)
            if (f.rec.kind == uint32_t(image::FdKind::kFifo) && f.rec.same_as < 0 &&
                f.rec.ino == a.fifo_ino && f.rec.dev == a.fifo_dev) {
                auto ch = share_channel(tree, i, fds, o, {-1, f.rec.fd, kShareFifoHeld, a.fifo_ino},
                                        a.target);
                if (!ch) return std::unexpected(ch.error());
                a.share_from = *ch;
                return {};
            }
    }
    return check::bad_image(strfmt(
        "fd {}: FIFO {} whose bytes no earlier process of the tree holds", a.target, a.fifo_ino));
}

}  // namespace

Status tree_share_plan(const RestoreRequest& req, const DecodedImage& img, FdPlan& fds,
                       int min_fd) {
    if (!req.tree) {
        for (const auto& f : img.fds)
            if (f.rec.kind == uint32_t(image::FdKind::kShared) ||
                f.rec.kind == uint32_t(image::FdKind::kFifoJoin))
                return make_error(EINVAL, strfmt("bad image: fd {} is given by another process "
                                                 "of a tree, but the image holds one process",
                                                 f.rec.fd));
        if (!img.unix_makers.empty())
            return check::bad_image(
                strfmt("unix socket {} is made by another process of a "
                       "tree, but the image holds one process",
                       img.unix_makers[0].ino));
        return {};
    }
    TreeRestore& tree = *req.tree;
    uint32_t i = req.tree_index;
    auto& me = tree.members[i];
    me.img = &img;
    me.fds = &fds;
    me.min_fd = min_fd;
    fds.sends = &me.sends;
    for (auto& a : fds.actions) {
        if (a.fifo_join && a.same_as < 0)
            if (auto s = plan_fifo_join(tree, i, fds, a); !s) return s;
        if (!a.shared || a.same_as >= 0) continue;
        const FdEntry* f = fd_of(img, a.target);
        if (!f || f->kobj.size() != 1)  // check_fields: one share-fd record
            return check::bad_image(strfmt("fd {}: no share-fd record", a.target));
        image::ShareFdRecord r;
        std::memcpy(&r, f->kobj[0].second.data(), sizeof r);
        if (auto s = check_giver(tree, i, *f, r); !s) return s;
        auto& giver = tree.members[r.owner];
        const FdEntry* g = fd_of(*giver.img, r.owner_fd);  // check_giver: there
        if (r.end == image::kSharePeer && g->rec.kind == uint32_t(image::FdKind::kUnixBound))
            if (auto s = plan_connect(tree, i, *f, r.owner, fds); !s) return s;
        if (r.end == image::kShareReopen && f->rec.pos &&
            (g->rec.kind == uint32_t(image::FdKind::kDeletedDir) ||
             g->rec.kind == uint32_t(image::FdKind::kTreeCwdDir))) {
            // share39: a removed directory at an offset, opened by its maker before its rmdir.
            auto early = state::early_shared_desc(tree, i, *f, r.owner, *g, fds);
            if (!early) return std::unexpected(early.error());
            a.shared = false;
            a.prepared = *early;
            continue;
        }
        ShareSend send{-1, r.owner_fd, r.end, f->rec.ino};
        if (r.end == image::kShareReopen) {  // check_reopen: flags and offset checked
            send.flags = int(f->rec.open_flags);
            send.pos = f->rec.pos;
        }
        auto ch = share_channel(tree, i, fds, r.owner, send, a.target);
        if (!ch) return std::unexpected(ch.error());
        a.share_from = *ch;
        a.share_end = r.end;
    }
    return plan_pair_makers(tree, i, img, fds);
}

void child_share_connect(const TreeRestore* tree, uint32_t index, int status_fd) {
    if (!tree || tree->members[index].connects.empty()) return;
    const auto& m = tree->members[index];
    size_t failed = 0;
    if (int e = state::child_unix_connect(m.connects, m.connect_polls.data(), &failed))
        child_fail(status_fd, CRFS_RA_STEP_UNIX_CONNECT, e, uint64_t(m.connects[failed].fd));
}

std::span<const int> tree_share_keep(const TreeRestore* tree, uint32_t index) {
    if (!tree) return {};
    return tree->members[index].share_keep;
}

void child_share_recv(const FdAction& a, int status_fd) {
    if (a.share_from < 0) child_fail(status_fd, CRFS_RA_STEP_SHARE_FD, EINVAL, uint64_t(a.target));
    // End of file: the giver died before it gave (its own failure is reported too).
    int fd;
    if (int e = state::recv_one_fd(a.share_from, &fd); e || fd < 0)
        child_fail(status_fd, CRFS_RA_STEP_SHARE_FD, e ? e : EPIPE, uint64_t(a.target));
    child_place_fd(fd, a, status_fd);
    // A pipe end no one held yet takes its flags here; a shared description has its
    // own, and one opened again for this process was opened with them.
    if (a.share_end != image::kShareSame && a.share_end != image::kShareReopen &&
        fcntl(a.target, F_SETFL, a.open_flags & (O_NONBLOCK | O_DIRECT)) < 0)
        child_fail(status_fd, CRFS_RA_STEP_SHARE_FD, errno, uint64_t(a.target));
}

void child_fifo_join(const FdAction& a, int status_fd) {
    // The giver's end keeps the FIFO's bytes, and is a reader and a writer while
    // this process opens its own description (an O_WRONLY open finds a reader).
    int held;
    if (int e = state::recv_one_fd(a.share_from, &held); e || held < 0)
        child_fail(status_fd, CRFS_RA_STEP_SHARE_FD, e ? e : EPIPE, uint64_t(a.target));
    if (held == a.target) {  // the lowest free number: move it off the fd to place
        int moved = fcntl(held, F_DUPFD_CLOEXEC, a.target + 1);
        if (moved < 0) child_fail(status_fd, CRFS_RA_STEP_SHARE_FD, errno, uint64_t(a.target));
        ::close(held);
        held = moved;
    }
    if (int e = state::child_fifo_join(a.path.c_str(), a.fifo_dev, a.fifo_ino, a.target,
                                       a.open_flags, a.cloexec))
        child_fail(status_fd, CRFS_RA_STEP_FIFO_JOIN, e, uint64_t(a.target));
    ::close(held);
}

namespace {

// mqtree: the object at s.owner_fd opened again through /proc/self/fd with the
// taker's flags (the kernel checks them against this process's ids, as for
// the taker's own open), checked to be that inode, at the taker's offset.
// Returns the new fd, or -errno.
int reopen_for(const ShareSend& s) {
    int fd = state::reopen_self(s.owner_fd, s.flags);  // state/file_reopen.cc
    if (fd < 0 || !s.pos || ::lseek(fd, off_t(s.pos), SEEK_SET) == off_t(s.pos)) return fd;
    int e = errno ? errno : EIO;
    ::close(fd);
    return -e;
}

// sock: the pair a later process holds, made here with this process's ids.
int send_pair(const ShareSend& s) {
    int sv[2];
    if (int e = state::make_socketpair(s.type, s.euid, s.egid, sv)) return e;
    int e = state::send_one_fd(s.channel, sv[0]);
    if (!e) e = state::send_one_fd(s.channel, sv[1]);
    ::close(sv[0]);
    ::close(sv[1]);
    return e;
}

}  // namespace

void child_share_send(const FdPlan& plan, int status_fd) {
    for (const ShareSend& s : *plan.sends) {
        if (s.end == kSharePairMade) {
            if (int e = send_pair(s))
                child_fail(status_fd, CRFS_RA_STEP_SHARE_FD, e, uint64_t(s.owner_fd));
            ::close(s.channel);
            continue;
        }
        if (s.end == image::kShareReopen) {
            int fd = reopen_for(s);
            if (fd < 0) child_fail(status_fd, CRFS_RA_STEP_SHARE_REOPEN, -fd, uint64_t(s.owner_fd));
            if (int e = state::send_one_fd(s.channel, fd))
                child_fail(status_fd, CRFS_RA_STEP_SHARE_FD, e, uint64_t(s.owner_fd));
            ::close(fd);
            ::close(s.channel);
            continue;
        }
        int fd = s.owner_fd;
        if (s.end != image::kShareSame) {
            fd = -1;
            for (const auto& a : plan.actions) {
                if (a.target != s.owner_fd) continue;
                if (s.end == image::kSharePeer && a.unix_bound >= 0)
                    fd = state::unix_bound_given(plan.unix_bound, s.ino);
                else if (s.end == image::kSharePeer && a.unix_end >= 0)
                    fd = plan.unix_sockets[plan.unix_sockets[size_t(a.unix_end)].peer].held;
                else if (s.end == kShareFifoHeld && a.pipe >= 0)  // its O_RDWR end (made)
                    fd = plan.pipes[size_t(a.pipe)].end[0];
                else if (s.end != image::kSharePeer && a.pipe >= 0)
                    fd = plan.pipes[size_t(a.pipe)].end[s.end == image::kShareReadEnd ? 0 : 1];
            }
        }
        if (fd < 0) child_fail(status_fd, CRFS_RA_STEP_SHARE_FD, EBADF, uint64_t(s.owner_fd));
        if (int e = state::send_one_fd(s.channel, fd))
            child_fail(status_fd, CRFS_RA_STEP_SHARE_FD, e, uint64_t(s.owner_fd));
        ::close(s.channel);
    }
}

void child_close_all_but(std::span<const int> keep, std::span<const int> extra, int status_fd) {
    int from = 0;
    size_t i = 0, j = 0;
    while (i < keep.size() || j < extra.size()) {
        int k =
            j >= extra.size() || (i < keep.size() && keep[i] <= extra[j]) ? keep[i++] : extra[j++];
        if (k > from && syscall(SYS_close_range, from, k - 1, 0) < 0)
            child_fail(status_fd, CRFS_RA_STEP_CLOSE_FDS, errno, uint64_t(from));
        if (k + 1 > from) from = k + 1;
    }
    syscall(SYS_close_range, from, ~0u, 0);
}

}  // namespace crfs
