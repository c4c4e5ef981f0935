// Unix socketpairs (state/unix_socket.h).
#include "state/unix_socket.h"

#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "common/io.h"
#include "common/procfs.h"
#include "common/strfmt.h"
#include "common/unique_fd.h"
#include "crfs/image_format.h"
#include "state/check.h"
#include "state/fds.h"
#include "state/tree.h"
#include "state/unix_tree.h"

#ifndef SO_PASSPIDFD
#define SO_PASSPIDFD 76
#endif

namespace crfs::state {
namespace {

constexpr uint8_t kEstablished = 1, kListen = 10;  // the kernel's TCP_* states
constexpr uint32_t kOLargefile = 0100000;
constexpr uint32_t kSockFlags = O_RDWR | O_NONBLOCK | kOLargefile;  // what fdinfo shows

const char* type_name(uint32_t t) {
    return t == SOCK_STREAM      ? "stream"
           : t == SOCK_DGRAM     ? "datagram"
           : t == SOCK_SEQPACKET ? "seqpacket"
                                 : "raw";
}

using check::bad;

// A refusal: what the reason line says (EBUSY), told apart from failures.
std::unexpected<Error> refuse(std::string what) {
    return make_error(EBUSY, what + std::string(kNotYet));
}

// Options crfs neither saves nor restores: each must hold its default.
struct IntOption {
    int opt, def;
    const char* name;
};
constexpr IntOption kDefaults[] = {
    {SO_PEEK_OFF, -1, "SO_PEEK_OFF"},
    {SO_PASSSEC, 0, "SO_PASSSEC"},
    {SO_PASSPIDFD, 0, "SO_PASSPIDFD"},
    {SO_RCVLOWAT, 1, "SO_RCVLOWAT"},
    {SO_PRIORITY, 0, "SO_PRIORITY"},
    {SO_MARK, 0, "SO_MARK"},
    {SO_TIMESTAMP, 0, "SO_TIMESTAMP"},
    {SO_TIMESTAMPNS, 0, "SO_TIMESTAMPNS"},
    {SO_TIMESTAMPING, 0, "SO_TIMESTAMPING"},
    {SO_KEEPALIVE, 0, "SO_KEEPALIVE"},
    {SO_DEBUG, 0, "SO_DEBUG"},
    {SO_DONTROUTE, 0, "SO_DONTROUTE"},
    {SO_RXQ_OVFL, 0, "SO_RXQ_OVFL"},
    {SO_WIFI_STATUS, 0, "SO_WIFI_STATUS"},
};

int64_t timeo_usec(int s, int opt) {
    timeval tv{};
    socklen_t len = sizeof tv;
    if (getsockopt(s, SOL_SOCKET, opt, &tv, &len) < 0) return -1;
    return int64_t(tv.tv_sec) * 1000000 + tv.tv_usec;
}

int get_int(int s, int opt, int fallback) {
    int v = fallback;
    socklen_t len = sizeof v;
    if (getsockopt(s, SOL_SOCKET, opt, &v, &len) < 0) return fallback;
    return v;
}

// Puts SO_PEEK_OFF back to -1 (its default, checked before) whatever happens.
struct PeekOffGuard {
    int s;
    ~PeekOffGuard() {
        int off = -1;
        setsockopt(s, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off);
    }
};

}  // namespace

std::string describe_unix(const UnixDiag& d) {
    return strfmt("unix {} socket socket:[{}]", type_name(d.type), d.ino);
}

Status check_peer_cred(const std::string& what, const ucred& peer, const char* call, pid_t by) {
    if (peer.pid != by)
        return refuse(
            strfmt("{}: its SO_PEERCRED names pid {}, the process that called {}(), not "
                   "pid {}, which calls it again at restore; a socket whose peer "
                   "credentials name another process",
                   what, peer.pid, call, by));
    auto st = read_status(by);
    if (!st) return std::unexpected(st.error());
    if (peer.uid != st->uid[1] || peer.gid != st->gid[1])
        return refuse(
            strfmt("{}: its SO_PEERCRED names uid {} gid {}, which pid {} had when it "
                   "called {}(), not its effective uid {} gid {} now; a socket whose "
                   "peer credentials name other ids",
                   what, peer.uid, peer.gid, by, call, st->uid[1], st->gid[1]));
    return {};
}

Result<pid_t> socketpair_maker(const std::string& what, std::span<const pid_t> inside, pid_t holder,
                               const ucred& peer) {
    pid_t by = holder;
    auto made = std::ranges::find(inside, peer.pid), held = std::ranges::find(inside, holder);
    if (made < held) by = peer.pid;  // an earlier member, holding neither end
    if (auto s = check_peer_cred(what, peer, "socketpair", by); !s)
        return std::unexpected(s.error());
    return by;
}

Result<ucred> unix_peer_cred(pid_t pid, int fd) {
    UniqueFd pidfd(int(syscall(SYS_pidfd_open, pid, 0)));
    if (!pidfd) return errno_error("pidfd_open");
    UniqueFd s(int(syscall(SYS_pidfd_getfd, pidfd.get(), fd, 0)));
    if (!s) return errno_error(strfmt("fd {}: pidfd_getfd", fd));
    ucred peer{};
    socklen_t len = sizeof peer;
    if (getsockopt(s.get(), SOL_SOCKET, SO_PEERCRED, &peer, &len) < 0)
        return errno_error(strfmt("fd {}: SO_PEERCRED", fd));
    return peer;
}

// The copy of the fd: pidfd_getfd, the caller's ptrace right.
Result<UnixQueue> read_unix_socket(pid_t pid, int fd, const UnixDiag& d, bool queue,
                                   bool* keepalive) {
    UniqueFd pidfd(int(syscall(SYS_pidfd_open, pid, 0)));
    if (!pidfd) return errno == ESRCH ? sys_error(ESRCH, "pidfd_open") : errno_error("pidfd_open");
    UniqueFd s(int(syscall(SYS_pidfd_getfd, pidfd.get(), fd, 0)));
    if (!s) return errno_error(strfmt("fd {}: pidfd_getfd", fd));
    std::string what = describe_unix(d);
    if (keepalive) *keepalive = get_int(s.get(), SO_KEEPALIVE, 0) != 0;
    for (const auto& o : kDefaults)
        if (!(keepalive && o.opt == SO_KEEPALIVE) && get_int(s.get(), o.opt, o.def) != o.def)
            return refuse(what + " with " + o.name + " set");
    linger lg{};
    socklen_t len = sizeof lg;
    if (getsockopt(s.get(), SOL_SOCKET, SO_LINGER, &lg, &len) == 0 && lg.l_onoff)
        return refuse(what + " with SO_LINGER set");
    len = 0;
    if (getsockopt(s.get(), SOL_SOCKET, SO_GET_FILTER, nullptr, &len) == 0 && len)
        return refuse(what + " with a socket filter attached");

    UnixQueue q;
    auto& r = q.rec;
    r.ino = d.ino;
    r.peer = d.peer;
    r.type = d.type;
    r.shutdown = d.shutdown;
    r.passcred = uint32_t(get_int(s.get(), SO_PASSCRED, 0));
    r.sndbuf = uint32_t(get_int(s.get(), SO_SNDBUF, 0));
    r.rcvbuf = uint32_t(get_int(s.get(), SO_RCVBUF, 0));
    r.rcvtimeo_usec = timeo_usec(s.get(), SO_RCVTIMEO);
    r.sndtimeo_usec = timeo_usec(s.get(), SO_SNDTIMEO);
    len = sizeof q.peer;
    if (getsockopt(s.get(), SOL_SOCKET, SO_PEERCRED, &q.peer, &len) < 0) q.peer = {};
    if (r.rcvtimeo_usec < 0 || r.sndtimeo_usec < 0) return errno_error(what + ": timeouts");
    if (!queue) return q;

    auto status = read_status(pid);
    if (!status) return std::unexpected(status.error());
    int off = 0;
    if (setsockopt(s.get(), SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off) < 0)
        return errno_error(what + ": SO_PEEK_OFF");
    PeekOffGuard guard{s.get()};
    std::string buf(d.type == SOCK_STREAM ? std::max<size_t>(d.rqueue, 1) : size_t(1) << 20, '\0');
    for (;;) {
        alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(253 * sizeof(int))];
        iovec iov{buf.data(), buf.size()};
        sockaddr_un from{};
        msghdr m{};
        m.msg_name = &from;
        m.msg_namelen = sizeof from;
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = cbuf;
        m.msg_controllen = sizeof cbuf;
        ssize_t n = recvmsg(s.get(), &m, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n < 0) return errno_error(what + ": peeking at its queue");
        bool rights = false, foreign = false;
        for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
            if (c->cmsg_level != SOL_SOCKET) continue;
            if (c->cmsg_type == SCM_RIGHTS) {
                // Peeking installs the fds in flight here: close them again.
                size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < k; ++i) {
                    int f;
                    std::memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof f);
                    ::close(f);
                }
                rights = true;
            } else if (c->cmsg_type == SCM_CREDENTIALS) {
                ucred u;
                std::memcpy(&u, CMSG_DATA(c), sizeof u);
                foreign |= u.pid != pid || u.uid != status->uid[0] || u.gid != status->gid[0];
            }
        }
        if (rights) return refuse(what + " has fds in flight (SCM_RIGHTS) in its queue;");
        if (m.msg_flags & MSG_CTRUNC) return refuse(what + " has more control data queued than");
        if (foreign)
            return refuse(what + " queues credentials (SCM_CREDENTIALS) of another process;");
        if (m.msg_flags & MSG_TRUNC) return refuse(what + " queues a datagram above 1 MiB;");
        // A socket shut down for reading answers 0 at the end of its queue.
        if (n == 0 && (d.type == SOCK_STREAM || (d.shutdown & 1))) break;
        if (q.data.size() + size_t(n) > image::kMaxUnixQueueBytes ||
            q.msgs.size() >= image::kMaxUnixMessages)
            return refuse(what + strfmt(" queues more than {} bytes or {} messages; such a queue",
                                        image::kMaxUnixQueueBytes, image::kMaxUnixMessages));
        q.data.append(buf.data(), size_t(n));
        size_t from_len =
            m.msg_namelen > offsetof(sockaddr_un, sun_path)
                ? std::min<size_t>(m.msg_namelen, sizeof from) - offsetof(sockaddr_un, sun_path)
                : 0;
        // A path comes NUL-terminated (and its length with it): cut there.
        if (from_len && from.sun_path[0]) from_len = strnlen(from.sun_path, from_len);
        if (d.type != SOCK_STREAM) q.senders.emplace_back(from.sun_path, from_len);
        if (d.type == SOCK_STREAM) {
            if (q.msgs.empty()) q.msgs.push_back(0);
            q.msgs[0] += uint32_t(n);
        } else {
            q.msgs.push_back(uint32_t(n));
        }
    }
    r.nmsgs = uint32_t(q.msgs.size());
    r.data_len = q.data.size();
    return q;
}

