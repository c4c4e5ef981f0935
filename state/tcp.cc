// TCP sockets (kind kTcp): unconnected, listening and established.
//   detect  tcp_reason: a state other than CLOSE, LISTEN or ESTABLISHED is a
//           reason; an established connection needs TCP repair (the kernel's
//           CAP_NET_ADMIN check, asked with an invalid TCP_REPAIR value that
//           changes nothing) in the daemon's network namespace.
//   dump    dump_tcp_repair: with the connection under the network lock
//           (state/netlock.h), TCP_REPAIR on, the sequence numbers, queues,
//           negotiated options and window; repair stays on (the hand-over,
//           docs/network.md).
//   restore restore_tcp (daemon, as the writer), tcp_go_live (stage 1).
// Connections a listening socket completed but the task did not accept yet
// are not saved: their clients see a reset when the old task dies (a
// documented loss, docs/network.md).
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <tuple>

#include "common/io.h"
#include "common/strfmt.h"
#include "state/inet.h"
#include "state/kind.h"
#include "state/netlock.h"

namespace crfs::state {

namespace {

constexpr int kRepairOn = 1, kRepairOff = 0;
constexpr int kRepairProbe = 42;                 // no TCP_REPAIR value: EPERM before EINVAL
constexpr int kRepairOffNoProbe = -1;            // TCP_REPAIR_OFF_NO_WP
constexpr int kSndbufLock = 1, kRcvbufLock = 2;  // SO_BUF_LOCK bits (SOCK_SNDBUF_LOCK ...)

const char* tcp_state_text(int st) {
    static const char* const names[] = {
        "?",     "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",   "TIME_WAIT",
        "CLOSE", "CLOSE_WAIT",  "LAST_ACK", "LISTEN",   "CLOSING",   "NEW_SYN_RECV"};
    return st >= 0 && st < int(std::size(names)) ? names[st] : "?";
}

Status set_int(int sock, int level, int name, int v, const char* what) {
    if (setsockopt(sock, level, name, &v, sizeof v) != 0) return errno_error(what);
    return {};
}

Result<uint32_t> get_u32(int sock, int level, int name, const char* what) {
    uint32_t v = 0;
    socklen_t len = sizeof v;
    if (getsockopt(sock, level, name, &v, &len) != 0) return errno_error(what);
    return v;
}

Result<std::string> peek_queue(int sock, int queue, uint32_t len, const char* what) {
    if (auto s = set_int(sock, IPPROTO_TCP, TCP_REPAIR_QUEUE, queue, "TCP_REPAIR_QUEUE"); !s)
        return std::unexpected(s.error());
    std::string out(len, '\0');
    if (len == 0) return out;
    ssize_t n = recv(sock, out.data(), len, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0) return errno_error(strfmt("reading the {} queue", what));
    if (uint32_t(n) != len)
        return make_error(EIO, strfmt("{} queue: read {} of {} bytes", what, n, len));
    return out;
}

Status send_all(int sock, const char* data, size_t len, const char* what) {
    size_t done = 0;
    while (done < len) {
        ssize_t n = send(sock, data + done, len - done, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0)
            return errno_error(strfmt("restoring the {} queue ({} of {} bytes)", what, done, len));
        done += size_t(n);
    }
    return {};
}

// A socket in state CLOSE that had a connection differs from a new one, which
// is all restore could make of it: a connection ended by TIME_WAIT (the kernel
// moves the 4-tuple off the socket), by a reset or by an abort. (A connect
// that failed is not seen here: the kernel disconnects the socket, which
// resets it, counters included; port_held sees it.) Its reads return 0 or its error is pending
// (poll: POLLIN, POLLRDHUP, POLLERR), or it has sent or received segments (TCP_INFO's
// tcpi_segs_out/in; glibc's struct stops before them).
bool had_connection(int sock) {
    struct {
        tcp_info base;
        uint64_t pacing_rate, max_pacing_rate, bytes_acked, bytes_received;
        uint32_t segs_out, segs_in;
    } ti{};
    socklen_t len = sizeof ti;
    if (getsockopt(sock, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
        len >= offsetof(decltype(ti), segs_in) + sizeof ti.segs_in && (ti.segs_out || ti.segs_in))
        return true;
    pollfd p{sock, POLLIN | POLLRDHUP, 0};
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLIN | POLLRDHUP | POLLERR));
}

// A socket whose connect failed: the kernel disconnected it and gave its
// port back, but getsockname still shows the port, so it would be restored
// bound to it. Asked by binding a new socket to the same address and port
// (no SO_REUSEADDR/PORT on it): it succeeds only if no socket holds them. Only where the task's
// namespace is this thread's (a new socket is made here); elsewhere it is taken as held.
bool port_held(const InetView& v) {
    struct stat a {
    }, b{};
    if (stat(strfmt("/proc/{}/ns/net", v.pid).c_str(), &a) != 0 ||
        stat("/proc/thread-self/ns/net", &b) != 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino)
        return true;
    UniqueFd t(socket(v.domain, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!t) return true;
    socklen_t len = v.domain == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    // Held unless the bind succeeds (EACCES for a port below 1024 says nothing).
    return bind(t.get(), reinterpret_cast<const sockaddr*>(&v.local), len) != 0;
}

std::optional<std::string> established_reason(int sock, const InetView& v) {
    struct stat st {};
    // The lock is made in the task's namespace (/proc/<pid>/ns/net).
    if (fstat(sock, &st) != 0 || !in_task_netns(v.pid, uint64_t(st.st_ino), v.domain == AF_INET6))
        return v.what + " (established) in another network namespace than its task's" +
               std::string(kNotYet);
    // The kernel's own check (tcp_can_repair_sock), made with our credentials:
    // an invalid value fails with EPERM before EINVAL, and changes nothing.
    int probe = kRepairProbe;
    if (setsockopt(sock, IPPROTO_TCP, TCP_REPAIR, &probe, sizeof probe) != 0 && errno == EPERM)
        return v.what +
               " (established): saving a connection needs TCP repair, which the kernel "
               "allows only with CAP_NET_ADMIN in the socket's network namespace";
    return std::nullopt;
}

// A connection moved to another host is bound and connected before that host
// owns its address (the address moves after the restore: docs/network.md,
// "Migration"): IP_TRANSPARENT (IPV6_TRANSPARENT), for the bind and the
// connect (its route lookup from a source that is not local) only, then the
// image's value again. The kernel allows it with CAP_NET_ADMIN, which the
// repair needs already.
Status bind_connect_freely(int sock, const InetEntry& e, const std::string& conn) {
    bool v6 = e.rec.family == AF_INET6;
    int level = v6 ? IPPROTO_IPV6 : IPPROTO_IP, name = v6 ? IPV6_TRANSPARENT : IP_TRANSPARENT;
    int was = 0;
    socklen_t len = sizeof was;
    if (getsockopt(sock, level, name, &was, &len) != 0) return errno_error("IP_TRANSPARENT");
    if (auto s = set_int(sock, level, name, 1, "IP_TRANSPARENT"); !s) return s;
    if (auto b = bind_to(sock, e.rec); !b) return b;
    if (auto c = connect_to(sock, e.rec); !c)
        return std::unexpected(c.error().context("repair of " + conn));
    return set_int(sock, level, name, was, "IP_TRANSPARENT");
}

// The queues are written in repair mode, where nothing drains them: each
// buffer must hold its whole queue at once, and a socket made now has the
// default sizes while the task's grew with the kernel's tuning (a server
// writing a large file holds megabytes). The sizes are forced for the queues
// (SO_SNDBUFFORCE/SO_RCVBUFFORCE, CAP_NET_ADMIN, which the repair needs
// already; CRIU restores them the same way), and afterwards the image's own
// settings come back: its sizes where the task set them, and otherwise no
// lock, so that the kernel goes on tuning from the forced size.
constexpr int kBufSlack = 128 << 10;  // per-skb overhead of a queue's bytes, and more

Status room_for_queues(int sock, const InetEntry& e) {
    for (auto [name, force, len] : {std::tuple{SO_SNDBUF, SO_SNDBUFFORCE, e.send_queue.size()},
                                    std::tuple{SO_RCVBUF, SO_RCVBUFFORCE, e.recv_queue.size()}}) {
        if (len == 0) continue;
        auto cur = get_u32(sock, SOL_SOCKET, name, "buffer size");
        if (!cur) return std::unexpected(cur.error());
        int need = int(std::min<size_t>(len * 2 + kBufSlack, INT32_MAX / 4));
        if (*cur < uint32_t(need) * 2)
            if (auto s = set_int(sock, SOL_SOCKET, force, need, "a buffer size for the queues"); !s)
                return s;
    }
    return {};
}

Status image_buffer_sizes(int sock, const InetEntry& e) {
    if (e.send_queue.empty() && e.recv_queue.empty()) return {};
    int lock = 0;
    for (const auto& o : e.options)
        if (o.level == SOL_SOCKET && (o.name == SO_SNDBUF || o.name == SO_RCVBUF))
            lock |= o.name == SO_SNDBUF ? kSndbufLock : kRcvbufLock;
    if (auto s = set_int(sock, SOL_SOCKET, SO_BUF_LOCK, lock, "SO_BUF_LOCK"); !s) return s;
    for (const auto& o : e.options)
        if (o.level == SOL_SOCKET && (o.name == SO_SNDBUF || o.name == SO_RCVBUF)) {
            int v = 0;
            std::memcpy(&v, o.value, sizeof v);
            if (auto s = set_int(sock, SOL_SOCKET, int(o.name), v, "a buffer size"); !s) return s;
        }
    return {};
}

// The slot's `tcp` file says close: the repaired connection is aborted the way
// the kernel aborts one, before the task runs. Out of repair mode (no window
// probe), connect(AF_UNSPEC) is tcp_disconnect: a reset to the peer (which
// the network lock drops while it holds: the peer then gets one from the
// kernel at its next segment, the 4-tuple having no socket any more) and
// ECONNRESET for the task's next read or write; shutdown marks both
// directions done, so that reads after it return 0 and writes fail with
// EPIPE, as after a reset from the peer.
Status abort_connection(int sock, const std::string& conn) {
    if (auto s = set_int(sock, IPPROTO_TCP, TCP_REPAIR, kRepairOffNoProbe, "TCP_REPAIR off"); !s)
        return std::unexpected(s.error().context("connection " + conn));
    sockaddr unspec{};
    unspec.sa_family = AF_UNSPEC;
    if (connect(sock, &unspec, sizeof unspec) != 0)
        return errno_error("closing the connection " + conn + " (connect AF_UNSPEC)");
    if (shutdown(sock, SHUT_RDWR) != 0 && errno != ENOTCONN)
        return errno_error("closing the connection " + conn + " (shutdown)");
    return {};
}

}  // namespace

std::optional<std::string> tcp_reason(int sock, const InetView& v) {
    if (auto o = unsaved_option_state(sock)) return v.what + ": " + *o;
    switch (v.tcp_state) {
        case TCP_CLOSE:
            if (v.connected) break;
            if (had_connection(sock))
                return v.what + " in state CLOSE after its connection ended (or was reset)" +
                       std::string(kNotYet);
            if (v.bound && !port_held(v))
                return v.what + " after a failed connect (it shows a port it no longer holds)" +
                       std::string(kNotYet);
            return std::nullopt;  // new, or bound and never connected
        case TCP_LISTEN:
            return std::nullopt;
        case TCP_ESTABLISHED:
            return established_reason(sock, v);
        default:
            break;
    }
    return v.what + " in state " + tcp_state_text(v.tcp_state) + std::string(kNotYet);
}

Status dump_tcp_repair(int sock, InetDump& d) {
    if (auto s = netlock_covers(sock, d.rec); !s) return s;
    if (auto s = set_int(sock, IPPROTO_TCP, TCP_REPAIR, kRepairOn, "TCP_REPAIR on"); !s) return s;
    // On any failure below the task gets its connection back as it was.
    struct Undo {
        int sock;
        bool armed = true;
        ~Undo() {
            if (!armed) return;
            int q = TCP_NO_QUEUE, off = kRepairOff;
            setsockopt(sock, IPPROTO_TCP, TCP_REPAIR_QUEUE, &q, sizeof q);
            setsockopt(sock, IPPROTO_TCP, TCP_REPAIR, &off, sizeof off);
        }
    } undo{sock};
    image::TcpRepairRecord r{};
    int inq = 0, outq = 0, unsent = 0;
    if (ioctl(sock, SIOCINQ, &inq) != 0 || ioctl(sock, SIOCOUTQ, &outq) != 0 ||
        ioctl(sock, SIOCOUTQNSD, &unsent) != 0)
        return errno_error("queue lengths (SIOCINQ/SIOCOUTQ/SIOCOUTQNSD)");
    r.recv_len = uint32_t(inq);
    r.send_len = uint32_t(outq);
    r.unsent_len = uint32_t(unsent);
    auto recvq = peek_queue(sock, TCP_RECV_QUEUE, r.recv_len, "receive");
    if (!recvq) return std::unexpected(recvq.error());
    auto rseq = get_u32(sock, IPPROTO_TCP, TCP_QUEUE_SEQ, "TCP_QUEUE_SEQ of the receive queue");
    if (!rseq) return std::unexpected(rseq.error());
    auto sendq = peek_queue(sock, TCP_SEND_QUEUE, r.send_len, "send");
    if (!sendq) return std::unexpected(sendq.error());
    auto sseq = get_u32(sock, IPPROTO_TCP, TCP_QUEUE_SEQ, "TCP_QUEUE_SEQ of the send queue");
    if (!sseq) return std::unexpected(sseq.error());
    if (auto s = set_int(sock, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_NO_QUEUE, "TCP_REPAIR_QUEUE"); !s)
        return s;
    r.rcv_seq = *rseq;
    r.snd_seq = *sseq;

    tcp_info ti{};
    socklen_t len = sizeof ti;
    if (getsockopt(sock, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) return errno_error("TCP_INFO");
    if (ti.tcpi_options & TCPI_OPT_SACK) r.options |= image::kTcpOptSack;
    if (ti.tcpi_options & TCPI_OPT_TIMESTAMPS) r.options |= image::kTcpOptTimestamps;
    if (ti.tcpi_options & TCPI_OPT_WSCALE) {
        r.options |= image::kTcpOptWscale;
        r.snd_wscale = ti.tcpi_snd_wscale;
        r.rcv_wscale = ti.tcpi_rcv_wscale;
    }
    auto mss = get_u32(sock, IPPROTO_TCP, TCP_MAXSEG, "TCP_MAXSEG");
    if (!mss) return std::unexpected(mss.error());
    r.mss = *mss;
    if (r.options & image::kTcpOptTimestamps) {
        auto ts = get_u32(sock, IPPROTO_TCP, TCP_TIMESTAMP, "TCP_TIMESTAMP");
        if (!ts) return std::unexpected(ts.error());
        r.timestamp = *ts;
    }
    tcp_repair_window w{};
    len = sizeof w;
    if (getsockopt(sock, IPPROTO_TCP, TCP_REPAIR_WINDOW, &w, &len) != 0)
        return errno_error("TCP_REPAIR_WINDOW");
    r.snd_wl1 = w.snd_wl1;
    r.snd_wnd = w.snd_wnd;
    r.max_window = w.max_window;
    r.rcv_wnd = w.rcv_wnd;
    r.rcv_wup = w.rcv_wup;
    d.repair = r;
    d.recv_queue = std::move(*recvq);
    d.send_queue = std::move(*sendq);
    undo.armed = false;  // the image owns the connection now
    return {};
}

Result<UniqueFd> restore_tcp(const InetEntry& e) {
    const auto& rec = e.rec;
    auto made = make_socket(e, SOCK_STREAM, IPPROTO_TCP);
    if (!made) return std::unexpected(made.error());
    UniqueFd s = std::move(*made);
    if (!e.repair) {
        if (rec.flags & image::kInetBound)
            if (auto b = bind_to(s.get(), rec); !b) return std::unexpected(b.error());
        if ((rec.flags & image::kInetListening) && listen(s.get(), rec.backlog) != 0)
            return errno_error("listen");
        return s;
    }
    sockaddr_storage local, peer;
    sockaddr_of(rec, false, local);
    sockaddr_of(rec, true, peer);
    const auto& r = *e.repair;
    std::string conn = addr_text(local) + " to " + addr_text(peer);
    if (setsockopt(s.get(), IPPROTO_TCP, TCP_REPAIR, &kRepairOn, sizeof kRepairOn) != 0)
        return errno_error("TCP repair of the connection " + conn +
                           " (restoring an established connection needs CAP_NET_ADMIN)");
    auto step = [&](Status st) -> Status {
        if (!st) return std::unexpected(st.error().context("connection " + conn));
        return {};
    };
    Status st = step(set_int(s.get(), IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE, "queue"));
    if (st)
        st = step(set_int(s.get(), IPPROTO_TCP, TCP_QUEUE_SEQ, int(r.snd_seq - r.send_len),
                          "TCP_QUEUE_SEQ of the send queue"));
    if (st) st = step(set_int(s.get(), IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE, "queue"));
    if (st)
        st = step(set_int(s.get(), IPPROTO_TCP, TCP_QUEUE_SEQ, int(r.rcv_seq - r.recv_len),
                          "TCP_QUEUE_SEQ of the receive queue"));
    if (!st) return std::unexpected(st.error());
    if (auto b = bind_connect_freely(s.get(), e, conn); !b) return std::unexpected(b.error());
    tcp_repair_opt opts[4];
    unsigned n = 0;
    opts[n++] = {TCPOPT_MAXSEG, r.mss};
    if (r.options & image::kTcpOptWscale)
        opts[n++] = {TCPOPT_WINDOW, r.snd_wscale | (r.rcv_wscale << 16)};
    if (r.options & image::kTcpOptSack) opts[n++] = {TCPOPT_SACK_PERMITTED, 0};
    if (r.options & image::kTcpOptTimestamps) opts[n++] = {TCPOPT_TIMESTAMP, 0};
    if (setsockopt(s.get(), IPPROTO_TCP, TCP_REPAIR_OPTIONS, opts, socklen_t(n * sizeof opts[0])))
        return errno_error("TCP_REPAIR_OPTIONS of " + conn);
    if ((r.options & image::kTcpOptTimestamps) &&
        setsockopt(s.get(), IPPROTO_TCP, TCP_TIMESTAMP, &r.timestamp, sizeof r.timestamp) != 0)
        return errno_error("TCP_TIMESTAMP of " + conn);
    st = step(room_for_queues(s.get(), e));
    if (st) st = step(set_int(s.get(), IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE, "queue"));
    if (st) st = step(send_all(s.get(), e.recv_queue.data(), e.recv_queue.size(), "receive"));
    if (st) st = step(set_int(s.get(), IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE, "queue"));
    size_t sent = r.send_len - r.unsent_len;  // sent, not acknowledged: restored in repair
    if (st) st = step(send_all(s.get(), e.send_queue.data(), sent, "send"));
    if (st) st = step(set_int(s.get(), IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_NO_QUEUE, "queue"));
    if (!st) return std::unexpected(st.error());
    // The window after the queues: the kernel checks it against rcv_nxt, which
    // the receive queue's bytes advance (as CRIU's libsoccr orders it).
    tcp_repair_window w{r.snd_wl1, r.snd_wnd, r.max_window, r.rcv_wnd, r.rcv_wup};
    if (setsockopt(s.get(), IPPROTO_TCP, TCP_REPAIR_WINDOW, &w, sizeof w) != 0)
        return errno_error("TCP_REPAIR_WINDOW of " + conn);
    // Never sent: queued as any write is (the network lock keeps it from the
    // wire until the task runs), then repair again until stage 1 takes over.
    if (st && r.unsent_len) {
        st = step(set_int(s.get(), IPPROTO_TCP, TCP_REPAIR, kRepairOff, "TCP_REPAIR off"));
        if (st) st = step(send_all(s.get(), e.send_queue.data() + sent, r.unsent_len, "send"));
        if (st) st = step(set_int(s.get(), IPPROTO_TCP, TCP_REPAIR, kRepairOn, "TCP_REPAIR on"));
    }
    if (st) st = step(image_buffer_sizes(s.get(), e));
    if (!st) return std::unexpected(st.error());
    if (e.close)
        if (auto a = abort_connection(s.get(), conn); !a) return std::unexpected(a.error());
    return s;
}

void tcp_end_repair(pid_t pid, int fd) {
    if (auto s = grab_fd(pid, fd)) tcp_go_live(s->get());
}

int tcp_go_live(int sock) {
    int off = kRepairOff;
    return setsockopt(sock, IPPROTO_TCP, TCP_REPAIR, &off, sizeof off) == 0 ? 0 : errno;
}

}  // namespace crfs::state
