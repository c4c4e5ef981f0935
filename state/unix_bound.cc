// Named, listening and accepted unix sockets (state/unix_bound.h).
#include "state/unix_bound.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <map>
#include <set>
#include <tuple>

#include "common/io.h"
#include "common/log.h"
#include "common/procfs.h"
#include "common/strfmt.h"
#include "common/unique_fd.h"
#include "crfs/image_format.h"
#include "state/check.h"
#include "state/fds.h"
#include "state/unix_socket.h"
#include "state/unix_tree.h"

namespace crfs::state {

std::string unix_bound_name(const std::string& raw) {
    if (raw.empty() || raw[0] == '\0') return raw;
    return raw.substr(0, strnlen(raw.data(), raw.size()));
}

namespace {

using image::UnixRole;
constexpr uint8_t kEstablished = 1, kClose = 7, kListen = 10;  // the kernel's TCP_* states
constexpr uint32_t kOLargefile = 0100000;
constexpr uint32_t kSockFlags = O_RDWR | O_NONBLOCK | kOLargefile;  // what fdinfo shows
constexpr uint32_t kMaxBacklog = 1u << 20;

std::unexpected<Error> refuse(std::string what) {
    return make_error(EBUSY, what + std::string(kNotYet));
}
Status bad(const std::string& what) {
    return check::bad("unix-bound " + what);
}

// Readable: "@name" for an abstract one, escaped (names are any bytes).
std::string shown(const std::string& name) {
    std::string out = name.empty() || name[0] ? "" : "@";
    for (char c : name.empty() || name[0] ? name : name.substr(1))
        out += (c >= 0x20 && c < 0x7f) ? std::string(1, c) : strfmt("\\x{:02x}", uint8_t(c));
    return out;
}

bool same_name(const UnixDiag& a, const UnixDiag& b) {
    return !a.raw_name.empty() && unix_bound_name(a.raw_name) == unix_bound_name(b.raw_name) &&
           a.vfs_ino == b.vfs_ino && a.vfs_dev == b.vfs_dev && a.type == b.type;
}

struct Analysis {
    image::UnixBoundRecord rec{};
    UnixQueue q;
    std::vector<image::UnixSenderRecord> senders;
};

// The listening socket the task holds with the name of `d` (an accepted
// socket carries its listener's name), or null.
const UnixDiag* listener_named(const UnixDiag& d, UnixTable& table,
                               const std::set<uint64_t>& held) {
    if (d.raw_name.empty()) return nullptr;
    for (uint64_t ino : held)
        if (const UnixDiag* l = table.find(ino); l && l->state == kListen && same_name(*l, d))
            return l;
    return nullptr;
}

// The path name of `d`, checked to lead to its socket file in the task's own
// view and in the daemon's mount namespace (where stage 1 binds it again).
Status check_path(pid_t pid, const UnixDiag& d, const std::string& name,
                  image::UnixBoundRecord& r) {
    std::string what = describe_unix(d) + " bound to " + shown(name);
    struct stat mine {
    }, theirs{};
    if (stat("/proc/thread-self/ns/mnt", &mine) < 0 ||
        stat(strfmt("/proc/{}/ns/mnt", pid).c_str(), &theirs) < 0)
        return errno_error(what + ": reading mount namespaces");
    if (mine.st_ino != theirs.st_ino || mine.st_dev != theirs.st_dev)
        return refuse(what + " in another mount namespace:");
    std::string at = name[0] == '/' ? strfmt("/proc/{}/root{}", pid, name)
                                    : strfmt("/proc/{}/cwd/{}", pid, name);
    struct stat st {};
    dev_t dev = makedev(unsigned(d.vfs_dev >> 20), unsigned(d.vfs_dev & 0xfffff));
    if (lstat(at.c_str(), &st) < 0 || !S_ISSOCK(st.st_mode) || st.st_ino != d.vfs_ino ||
        st.st_dev != dev)
        return refuse(what +
                      ", a name that no longer leads to it (moved, removed, or relative to "
                      "another directory); such a socket");
    r.path_dev = st.st_dev;
    r.path_ino = st.st_ino;
    return {};
}

// What makes the unix socket `d` at `fd` of `pid`; EBUSY: why it cannot be
// saved. `mem`: the unix sockets each process of the image holds; the socket
// is judged as its maker (the first member holding it) makes it
// (state/unix_tree.h: a server makes its listener's connections).
Result<Analysis> analyze(pid_t pid, int fd, const UnixDiag& d, UnixTable& table,
                         const UnixMembers& mem) {
    Analysis a;
    auto& r = a.rec;
    std::string what = describe_unix(d);
    if (d.type != SOCK_STREAM && d.type != SOCK_DGRAM && d.type != SOCK_SEQPACKET)
        return refuse(what);
    bool stream = d.type != SOCK_DGRAM;
    size_t me = mem.first(d.ino) == UnixMembers::kNone ? mem.self() : mem.maker(d.ino, table);
    const std::set<uint64_t>& held = mem.held(me);
    auto outside = [&](uint64_t ino, const std::string& as) {
        return refuse(strfmt("{}: {} socket:[{}] is not open in this process{}; a {} outside it",
                             what, as, ino, mem.size() > 1 ? " or its tree" : "", as));
    };
    // A server and its clients: the server comes first in the tree (parents first).
    auto server_later = [&](uint64_t ino, const std::string& as, size_t m) {
        return refuse(
            strfmt("{}: its {} socket:[{}] is held by pid {}, and pid {} holding a "
                   "client of it comes before it in the tree; a client before its "
                   "server",
                   what, as, ino, mem.pid(m), mem.pid(me)));
    };
    auto client_earlier = [&](uint64_t ino, const std::string& as, size_t m) {
        return refuse(
            strfmt("{}: its {} socket:[{}] is held by pid {}, which comes before "
                   "pid {}, its server, in the tree; a client before its server",
                   what, as, ino, mem.pid(m), mem.pid(me)));
    };
    const UnixDiag* peer = d.peer ? table.find(d.peer) : nullptr;
    // SO_PEERCRED names who called listen() (a listener, its clients) or
    // connect() (an accepted end): the member that does it again at restore.
    size_t cred_by = UnixMembers::kNone;
    if (d.state == kListen) {
        if (!stream) return refuse(what + " listening");
        r.role = uint32_t(UnixRole::kListen);
        r.backlog = d.wqueue;
        cred_by = me;
        for (uint64_t c : d.icons) {
            if (!c) return refuse(what + " has a waiting connection whose client is closed; it");
            if (size_t m = mem.first(c); m == UnixMembers::kNone)
                return outside(c, "waiting client");
            else if (m < me)
                return client_earlier(c, "waiting client", m);
        }
    } else if (stream && d.state == kEstablished) {
        const UnixDiag* l = nullptr;
        for (const auto& [ino, o] : table.all())
            if (o.state == kListen && std::ranges::count(o.icons, d.ino)) l = &o;
        size_t pm = d.peer ? mem.first(d.peer) : UnixMembers::kNone;
        if (l) {
            if (size_t m = mem.first(l->ino); m == UnixMembers::kNone)
                return outside(l->ino, "listening socket");
            else if (m > me)
                return server_later(l->ino, "listening socket", m);
            if (d.wqueue)
                return refuse(
                    strfmt("{}: a connection waiting in socket:[{}] holds bytes the "
                           "server has not read (they cannot be read without accepting "
                           "it);",
                           what, l->ino));
            r.role = uint32_t(UnixRole::kWaiting);
            r.listener = l->ino;
            cred_by = mem.first(l->ino);
            r.order = uint32_t(std::ranges::find(l->icons, d.ino) - l->icons.begin());
        } else if (!d.peer) {
            return refuse(what + ": its peer is closed; a connection whose peer is gone");
        } else if (!peer || pm == UnixMembers::kNone) {
            return outside(d.peer, "peer");
        } else if ((l = listener_named(d, table, held))) {
            if (pm < me) return client_earlier(d.peer, "peer", pm);
            if (size_t m = mem.first(l->ino); m != me)
                return refuse(
                    strfmt("{} accepted from socket:[{}], which pid {} holds first; "
                           "a connection accepted by another process than its "
                           "listener's first holder",
                           what, l->ino, mem.pid(m)));
            r.role = uint32_t(UnixRole::kAccepted);
            r.listener = l->ino;
            cred_by = pm;  // the client's maker connects it (state/unix_tree.h)
        } else if (pm > me && listener_named(*peer, table, mem.held(pm))) {
            return server_later(d.peer, "peer", pm);
        } else if ((l = listener_named(*peer, table, mem.held(pm))) &&
                   (pm == me || mem.first(l->ino) == pm)) {
            r.role = uint32_t(UnixRole::kClient);
            cred_by = pm;
        } else {
            return refuse(
                strfmt("{} connected to socket:[{}] by a listening socket its process "
                       "no longer holds; such a connection",
                       what, d.peer));
        }
    } else if (!(d.state == kClose || (!stream && d.state == kEstablished))) {
        return refuse(strfmt("{} in state {}", what, d.state));
    } else if (!d.peer && d.state == kEstablished && d.raw_name.empty()) {
        // Only a connection makes an unnamed datagram socket ESTABLISHED: its peer died.
        return refuse(what + ": its peer is closed; a connection whose peer is gone");
    } else if (d.peer) {  // a datagram socket connected to another: its group's maker makes both
        if (!peer || mem.first(d.peer) == UnixMembers::kNone) return outside(d.peer, "peer");
        if (peer->raw_name.empty())
            return refuse(what + strfmt(" connected to the unnamed socket:[{}];", d.peer));
    }
    std::string name = unix_bound_name(d.raw_name);
    if (name.size() > image::kMaxUnixName) return refuse(what + " with a name above 108 bytes");
    r.name_len = uint32_t(name.size());
    std::memcpy(r.name, name.data(), name.size());
    if (!name.empty() && name[0])  // the maker binds it: a relative name from its cwd
        if (auto s = check_path(mem.pid(me), d, name, r); !s) {
            image::UnixBoundRecord mine{};
            if (name[0] != '/' && mem.pid(me) != pid && check_path(pid, d, name, mine))
                return refuse(strfmt(
                    "{} bound to the relative name {} from the directory of pid {}, which is "
                    "not that of pid {}, the maker of its datagram group (it binds the name "
                    "at restore); such a socket",
                    what, shown(name), pid, mem.pid(me)));
            return std::unexpected(s.error());
        }

    // A listening or unconnected stream socket has no queue to peek at.
    bool keepalive = false;
    auto q = read_unix_socket(pid, fd, d, !stream || d.state == kEstablished, &keepalive);
    if (!q) return std::unexpected(q.error());
    a.q = std::move(*q);
    if (cred_by != UnixMembers::kNone)
        if (auto s = check_peer_cred(what, a.q.peer,
                                     r.role == uint32_t(UnixRole::kAccepted) ? "connect" : "listen",
                                     mem.pid(cred_by));
            !s)
            return std::unexpected(s.error());
    r.sock = a.q.rec;
    r.options = keepalive ? image::kUnixKeepalive : 0;
    if (r.role == uint32_t(UnixRole::kWaiting)) r.sock.peer = 0;  // the embryo: made by connect
    if (r.role == uint32_t(UnixRole::kPlain) && stream) r.sock.peer = 0;
    if (a.q.msgs.empty()) return a;
    if (r.role == uint32_t(UnixRole::kPlain) && (stream || name.empty()))
        return refuse(what + (stream ? " (unconnected) with bytes queued;"
                                     : " (unnamed) with datagrams queued;"));
    if (stream) return a;
    std::map<std::string, std::pair<uint64_t, size_t>> named;  // name -> socket, its maker
    for (size_t m = 0; m < mem.size(); ++m)
        for (uint64_t h : mem.held(m))
            if (const UnixDiag* s = table.find(h);
                s && s->type == SOCK_DGRAM && !s->raw_name.empty())
                named[unix_bound_name(s->raw_name)] = {h, mem.maker(h, table)};
    for (uint32_t i = 0; i < a.q.senders.size(); ++i) {
        const std::string& from = a.q.senders[i];
        uint64_t ino = 0;
        if (!from.empty()) {  // sent again by its sender: one the maker makes
            size_t by = UnixMembers::kNone;
            if (auto it = named.find(from); it != named.end()) std::tie(ino, by) = it->second;
            if (ino && by != me)  // only when it was sent while the groups were read
                return refuse(strfmt(
                    "{} queues a datagram from {} (socket:[{}]), which pid {} makes, not pid "
                    "{}, the receiver's maker (sent while crfs read its queue); such a "
                    "datagram",
                    what, shown(from), ino, mem.pid(by), mem.pid(me)));
            if (!ino)
                return refuse(
                    strfmt("{} queues a datagram from {}, a socket not open in this "
                           "process{}; such a datagram",
                           what, shown(from), mem.size() > 1 ? " or its tree" : ""));
        }
        if (!a.senders.empty() && a.senders.back().sender == ino &&
            a.senders.back().first + a.senders.back().count == i)
            ++a.senders.back().count;
        else if (ino)
            a.senders.push_back({d.ino, i, 1, ino});
    }
    return a;
}

bool claims(uint64_t ino, UnixTable& table) {
    const UnixDiag* d = table.find(ino);
    if (!d) return false;
    const UnixDiag* peer = d->peer ? table.find(d->peer) : nullptr;
    bool pair_end = d->raw_name.empty() && d->state == kEstablished && peer &&
                    peer->raw_name.empty() && peer->peer == d->ino;
    return !pair_end;
}

}  // namespace

bool is_unix_bound(const FdView& f, FdContext& ctx) {
    return claims(socket_ino(f), ctx.unix_sockets);
}

std::optional<std::string> unix_bound_reason(TaskView& t, const FdView& f, FdContext& ctx) {
    const UnixDiag* d = ctx.unix_sockets.find(socket_ino(f));
    std::string what = describe_unix(*d);
    if (f.info.flags & ~(kSockFlags | O_CLOEXEC))
        return what + strfmt(" with open flags 0{:o}", f.info.flags) + std::string(kNotYet);
    // Processes of the image hold their sockets as its members (state/unix_tree.h).
    UnixMembers mem(t.pid(), t.image_pids(), t.self_tgid(), ctx.unix_sockets);
    auto outsiders = [&](const std::string& link) {
        std::vector<pid_t> out;
        for (pid_t p : ctx.holders.of(link))
            if (!mem.member(p)) out.push_back(p);
        return out;
    };
    std::vector<uint64_t> related{d->ino};
    if (d->peer) related.push_back(d->peer);
    for (uint64_t ino : related) {
        std::string link = strfmt("socket:[{}]", ino);
        if (const auto& others = outsiders(link); !others.empty())
            return what + ": " + link + " is also open in " + Holders::names(others) +
                   "; a socket shared with another process" + std::string(kNotYet);
    }
    for (uint64_t c : d->icons) {  // name who holds a waiting client outside the image
        std::string link = strfmt("socket:[{}]", c);
        if (const auto& others = outsiders(link);
            c && mem.first(c) == UnixMembers::kNone && !others.empty())
            return strfmt(
                "listening {} at {}: the client of a waiting connection, {}, is held by "
                "{}; a waiting client outside the process{}",
                what, shown(unix_bound_name(d->raw_name)), link, Holders::names(others), kNotYet);
    }
    auto a = analyze(t.pid(), f.fd, *d, ctx.unix_sockets, mem);
    if (!a) return a.error().code == EBUSY ? a.error().what : what + ": " + a.error().what;
    return std::nullopt;
}

Result<bool> dump_unix_bound(pid_t pid, int fd, uint64_t ino,
                             std::vector<std::pair<image::RecordType, std::string>>& out,
                             std::span<const pid_t> image_pids) {
    UnixTable table;
    if (!table.find(ino))
        return make_error(EBUSY, strfmt("fd {}: socket:[{}] is no unix socket unix_diag knows ({})",
                                        fd, ino, table.error()));
    if (!claims(ino, table)) return false;
    UnixMembers mem(pid, image_pids, getpid(), table);
    auto a = analyze(pid, fd, *table.find(ino), table, mem);
    if (!a) return std::unexpected(a.error().context(strfmt("fd {}", fd)));
    std::string rec(reinterpret_cast<const char*>(&a->rec), sizeof a->rec);
    rec.append(reinterpret_cast<const char*>(a->q.msgs.data()), a->q.msgs.size() * 4);
    rec += a->q.data;
    out.emplace_back(image::RecordType::kUnixBound, std::move(rec));
    for (const auto& s : a->senders)
        out.emplace_back(image::RecordType::kUnixSender,
                         std::string(reinterpret_cast<const char*>(&s), sizeof s));
    return true;
}

// --- restore -----------------------------------------------------------------

Status check_unix_bound(const DecodedImage& img) {
    std::map<uint64_t, const UnixBoundEntry*> by_ino;
    std::map<uint64_t, int> refs;
    for (const auto& u : img.unix_bound)
        if (!by_ino.emplace(u.rec.sock.ino, &u).second)
            return bad(strfmt("{}: twice", u.rec.sock.ino));
    for (const auto& u : img.unix_sockets)
        if (by_ino.contains(u.rec.ino)) return bad(strfmt("{}: also a socketpair end", u.rec.ino));
    auto find = [&](uint64_t ino) -> const image::UnixBoundRecord* {
        auto it = by_ino.find(ino);
        return it == by_ino.end() ? nullptr : &it->second->rec;
    };
    std::map<uint64_t, std::set<uint32_t>> orders;  // listener -> waiting places
    for (const auto& u : img.unix_bound) {
        const auto& r = u.rec;
        const auto& s = r.sock;
        std::string at = strfmt("{}", s.ino);
        refs[s.ino] = 0;
        if (s.type != SOCK_STREAM && s.type != SOCK_DGRAM && s.type != SOCK_SEQPACKET)
            return bad(strfmt("{}: type {}", at, s.type));
        if (s.shutdown > 3 || s.passcred > 1 || s.sndbuf > (1u << 30) || s.rcvbuf > (1u << 30) ||
            s.rcvtimeo_usec < 0 || s.sndtimeo_usec < 0)
            return bad(strfmt("{}: options", at));
        bool stream = s.type != SOCK_DGRAM;
        if (s.type == SOCK_STREAM && s.nmsgs > 1)  // seqpacket: one per message
            return bad(strfmt("{}: {} stream chunks", at, s.nmsgs));
        if (s.type != SOCK_STREAM)
            for (uint32_t m : u.lens)
                if (m > (1u << 20)) return bad(strfmt("{}: a datagram of {} bytes", at, m));
        if ((r.options & ~image::kUnixKeepalive) || r.role > uint32_t(UnixRole::kClient) ||
            r.name_len > image::kMaxUnixName)
            return bad(strfmt("{}: role {} name length {}", at, r.role, r.name_len));
        std::string name(r.name, r.name_len);
        if (name.size() > 1 && name[0] && name.find('\0') != std::string::npos)
            return bad(strfmt("{}: a path with a NUL", at));
        if (name == std::string(1, '\0')) return bad(strfmt("{}: an empty abstract name", at));
        auto role = UnixRole(r.role);
        const auto* peer = s.peer ? find(s.peer) : nullptr;
        const auto* listener = r.listener ? find(r.listener) : nullptr;
        bool listener_ok = listener && listener->role == uint32_t(UnixRole::kListen) &&
                           listener->sock.type == s.type;
        bool queue = s.nmsgs || s.data_len;
        switch (role) {
            case UnixRole::kPlain:
                if (r.listener || (stream && (s.peer || queue)) ||
                    (!stream && queue && !r.name_len))
                    return bad(strfmt("{}: an unconnected socket with a peer or a queue", at));
                if (s.peer && (!peer || peer->sock.type != SOCK_DGRAM || !peer->name_len ||
                               peer->role != uint32_t(UnixRole::kPlain)))
                    return bad(strfmt("{}: peer {}", at, s.peer));
                break;
            case UnixRole::kListen:
                if (!stream || !r.name_len || s.peer || queue || r.listener ||
                    r.backlog > kMaxBacklog)
                    return bad(strfmt("{}: listening socket", at));
                break;
            case UnixRole::kAccepted:
                if (!listener_ok || !peer || peer->role != uint32_t(UnixRole::kClient) ||
                    peer->sock.peer != s.ino || r.name_len != listener->name_len ||
                    std::memcmp(r.name, listener->name, r.name_len))
                    return bad(strfmt("{}: accepted from {}, peer {}", at, r.listener, s.peer));
                break;
            case UnixRole::kWaiting:
                if (!listener_ok || s.peer || queue || !orders[r.listener].insert(r.order).second)
                    return bad(strfmt("{}: waiting in {} at {}", at, r.listener, r.order));
                break;
            case UnixRole::kClient:
                if (!peer || peer->role != uint32_t(UnixRole::kAccepted) ||
                    peer->sock.peer != s.ino || r.listener)
                    return bad(strfmt("{}: client of {}", at, s.peer));
                break;
        }
    }
    for (const auto& [l, places] : orders)  // 0..n-1, each once
        if (*places.rbegin() != places.size() - 1) return bad(strfmt("{}: waiting places", l));
    std::map<uint64_t, uint64_t> covered;  // receiver -> messages covered so far (in order)
    for (const auto& s : img.unix_senders) {
        const auto* r = find(s.ino);
        const auto* from = find(s.sender);
        if (!r || r->sock.type != SOCK_DGRAM || !from || from->sock.type != SOCK_DGRAM ||
            !from->name_len || !s.count || s.first < covered[s.ino] ||
            uint64_t(s.first) + s.count > r->sock.nmsgs)
            return bad(strfmt("sender record for {}: messages {}+{} from {}", s.ino, s.first,
                              s.count, s.sender));
        covered[s.ino] = uint64_t(s.first) + s.count;
    }
    for (const auto& f : img.fds) {
        if (f.rec.kind != uint32_t(image::FdKind::kUnixBound) || f.rec.same_as >= 0) continue;
        if (f.rec.open_flags & ~kSockFlags || (f.rec.open_flags & O_ACCMODE) != O_RDWR)
            return bad(strfmt("fd {}: socket open flags 0{:o}", f.rec.fd, f.rec.open_flags));
        if (!f.path.empty()) return bad(strfmt("fd {}: a socket with a path", f.rec.fd));
        auto it = refs.find(f.rec.ino);
        if (it == refs.end())
            return bad(strfmt("fd {}: no record of socket {}", f.rec.fd, f.rec.ino));
        if (++it->second > 1)
            return bad(strfmt("fd {}: a second open file description of {}", f.rec.fd, f.rec.ino));
    }
    // A client no fd holds, of an accepted end or a listener an fd holds, is
    // given to a later process of the tree, and so is a datagram socket of a
    // group an fd holds a socket of (state/unix_tree.h).
    auto groups = unix_dgram_groups(img);
    std::set<uint64_t> held_groups;
    for (const auto& [ino, n] : refs)
        if (n && groups.contains(ino)) held_groups.insert(groups.at(ino));
    for (const auto& [ino, n] : refs) {
        const auto* r = find(ino);
        uint64_t by = r->role == uint32_t(UnixRole::kClient)    ? r->sock.peer
                      : r->role == uint32_t(UnixRole::kWaiting) ? r->listener
                                                                : 0;
        bool dgram = r->role == uint32_t(UnixRole::kPlain) && r->sock.type == SOCK_DGRAM;
        if (!n && !(refs.contains(by) && refs.at(by)) &&
            !(dgram && held_groups.contains(groups.at(ino))))
            return bad(strfmt("{}: no fd holds it", ino));
    }
    return {};
}

namespace {

// A path name that exists: free to bind again only when it is the socket file
// the image recorded and no socket is behind it any more (its socket was
// killed). Anything else is EADDRINUSE. The caller holds the writer's rights.
int stale_path(const UnixBoundPlan& p) {
    struct stat st {};
    if (lstat(p.path, &st) < 0) return errno == ENOENT ? 0 : errno;
    if (!S_ISSOCK(st.st_mode) || st.st_ino != p.rec.path_ino || st.st_dev != p.rec.path_dev)
        return EADDRINUSE;
    int probe = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (probe < 0) return errno;
    int r = connect(probe, reinterpret_cast<const sockaddr*>(&p.addr), p.addr_len);
    int err = errno;
    ::close(probe);
    return r < 0 && err == ECONNREFUSED ? -1 : EADDRINUSE;  // -1: stale, unlink it
}

}  // namespace

Result<UnixBoundSet> plan_unix_bound(const DecodedImage& img, int image_fd) {
    UnixBoundSet set;
    for (const auto& u : img.unix_bound) {
        UnixBoundPlan p;
        p.rec = u.rec;
        p.msgs = u.lens;
        p.data.resize(u.rec.sock.data_len);
        if (auto s = pread_exact(image_fd, p.data.data(), p.data.size(), u.data_offset); !s)
            return std::unexpected(
                s.error().context(strfmt("the queue of unix socket {}", u.rec.sock.ino)));
        p.addr.sun_family = AF_UNIX;
        size_t len = std::min<size_t>(u.rec.name_len, sizeof p.addr.sun_path);  // checked: <= 108
        std::memcpy(p.addr.sun_path, u.rec.name, len);
        p.addr_len = socklen_t(offsetof(sockaddr_un, sun_path) + len);
        if (len && u.rec.name[0]) std::memcpy(p.path, u.rec.name, len);
        p.senders.assign(p.msgs.size(), -1);
        set.socks.push_back(std::move(p));
    }
    auto index = [&](uint64_t ino) {  // check_unix_bound: it is there
        for (size_t i = 0; i < set.socks.size(); ++i)
            if (set.socks[i].rec.sock.ino == ino) return int(i);
        return -1;
    };
    for (auto& p : set.socks) {
        if (p.rec.sock.peer) p.peer = index(p.rec.sock.peer);
        if (p.rec.listener) p.listener = index(p.rec.listener);
        if (p.rec.role == uint32_t(UnixRole::kWaiting))
            set.waiting.push_back(&p - set.socks.data());
        // A relative path is checked in stage 1, in the task's directory.
        bool path =
            p.rec.name_len && p.rec.name[0] == '/' && p.rec.role != uint32_t(UnixRole::kAccepted);
        if (path && stale_path(p) > 0)
            return make_error(EADDRINUSE,
                              strfmt("unix socket path {}: taken by another file or a live socket",
                                     shown(p.path)));
    }
    size_t paths = 0;  // the path names stage 1 binds: a slot each
    for (const auto& p : set.socks) paths += p.path[0] != 0;
    set.files = UnixBoundFiles(paths);
    if (!set.files.ok()) return errno_error("restore: slots of the unix socket files");
    for (size_t i = 0; auto& p : set.socks)
        if (p.path[0]) p.file = set.files.slot(i++);
    for (const auto& s : img.unix_senders) {
        auto& p = set.socks[size_t(index(s.ino))];
        for (uint32_t i = 0; i < s.count; ++i) p.senders[s.first + i] = index(s.sender);
    }
    set.euid = img.creds.uid[1];
    set.egid = img.creds.gid[1];
    std::ranges::sort(set.waiting, [&](size_t a, size_t b) {
        const auto &x = set.socks[a].rec, &y = set.socks[b].rec;
        return std::pair(x.listener, x.order) < std::pair(y.listener, y.order);
    });
    return set;
}

namespace {

int hold(int s, int min_fd) {
    int hi = fcntl(s, F_DUPFD_CLOEXEC, min_fd);
    int err = errno;
    ::close(s);
    return hi < 0 ? -err : hi;
}

// The socket file bind just made at p.path, in its slot (UnixBoundFile). A
// file that cannot be recorded is unlinked again: the restore fails.
int record_file(const UnixBoundPlan& p) {
    if (!p.file) return 0;  // an abstract name
    UnixBoundFile& f = *p.file;
    size_t at = 0;
    if (p.path[0] != '/') {  // from here: the cwd ("(unreachable)..." is no path)
        if (syscall(SYS_getcwd, f.path, sizeof f.path) <= 0 || f.path[0] != '/') {
            int e = errno ? errno : ENOENT;
            unlink(p.path);
            return e;
        }
        at = strlen(f.path);
        if (at > 1) f.path[at++] = '/';
    }
    size_t len = strlen(p.path);
    struct stat st {};
    if (at + len >= sizeof f.path || lstat(p.path, &st) < 0) {
        int e = at + len >= sizeof f.path ? ENAMETOOLONG : errno;
        unlink(p.path);
        return e;
    }
    std::memcpy(f.path + at, p.path, len + 1);
    f.dev = st.st_dev;
    f.ino = st.st_ino;
    slot_made(f, true);
    return 0;
}

int bind_name(const UnixBoundPlan& p) {
    const auto* sa = reinterpret_cast<const sockaddr*>(&p.addr);
    if (bind(p.held, sa, p.addr_len) < 0) {
        if (errno != EADDRINUSE || !p.addr.sun_path[0]) return errno;
        if (int e = stale_path(p); e >= 0) return e ? e : EADDRINUSE;
        if (unlink(p.path) < 0 && errno != ENOENT) return errno;
        if (bind(p.held, sa, p.addr_len) < 0) return errno;
    }
    return record_file(p);
}

// The socketpair's options, and SO_KEEPALIVE.
int set_options(const UnixBoundPlan& p) {
    if (int e = set_unix_options(p.held, p.rec.sock)) return e;
    int on = 1;
    if ((p.rec.options & image::kUnixKeepalive) &&
        setsockopt(p.held, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) < 0)
        return errno;
    return 0;
}

int connect_to(const UnixBoundPlan& from, const UnixBoundPlan& to) {
    int r = connect(from.held, reinterpret_cast<const sockaddr*>(&to.addr), to.addr_len);
    return r < 0 ? errno : 0;
}

bool relative(const sockaddr_un& a) {
    return a.sun_path[0] && a.sun_path[0] != '/';
}

// Client `c` connected to `l`: by this process, or by the later process of
// the tree that holds it (its SO_PEERCRED and the accepted end's are then the
// kernel's own), which gets its turn here and sends the socket back
// (state/unix_tree.h child_unix_connect), so connections queue in order.
int connect_client(const UnixBoundSet& set, const UnixBoundPlan& c, const UnixBoundPlan& l,
                   int min_fd) {
    if (c.connector < 0) return as_task(set.euid, set.egid, [&] { return connect_to(c, l); });
    int dir = -1;  // a relative name is this process's: the client looks it up from here
    if (relative(l.addr) && (dir = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) return errno;
    int e = send_one_fd(c.connector, dir);
    if (dir >= 0) ::close(dir);
    int s = -1;
    if (e || (e = recv_one_fd(c.connector, &s))) return e;
    if (s < 0) return EPIPE;
    c.held = hold(s, min_fd);
    return c.held < 0 ? -c.held : 0;
}

int make_all(const UnixBoundSet& set, int min_fd) {
    const auto& all = set.socks;
    auto role = [](const UnixBoundPlan& p) { return UnixRole(p.rec.role); };
    for (const auto& p : all) {  // every socket but the accepted ones, with its name
        if (role(p) == UnixRole::kAccepted || p.connector >= 0) continue;
        int s = socket(AF_UNIX, int(p.rec.sock.type) | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (s < 0) return errno;
        if ((p.held = hold(s, min_fd)) < 0) return -p.held;
        if (int e = set_options(p)) return e;
        if (p.rec.name_len)
            if (int e = bind_name(p)) return e;
    }
    int anon = -1;               // the sender of datagrams from unnamed sockets
    for (const auto& p : all) {  // datagram queues, each message from its sender
        const char* d = p.data.data();
        for (size_t i = 0; p.rec.sock.type == SOCK_DGRAM && i < p.msgs.size(); ++i) {
            int from = p.senders[i] >= 0 ? all[size_t(p.senders[i])].held : anon;
            if (from < 0) {
                int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
                if (s < 0 || (anon = from = hold(s, min_fd)) < 0) return s < 0 ? errno : -from;
            }
            if (int e = send_unix_queue(from, &p.msgs[i], 1, d, SOCK_DGRAM,
                                        reinterpret_cast<const sockaddr*>(&p.addr), p.addr_len))
                return e;
            d += p.msgs[i];
        }
    }
    if (anon >= 0) ::close(anon);
    for (const auto& p : all)
        if (role(p) == UnixRole::kListen)
            if (int e = as_task(set.euid, set.egid,
                                [&] { return listen(p.held, int(p.rec.backlog)) < 0 ? errno : 0; }))
                return e;
    for (const auto& a : all) {  // accepted pairs, then their queues both ways
        if (role(a) != UnixRole::kAccepted) continue;
        const auto& c = all[size_t(a.peer)];
        const auto& l = all[size_t(a.listener)];
        if (int e = connect_client(set, c, l, min_fd)) return e;
        int s = accept4(l.held, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (s < 0) return errno;
        if ((a.held = hold(s, min_fd)) < 0) return -a.held;
        if (int e = set_options(a)) return e;
        for (auto [to, from] : {std::pair{&a, &c}, std::pair{&c, &a}})
            if (int e = send_unix_queue(from->held, to->msgs.data(), to->msgs.size(),
                                        to->data.data(), to->rec.sock.type))
                return e;
    }
    for (size_t i : set.waiting)
        if (int e = connect_client(set, all[i], all[size_t(all[i].listener)], min_fd)) return e;
    for (const auto& p : all) {
        if (p.rec.sock.type == SOCK_DGRAM && p.peer >= 0)
            if (int e = connect_to(p, all[size_t(p.peer)])) return e;
        // sk_shutdown 1/2/3 is SHUT_RD/WR/RDWR plus one
        if (p.rec.sock.shutdown && shutdown(p.held, int(p.rec.sock.shutdown) - 1) < 0) return errno;
    }
    return 0;
}

}  // namespace

int child_unix_bound_fd(const UnixBoundSet& set, size_t i, int target, int open_flags, bool cloexec,
                        int min_fd) {
    if (!set.made) {
        set.made = true;
        if (int e = make_all(set, min_fd)) return e;
    }
    const UnixBoundPlan& p = set.socks[i];
    if (p.given || p.held < 0) return EINVAL;  // check_unix_bound: one description each
    if (dup3(p.held, target, cloexec ? O_CLOEXEC : 0) < 0) return errno;
    p.given = true;
    if (fcntl(target, F_SETFL, open_flags & O_NONBLOCK) < 0) return errno;
    return 0;
}

void child_close_unix_bound(const UnixBoundSet& set) {
    for (const auto& p : set.socks) {
        if (p.held >= 0) ::close(p.held), p.held = -1;
        if (p.connector >= 0) ::close(p.connector);  // the clients answered: not the task's
    }
}

void UnixBoundFiles::remove() const {
    for (size_t i = 0; i < size(); ++i) {
        if (!made(i)) continue;
        const UnixBoundFile& f = *slot(i);
        std::string path(f.path, strnlen(f.path, sizeof f.path));
        size_t slash = path.rfind('/');  // recorded absolute: there is one
        std::string dir = slash == 0 ? "/" : path.substr(0, slash);
        UniqueFd d(open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
        struct stat st {};
        const char* name = path.c_str() + slash + 1;
        if (!d || fstatat(d.get(), name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISSOCK(st.st_mode) ||
            st.st_dev != f.dev || st.st_ino != f.ino) {
            log_debug("restore failed: socket file %s is no longer the one it bound: left",
                      shown(path).c_str());
            continue;
        }
        if (unlinkat(d.get(), name, 0) < 0)
            log_info("restore failed: removing socket file %s: %s", shown(path).c_str(),
                     std::strerror(errno));
    }
}

int child_make_client(const UnixBoundPlan& c, const sockaddr_un& to, socklen_t to_len, int dir,
                      uid_t euid, gid_t egid) {
    int s = socket(AF_UNIX, int(c.rec.sock.type) | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0) return -errno;
    c.held = s;
    int e = set_options(c);
    if (!e && c.rec.name_len) e = bind_name(c);
    int here = -1;
    if (!e && dir >= 0 &&
        ((here = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0 || fchdir(dir) < 0))
        e = errno;
    if (!e)
        e = as_task(euid, egid, [&] {
            return connect(s, reinterpret_cast<const sockaddr*>(&to), to_len) < 0 ? errno : 0;
        });
    if (here >= 0 && fchdir(here) < 0 && !e) e = errno;
    if (here >= 0) ::close(here);
    c.held = -1;
    if (e) ::close(s);
    return e ? -e : s;
}

}  // namespace crfs::state