bool task_holds(TaskView& t, uint64_t ino) {
    std::string link = strfmt("socket:[{}]", ino);
    if (auto fds = t.fds(); fds)
        for (const FdView& o : **fds)
            if (o.link == link) return true;
    return false;
}

uint64_t socket_ino(const FdView& f) {
    if (!f.link.starts_with("socket:[")) return 0;
    return std::strtoull(f.link.c_str() + 8, nullptr, 10);
}

const UnixDiag* UnixTable::find(uint64_t ino) {
    load();
    auto it = by_ino_.find(ino);
    return it == by_ino_.end() ? nullptr : &it->second;
}

void UnixTable::load() {
    if (loaded_) return;
    loaded_ = true;
    UniqueFd nl(socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
    if (!nl) {
        error_ = strfmt("NETLINK_SOCK_DIAG: {}", std::strerror(errno));
        return;
    }
    struct {
        nlmsghdr h;
        unix_diag_req r;
    } req{};
    req.h.nlmsg_len = sizeof req;
    req.h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.r.sdiag_family = AF_UNIX;
    req.r.udiag_states = ~0u;
    req.r.udiag_show =
        UDIAG_SHOW_NAME | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN | UDIAG_SHOW_VFS | UDIAG_SHOW_ICONS;
    if (send(nl.get(), &req, sizeof req, 0) != ssize_t(sizeof req)) {
        error_ = strfmt("unix_diag request: {}", std::strerror(errno));
        return;
    }
    std::vector<char> buf(1 << 16);
    for (;;) {
        ssize_t n = recv(nl.get(), buf.data(), buf.size(), 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            error_ = strfmt("unix_diag: {}", n < 0 ? std::strerror(errno) : "no answer");
            return;
        }
        for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, size_t(n));
             h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE) return;
            if (h->nlmsg_type == NLMSG_ERROR) {
                error_ = "unix_diag: error answer";
                return;
            }
            if (h->nlmsg_len < NLMSG_LENGTH(sizeof(unix_diag_msg))) continue;
            auto* m = static_cast<unix_diag_msg*>(NLMSG_DATA(h));
            UnixDiag d;
            d.ino = m->udiag_ino;
            d.type = m->udiag_type;
            d.state = m->udiag_state;
            int alen = int(h->nlmsg_len - NLMSG_LENGTH(sizeof *m));
            for (auto* a = reinterpret_cast<rtattr*>(m + 1); RTA_OK(a, alen);
                 a = RTA_NEXT(a, alen)) {
                const char* p = static_cast<const char*>(RTA_DATA(a));
                size_t len = RTA_PAYLOAD(a);
                if (a->rta_type == UNIX_DIAG_NAME && len) {
                    d.raw_name.assign(p, len);
                    d.name =
                        p[0] ? std::string(p, strnlen(p, len)) : "@" + std::string(p + 1, len - 1);
                } else if (a->rta_type == UNIX_DIAG_PEER && len >= 4) {
                    uint32_t v;
                    std::memcpy(&v, p, 4);
                    d.peer = v;
                } else if (a->rta_type == UNIX_DIAG_RQLEN && len >= sizeof(unix_diag_rqlen)) {
                    unix_diag_rqlen q;
                    std::memcpy(&q, p, sizeof q);
                    d.rqueue = q.udiag_rqueue;
                    d.wqueue = q.udiag_wqueue;
                } else if (a->rta_type == UNIX_DIAG_VFS && len >= sizeof(unix_diag_vfs)) {
                    unix_diag_vfs v;
                    std::memcpy(&v, p, sizeof v);
                    d.vfs_dev = v.udiag_vfs_dev;
                    d.vfs_ino = v.udiag_vfs_ino;
                } else if (a->rta_type == UNIX_DIAG_ICONS) {
                    for (size_t i = 0; i + 4 <= len; i += 4) {
                        uint32_t v;
                        std::memcpy(&v, p + i, 4);
                        d.icons.push_back(v);
                    }
                } else if (a->rta_type == UNIX_DIAG_SHUTDOWN && len >= 1) {
                    d.shutdown = uint8_t(p[0]);
                }
            }
            by_ino_[d.ino] = std::move(d);
        }
    }
}

