// Inet sockets: the part TCP and UDP share (state/inet.h).
#include "state/inet.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "common/io.h"
#include "common/procfs.h"
#include "common/strfmt.h"
#include "state/kind.h"

namespace crfs::state {

namespace {

int sockopt_int(int sock, int level, int name) {
    int v = 0;
    socklen_t len = sizeof v;
    return getsockopt(sock, level, name, &v, &len) == 0 ? v : -1;
}

bool any_port(const sockaddr_storage& ss) {
    if (ss.ss_family == AF_INET) return reinterpret_cast<const sockaddr_in&>(ss).sin_port != 0;
    if (ss.ss_family == AF_INET6) return reinterpret_cast<const sockaddr_in6&>(ss).sin6_port != 0;
    return false;
}

}  // namespace

bool in_task_netns(pid_t pid, uint64_t ino, bool v6) {
    auto text = read_file(strfmt("/proc/{}/net/{}", pid, v6 ? "tcp6" : "tcp"));
    if (!text) return false;
    for (const auto& s : parse_net_inet(*text, "", true))
        if (s.inode == ino) return true;
    return false;
}

Result<UniqueFd> grab_fd(pid_t pid, int fd) {
    UniqueFd pidfd(int(syscall(SYS_pidfd_open, pid, 0)));
    if (!pidfd) return errno_error(strfmt("pidfd_open of task {}", pid));
    UniqueFd dup(int(syscall(SYS_pidfd_getfd, pidfd.get(), fd, 0)));
    if (!dup) return errno_error(strfmt("fd {}: pidfd_getfd", fd));
    return dup;
}

std::string addr_text(const sockaddr_storage& ss) {
    char buf[INET6_ADDRSTRLEN] = "?";
    if (ss.ss_family == AF_INET) {
        const auto& a = reinterpret_cast<const sockaddr_in&>(ss);
        inet_ntop(AF_INET, &a.sin_addr, buf, sizeof buf);
        return strfmt("{}:{}", buf, ntohs(a.sin_port));
    }
    const auto& a = reinterpret_cast<const sockaddr_in6&>(ss);
    inet_ntop(AF_INET6, &a.sin6_addr, buf, sizeof buf);
    return strfmt("[{}]:{}", buf, ntohs(a.sin6_port));
}

Result<InetView> inspect_inet(int sock) {
    InetView v;
    v.domain = sockopt_int(sock, SOL_SOCKET, SO_DOMAIN);
    v.type = sockopt_int(sock, SOL_SOCKET, SO_TYPE);
    v.protocol = sockopt_int(sock, SOL_SOCKET, SO_PROTOCOL);
    if (v.domain != AF_INET && v.domain != AF_INET6) return make_error(ENOTSUP, "not inet");
    socklen_t len = sizeof v.local;
    if (getsockname(sock, reinterpret_cast<sockaddr*>(&v.local), &len) != 0)
        return errno_error("getsockname");
    v.bound = any_port(v.local);
    len = sizeof v.peer;
    v.connected = getpeername(sock, reinterpret_cast<sockaddr*>(&v.peer), &len) == 0;
    std::string proto = v.protocol == IPPROTO_TCP   ? "TCP"
                        : v.protocol == IPPROTO_UDP ? "UDP"
                                                    : strfmt("protocol {}", v.protocol);
    v.what = strfmt("{}{} socket", proto, v.domain == AF_INET6 ? "v6" : "");
    if (v.bound) v.what += " " + addr_text(v.local);
    if (v.connected) v.what += " to " + addr_text(v.peer);
    if (v.protocol == IPPROTO_TCP) {
        tcp_info ti{};
        len = sizeof ti;
        if (getsockopt(sock, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
            return errno_error("getsockopt TCP_INFO");
        v.tcp_state = ti.tcpi_state;
        if (v.tcp_state == TCP_LISTEN) {
            v.backlog = int(ti.tcpi_sacked);  // the kernel reports sk_max_ack_backlog here
            v.queued = ti.tcpi_unacked;       // and sk_ack_backlog here
        }
    }
    return v;
}

std::optional<std::string> inet_reason(pid_t pid, int fd, bool* is_inet) {
    *is_inet = false;
    auto sock = grab_fd(pid, fd);
    if (!sock) return std::nullopt;  // the caller's socket table names it
    auto v = inspect_inet(sock->get());
    if (!v) return std::nullopt;
    v->pid = pid;
    // Raw, SCTP, UDP-Lite ...: not ours; the socket table names them.
    if (v->type == SOCK_STREAM && v->protocol == IPPROTO_TCP) {
        *is_inet = true;
        return tcp_reason(sock->get(), *v);
    }
    if (v->type == SOCK_DGRAM && v->protocol == IPPROTO_UDP) {
        *is_inet = true;
        return udp_reason(sock->get(), *v);
    }
    return std::nullopt;
}

std::optional<std::string> socket_family_text(pid_t pid, int fd) {
    auto sock = grab_fd(pid, fd);
    if (!sock) return std::nullopt;
    switch (sockopt_int(sock->get(), SOL_SOCKET, SO_DOMAIN)) {
        case AF_UNIX:
            return "unix socket";
        case AF_NETLINK:
            return "netlink socket";
        case AF_PACKET:
            return "packet socket";
        case AF_INET:
        case AF_INET6:
            return "inet socket";
        default:
            return std::nullopt;
    }
}

void fill_addresses(const InetView& v, image::InetSocketRecord& rec) {
    rec.family = uint32_t(v.domain);
    rec.type = uint32_t(v.type);
    auto put = [](const sockaddr_storage& ss, uint8_t* addr, uint16_t& port) {
        if (ss.ss_family == AF_INET) {
            const auto& a = reinterpret_cast<const sockaddr_in&>(ss);
            std::memcpy(addr, &a.sin_addr, 4);
            port = ntohs(a.sin_port);
        } else {
            const auto& a = reinterpret_cast<const sockaddr_in6&>(ss);
            std::memcpy(addr, &a.sin6_addr, 16);
            port = ntohs(a.sin6_port);
        }
    };
    if (v.bound) {
        rec.flags |= image::kInetBound;
        put(v.local, rec.local_addr, rec.local_port);
    }
    if (v.connected) {
        rec.flags |= image::kInetConnected;
        put(v.peer, rec.peer_addr, rec.peer_port);
    }
}

socklen_t sockaddr_of(const image::InetSocketRecord& rec, bool peer, sockaddr_storage& out) {
    std::memset(&out, 0, sizeof out);
    const uint8_t* addr = peer ? rec.peer_addr : rec.local_addr;
    uint16_t port = peer ? rec.peer_port : rec.local_port;
    if (rec.family == AF_INET) {
        auto& a = reinterpret_cast<sockaddr_in&>(out);
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        std::memcpy(&a.sin_addr, addr, 4);
        return sizeof a;
    }
    auto& a = reinterpret_cast<sockaddr_in6&>(out);
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(port);
    std::memcpy(&a.sin6_addr, addr, 16);
    return sizeof a;
}

Result<UniqueFd> make_socket(const InetEntry& e, int type, int protocol) {
    UniqueFd s(socket(int(e.rec.family), type | SOCK_CLOEXEC, protocol));
    if (!s) return errno_error("socket");
    if (auto o = apply_options(s.get(), e); !o) return std::unexpected(o.error());
    return s;
}

Status bind_to(int sock, const image::InetSocketRecord& rec) {
    sockaddr_storage local;
    socklen_t len = sockaddr_of(rec, false, local);
    if (bind(sock, reinterpret_cast<sockaddr*>(&local), len) != 0)
        return errno_error("bind to " + addr_text(local));
    return {};
}

Status connect_to(int sock, const image::InetSocketRecord& rec) {
    sockaddr_storage peer;
    socklen_t len = sockaddr_of(rec, true, peer);
    if (connect(sock, reinterpret_cast<sockaddr*>(&peer), len) != 0)
        return errno_error("connect to " + addr_text(peer));
    return {};
}

Result<InetDump> dump_inet(pid_t pid, int fd) {
    auto sock = grab_fd(pid, fd);
    if (!sock) return std::unexpected(sock.error());
    auto v = inspect_inet(sock->get());
    if (!v) return std::unexpected(v.error().context(strfmt("fd {}", fd)));
    bool is_inet = false;
    if (auto why = inet_reason(pid, fd, &is_inet))
        return make_error(EBUSY, strfmt("fd {}: {}", fd, *why));
    InetDump d;
    d.rec.fd = fd;
    fill_addresses(*v, d.rec);
    d.kind = v->protocol == IPPROTO_TCP ? image::FdKind::kTcp : image::FdKind::kUdp;
    if (v->tcp_state == TCP_LISTEN) {
        d.rec.flags |= image::kInetListening;
        d.rec.backlog = v->backlog;
    }
    auto opts = dump_options(sock->get(), *v);
    if (!opts) return std::unexpected(opts.error().context(strfmt("fd {}", fd)));
    d.options = std::move(*opts);
    for (auto& o : d.options) o.fd = fd;
    if (v->protocol == IPPROTO_TCP && v->tcp_state == TCP_ESTABLISHED) {
        d.rec.flags |= image::kInetRepair;
        if (auto s = dump_tcp_repair(sock->get(), d); !s)
            return std::unexpected(s.error().context(strfmt("fd {}: {}", fd, v->what)));
        d.repair->fd = fd;
    }
    return d;
}

void write_inet(ImageWriter& w, const InetDump& d) {
    using image::RecordType;
    w.add(RecordType::kInetSocket, Payload().add(d.rec));
    for (const auto& o : d.options) w.add(RecordType::kInetOption, Payload().add(o));
    if (!d.repair) return;
    w.add(RecordType::kTcpRepair, Payload().add(*d.repair));
    for (uint32_t q : {1u, 2u}) {
        const std::string& data = q == 1 ? d.recv_queue : d.send_queue;
        for (uint64_t off = 0; off < data.size(); off += image::kMaxTcpQueue) {
            size_t n = std::min<uint64_t>(image::kMaxTcpQueue, data.size() - off);
            w.add(RecordType::kTcpQueue, Payload()
                                             .add(image::TcpQueueRecord{d.rec.fd, q, off})
                                             .add_bytes(data.data() + off, n));
        }
    }
}

Result<UniqueFd> restore_inet(const FdEntry& f, const InetEntry& e) {
    auto s = f.rec.kind == uint32_t(image::FdKind::kTcp) ? restore_tcp(e) : restore_udp(e);
    if (!s) return std::unexpected(s.error().context(strfmt("fd {}", f.rec.fd)));
    return s;
}

}  // namespace crfs::state