bool is_unix_socket(const FdView& f, FdContext& ctx) {
    uint64_t ino = socket_ino(f);
    return ino && ctx.unix_sockets.find(ino);
}

std::optional<std::string> unix_socket_reason(TaskView& t, const FdView& f, FdContext& ctx) {
    const UnixDiag* d = ctx.unix_sockets.find(socket_ino(f));
    std::string what = describe_unix(*d), nyet(kNotYet);
    if (f.info.flags & ~(kSockFlags | O_CLOEXEC))
        return what + strfmt(" with open flags 0{:o}", f.info.flags) + nyet;
    if (d->state == kListen) return "listening " + what + " at " + d->name + nyet;
    if (!d->name.empty()) return what + " bound to " + d->name + nyet;
    if (d->type != SOCK_STREAM && d->type != SOCK_DGRAM && d->type != SOCK_SEQPACKET)
        return what + nyet;
    if (d->state != kEstablished || !d->peer) return what + " (unconnected)" + nyet;
    const UnixDiag* peer = ctx.unix_sockets.find(d->peer);
    std::string peer_link = strfmt("socket:[{}]", d->peer);
    if (!peer || peer->peer != d->ino || !peer->name.empty())
        return what + " connected to " + (peer && !peer->name.empty() ? peer->name : peer_link) +
               ", which is not its socketpair peer; such a connection" + nyet;
    // Ends held by other processes of the image are restored with it
    // (state/tree_share.h); any other holder is a reason.
    std::vector<pid_t> inside = t.image_pids();
    if (inside.empty()) inside = tree_pids(t.pid());
    bool peer_inside = false;
    for (const std::string& link : {f.link, peer_link}) {
        std::vector<pid_t> others;
        for (pid_t p : ctx.holders.of(link))
            if (std::find(inside.begin(), inside.end(), p) == inside.end())
                others.push_back(p);
            else if (link == peer_link)
                peer_inside = true;
        if (!others.empty())
            return what + ": " + link + " is also open in " + Holders::names(others) +
                   "; a socket shared with another process" + nyet;
    }
    if (!peer_inside && !task_holds(t, d->peer)) {
        int unseen = ctx.holders.unseen();
        return what + ": its peer " + peer_link + " is not open in this task (" +
               (unseen ? strfmt("closed, or held by one of the {} processes whose fds you "
                                "cannot read",
                                unseen)
                       : std::string("closed")) +
               "); a socket with a peer outside the task" + nyet;
    }
    bool keepalive = false;  // kept (unix-options record)
    auto q = read_unix_socket(t.pid(), f.fd, *d, true, &keepalive);
    if (!q) return q.error().code == EBUSY ? q.error().what : what + ": " + q.error().what;
    // socketpair() named its caller in both ends; the restore's caller is the
    // first process of the image holding an end (state/tree_share.h; the
    // holders are the others), or an earlier one SO_PEERCRED names.
    pid_t holder = t.pid();
    for (pid_t p : inside)
        if (p == t.pid() || std::ranges::count(ctx.holders.of(f.link), p) ||
            std::ranges::count(ctx.holders.of(peer_link), p)) {
            holder = p;
            break;
        }
    if (auto s = socketpair_maker(what, inside, holder, q->peer); !s)
        return s.error().code == EBUSY ? s.error().what : what + ": " + s.error().what;
    return std::nullopt;
}

Status dump_unix_socket(pid_t pid, int fd, uint64_t ino,
                        std::vector<std::pair<image::RecordType, std::string>>& out) {
    UnixTable table;
    const UnixDiag* d = table.find(ino);
    if (!d)
        return make_error(EBUSY, strfmt("fd {}: socket:[{}] is no unix socket unix_diag knows ({})",
                                        fd, ino, table.error()));
    bool keepalive = false;
    auto q = read_unix_socket(pid, fd, *d, true, &keepalive);
    if (!q) return std::unexpected(q.error().context(strfmt("fd {}", fd)));
    std::string rec(reinterpret_cast<const char*>(&q->rec), sizeof q->rec);
    rec.append(reinterpret_cast<const char*>(q->msgs.data()), q->msgs.size() * sizeof(uint32_t));
    rec += q->data;
    out.emplace_back(image::RecordType::kUnixSocket, std::move(rec));
    if (keepalive) {
        image::UnixOptionsRecord o{ino, image::kUnixKeepalive, 0};
        out.emplace_back(image::RecordType::kUnixOptions,
                         std::string(reinterpret_cast<const char*>(&o), sizeof o));
    }
    return {};
}

Status check_unix_sockets(const DecodedImage& img) {
    std::map<uint64_t, const UnixSocketEntry*> by_ino;
    std::map<uint64_t, int> refs;
    for (const auto& u : img.unix_sockets)
        if (!by_ino.emplace(u.rec.ino, &u).second || !refs.emplace(u.rec.ino, 0).second)
            return bad(strfmt("unix socket {}: twice", u.rec.ino));
    for (const auto& u : img.unix_sockets) {
        const auto& r = u.rec;
        std::string at = strfmt("unix socket {}", r.ino);
        if (r.type != SOCK_STREAM && r.type != SOCK_DGRAM && r.type != SOCK_SEQPACKET)
            return bad(strfmt("{}: type {}", at, r.type));
        if (r.shutdown > 3 || r.passcred > 1)
            return bad(strfmt("{}: shutdown {} passcred {}", at, r.shutdown, r.passcred));
        if (r.sndbuf > (1u << 30) || r.rcvbuf > (1u << 30))
            return bad(strfmt("{}: buffers {} {}", at, r.sndbuf, r.rcvbuf));
        if (r.rcvtimeo_usec < 0 || r.sndtimeo_usec < 0)
            return bad(strfmt("{}: timeouts {} {}", at, r.rcvtimeo_usec, r.sndtimeo_usec));
        if (r.type == SOCK_STREAM && r.nmsgs > 1)
            return bad(strfmt("{}: {} stream chunks", at, r.nmsgs));
        if (r.type != SOCK_STREAM)
            for (uint32_t m : u.lens)
                if (m > (1u << 20)) return bad(strfmt("{}: a datagram of {} bytes", at, m));
        auto peer = by_ino.find(r.peer);
        if (r.peer == r.ino || peer == by_ino.end() || peer->second->rec.peer != r.ino ||
            peer->second->rec.type != r.type)
            return bad(strfmt("{}: peer {} is not its pair", at, r.peer));
    }
    for (const auto& f : img.fds) {
        if (f.rec.kind != uint32_t(image::FdKind::kUnixSocket) || f.rec.same_as >= 0) continue;
        if (f.rec.open_flags & ~kSockFlags || (f.rec.open_flags & O_ACCMODE) != O_RDWR)
            return bad(strfmt("fd {}: socket open flags 0{:o}", f.rec.fd, f.rec.open_flags));
        if (!f.path.empty()) return bad(strfmt("fd {}: a socket with a path", f.rec.fd));
        auto it = refs.find(f.rec.ino);
        if (it == refs.end())
            return bad(strfmt("fd {}: no record of unix socket {}", f.rec.fd, f.rec.ino));
        if (++it->second > 1)
            return bad(strfmt("fd {}: a second open file description of unix socket {}", f.rec.fd,
                              f.rec.ino));
    }
    // sock: a pair another member made names an end of this image, once per pair
    // (its maker's index: state/tree_share_restore.cc).
    std::set<uint64_t> made;
    for (const auto& m : img.unix_makers) {
        auto it = by_ino.find(m.ino);
        if (it == by_ino.end() || m.reserved)
            return bad(strfmt("unix-maker record for unix socket {}: no such socket", m.ino));
        if (!made.insert(m.ino).second || made.count(it->second->rec.peer))
            return bad(strfmt("unix socket {}: made by two processes", m.ino));
    }
    std::set<uint64_t> optioned;
    for (const auto& o : img.unix_options)
        if (!by_ino.count(o.ino) || (o.options & ~image::kUnixKeepalive) || o.reserved ||
            !optioned.insert(o.ino).second)
            return bad(
                strfmt("unix-options record for unix socket {}: no such socket, options "
                       "{}, or a second one",
                       o.ino, o.options));
    // share: an end no fd holds is the peer of one that is held, given to
    // another process of the tree (state/tree_share_restore.h).
    for (const auto& [ino, n] : refs)
        if (!n && !refs[by_ino[ino]->rec.peer])
            return bad(strfmt("unix socket {}: no fd holds it or its peer", ino));
    return {};
}

Result<std::vector<UnixPlan>> plan_unix_sockets(const DecodedImage& img, int image_fd) {
    std::vector<UnixPlan> out;
    for (const auto& u : img.unix_sockets) {
        UnixPlan p;
        p.rec = u.rec;
        p.euid = img.creds.uid[1];
        p.egid = img.creds.gid[1];
        p.msgs = u.lens;
        for (const auto& o : img.unix_options)  // check_unix_sockets: one each
            if (o.ino == u.rec.ino) p.options = o.options;
        p.data.resize(u.rec.data_len);
        if (auto s = pread_exact(image_fd, p.data.data(), p.data.size(), u.data_offset); !s)
            return std::unexpected(
                s.error().context(strfmt("the queue of unix socket {}", u.rec.ino)));
        out.push_back(std::move(p));
    }
    for (auto& p : out)  // check_unix_sockets: every peer is there
        for (size_t i = 0; i < out.size(); ++i)
            if (out[i].rec.ino == p.rec.peer) p.peer = i;
    return out;
}

namespace {

int set_buf(int s, int opt, int force, uint32_t want) {
    if (uint32_t(get_int(s, opt, 0)) == want) return 0;
    int half = int(want / 2);
    setsockopt(s, SOL_SOCKET, opt, &half, sizeof half);
    if (uint32_t(get_int(s, opt, 0)) != want) setsockopt(s, SOL_SOCKET, force, &half, sizeof half);
    return uint32_t(get_int(s, opt, 0)) == want ? 0 : ERANGE;
}

}  // namespace

int set_unix_options(int s, const image::UnixSocketRecord& r) {
    if (int e = set_buf(s, SO_SNDBUF, SO_SNDBUFFORCE, r.sndbuf)) return e;
    if (int e = set_buf(s, SO_RCVBUF, SO_RCVBUFFORCE, r.rcvbuf)) return e;
    int one = 1;
    if (r.passcred && setsockopt(s, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) < 0) return errno;
    for (auto [opt, usec] :
         {std::pair{SO_RCVTIMEO, r.rcvtimeo_usec}, std::pair{SO_SNDTIMEO, r.sndtimeo_usec}}) {
        if (!usec) continue;
        timeval tv{time_t(usec / 1000000), suseconds_t(usec % 1000000)};
        if (setsockopt(s, SOL_SOCKET, opt, &tv, sizeof tv) < 0) return errno;
    }
    return 0;
}

int send_unix_queue(int from, const uint32_t* lens, size_t count, const char* d, uint32_t type,
                    const sockaddr* to, socklen_t to_len) {
    for (size_t i = 0; i < count; ++i) {
        size_t left = lens[i];
        do {
            ssize_t n = sendto(from, d, left, MSG_DONTWAIT | MSG_NOSIGNAL, to, to_len);
            if (n < 0) return errno;
            if (type != SOCK_STREAM && size_t(n) != left) return EMSGSIZE;
            d += n;
            left -= size_t(n);
        } while (left);
    }
    return 0;
}

TaskIds::TaskIds(uid_t euid, gid_t egid) {
    if (syscall(SYS_geteuid) != 0 || (euid == 0 && egid == 0)) return;
    fsuid_ = uid_t(syscall(SYS_setfsuid, -1));
    fsgid_ = gid_t(syscall(SYS_setfsgid, -1));
    on_ = true;
    if (syscall(SYS_setresgid, -1, egid, -1) < 0 || syscall(SYS_setresuid, -1, euid, -1) < 0)
        err_ = errno;
}

int TaskIds::leave() {
    if (!on_) return err_;
    on_ = false;
    if (syscall(SYS_setresuid, -1, 0, -1) < 0 || syscall(SYS_setresgid, -1, 0, -1) < 0)
        return err_ ? err_ : errno;
    syscall(SYS_setfsgid, fsgid_);
    syscall(SYS_setfsuid, fsuid_);
    if (syscall(SYS_setfsuid, -1) != long(fsuid_) && !err_) err_ = EPERM;
    return err_;
}

int make_socketpair(uint32_t type, uid_t euid, gid_t egid, int sv[2]) {
    return as_task(euid, egid, [&] {
        return socketpair(AF_UNIX, int(type) | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0 ? errno : 0;
    });
}

namespace {

// Sends the queue of `p` from its peer's end `from`.
int fill_queue(const UnixPlan& p, int from) {
    return send_unix_queue(from, p.msgs.data(), p.msgs.size(), p.data.data(), p.rec.type);
}

// The pair another process of the tree made (state/tree_share_restore.h): both
// ends, one message each.
int recv_pair(int channel, int sv[2]) {
    sv[0] = sv[1] = -1;
    for (int i = 0; i < 2; ++i)
        if (int e = recv_one_fd(channel, &sv[i]); e || sv[i] < 0) {
            for (int k = 0; k < i; ++k) ::close(sv[k]);
            return e ? e : EPROTO;
        }
    return 0;
}

int make_pair(const UnixPlan& a, const UnixPlan& b, int min_fd) {
    int sv[2];
    int from = a.pair_from >= 0 ? a.pair_from : b.pair_from;
    if (from >= 0) {
        if (int e = recv_pair(from, sv)) return e;
    } else if (int e = make_socketpair(a.rec.type, a.euid, a.egid, sv)) {
        return e;
    }
    const UnixPlan* ends[2] = {&a, &b};
    for (int i = 0; i < 2; ++i) {
        ends[i]->held = fcntl(sv[i], F_DUPFD_CLOEXEC, min_fd);
        int err = errno;
        ::close(sv[i]);
        if (ends[i]->held < 0) return err;
    }
    int one = 1;
    for (const UnixPlan* e : ends) {
        if (int err = set_unix_options(e->held, e->rec)) return err;
        if ((e->options & image::kUnixKeepalive) &&
            setsockopt(e->held, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) < 0)
            return errno;
    }
    if (int err = fill_queue(a, b.held)) return err;
    if (int err = fill_queue(b, a.held)) return err;
    for (const UnixPlan* e : ends)  // sk_shutdown 1/2/3 is SHUT_RD/WR/RDWR plus one
        if (e->rec.shutdown && shutdown(e->held, int(e->rec.shutdown) - 1) < 0) return errno;
    return 0;
}

}  // namespace

int child_unix_fd(const std::vector<UnixPlan>& all, size_t i, int target, int open_flags,
                  bool cloexec, int min_fd) {
    const UnixPlan& p = all[i];
    if (p.held < 0)
        if (int e = make_pair(p, all[p.peer], min_fd)) return e;
    if (p.given) return EINVAL;  // check_unix_sockets: one description per end
    if (dup3(p.held, target, cloexec ? O_CLOEXEC : 0) < 0) return errno;
    p.given = true;
    if (fcntl(target, F_SETFL, open_flags & O_NONBLOCK) < 0) return errno;
    return 0;
}

void child_close_unix(const std::vector<UnixPlan>& all) {
    for (const auto& p : all)
        if (p.held >= 0) ::close(p.held), p.held = -1;
}

}  // namespace crfs::state
