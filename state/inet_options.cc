// Socket options of inet sockets: one table of the options crfs saves. Each
// is read from the task's socket and from a new socket of the same kind made
// here; only those that differ are written (a default left alone stays a
// default, e.g. a buffer size the kernel tunes), except `always` ones. The
// same table bounds what a hostile image may ask setsockopt for.
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "common/strfmt.h"
#include "state/inet.h"

namespace crfs::state {

namespace {

constexpr uint32_t kAll = 0, kTcpOnly = 1, kUdpOnly = 2;
constexpr uint32_t kAnyFamily = 0;
constexpr int kSndbufLock = 1, kRcvbufLock = 2;  // SO_BUF_LOCK bits (SOCK_SNDBUF_LOCK ...)

struct Option {
    int level, name;
    const char* text;
    uint32_t len;    // value bytes (int options: 4)
    uint32_t proto;  // kAll, kTcpOnly, kUdpOnly
    int family;      // kAnyFamily, AF_INET, AF_INET6
    bool always = false;
};

// In the order restore applies them: those that bind() reads come first.
constexpr Option kOptions[] = {
    {IPPROTO_IPV6, IPV6_V6ONLY, "IPV6_V6ONLY", 4, kAll, AF_INET6, true},
    {SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR", 4, kAll, kAnyFamily},
    {SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT", 4, kAll, kAnyFamily},
    {SOL_SOCKET, SO_BINDTODEVICE, "SO_BINDTODEVICE", 16, kAll, kAnyFamily},
    {IPPROTO_IP, IP_FREEBIND, "IP_FREEBIND", 4, kAll, kAnyFamily},
    {IPPROTO_IP, IP_TRANSPARENT, "IP_TRANSPARENT", 4, kAll, kAnyFamily},
    {IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, "IP_BIND_ADDRESS_NO_PORT", 4, kAll, kAnyFamily},
    {SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE", 4, kAll, kAnyFamily},
    {SOL_SOCKET, SO_BROADCAST, "SO_BROADCAST", 4, kAll, kAnyFamily},
    {SOL_SOCKET, SO_OOBINLINE, "SO_OOBINLINE", 4, kAll, kAnyFamily},
    {SOL_SOCKET, SO_DONTROUTE, "SO_DONTROUTE", 4, kAll, kAnyFamily},
    {SOL_SOCKET, SO_PRIORITY, "SO_PRIORITY", 4, kAll, kAnyFamily},
    {SOL_SOCKET, SO_RCVLOWAT, "SO_RCVLOWAT", 4, kAll, kAnyFamily},
    {SOL_SOCKET, SO_MARK, "SO_MARK", 4, kAll, kAnyFamily},
    {SOL_SOCKET, SO_LINGER, "SO_LINGER", sizeof(linger), kAll, kAnyFamily},
    {SOL_SOCKET, SO_RCVTIMEO_OLD, "SO_RCVTIMEO", sizeof(timeval), kAll, kAnyFamily},
    {SOL_SOCKET, SO_SNDTIMEO_OLD, "SO_SNDTIMEO", sizeof(timeval), kAll, kAnyFamily},
    {SOL_SOCKET, SO_TIMESTAMP_OLD, "SO_TIMESTAMP", 4, kAll, kAnyFamily},
    {SOL_SOCKET, SO_TIMESTAMPNS_OLD, "SO_TIMESTAMPNS", 4, kAll, kAnyFamily},
    {SOL_SOCKET, SO_PASSCRED, "SO_PASSCRED", 4, kAll, kAnyFamily},
    // Sizes only when the task set them (SO_BUF_LOCK): the written value is
    // half of what getsockopt shows (the kernel doubles it).
    {SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF", 4, kAll, kAnyFamily},
    {SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF", 4, kAll, kAnyFamily},
    {IPPROTO_IP, IP_TOS, "IP_TOS", 4, kAll, AF_INET},
    {IPPROTO_IP, IP_TTL, "IP_TTL", 4, kAll, AF_INET},
    {IPPROTO_IP, IP_MTU_DISCOVER, "IP_MTU_DISCOVER", 4, kAll, kAnyFamily},
    {IPPROTO_IP, IP_RECVERR, "IP_RECVERR", 4, kAll, AF_INET},
    {IPPROTO_IP, IP_PKTINFO, "IP_PKTINFO", 4, kUdpOnly, AF_INET},
    {IPPROTO_IP, IP_RECVTOS, "IP_RECVTOS", 4, kUdpOnly, AF_INET},
    {IPPROTO_IP, IP_RECVTTL, "IP_RECVTTL", 4, kUdpOnly, AF_INET},
    {IPPROTO_IP, IP_MULTICAST_TTL, "IP_MULTICAST_TTL", 4, kUdpOnly, AF_INET},
    {IPPROTO_IP, IP_MULTICAST_LOOP, "IP_MULTICAST_LOOP", 4, kUdpOnly, AF_INET},
    {IPPROTO_IPV6, IPV6_UNICAST_HOPS, "IPV6_UNICAST_HOPS", 4, kAll, AF_INET6},
    {IPPROTO_IPV6, IPV6_TCLASS, "IPV6_TCLASS", 4, kAll, AF_INET6},
    {IPPROTO_IPV6, IPV6_RECVERR, "IPV6_RECVERR", 4, kAll, AF_INET6},
    {IPPROTO_IPV6, IPV6_MTU_DISCOVER, "IPV6_MTU_DISCOVER", 4, kAll, AF_INET6},
    {IPPROTO_IPV6, IPV6_RECVPKTINFO, "IPV6_RECVPKTINFO", 4, kUdpOnly, AF_INET6},
    {IPPROTO_TCP, TCP_NODELAY, "TCP_NODELAY", 4, kTcpOnly, kAnyFamily},
    {IPPROTO_TCP, TCP_CORK, "TCP_CORK", 4, kTcpOnly, kAnyFamily},
    {IPPROTO_TCP, TCP_KEEPIDLE, "TCP_KEEPIDLE", 4, kTcpOnly, kAnyFamily},
    {IPPROTO_TCP, TCP_KEEPINTVL, "TCP_KEEPINTVL", 4, kTcpOnly, kAnyFamily},
    {IPPROTO_TCP, TCP_KEEPCNT, "TCP_KEEPCNT", 4, kTcpOnly, kAnyFamily},
    {IPPROTO_TCP, TCP_DEFER_ACCEPT, "TCP_DEFER_ACCEPT", 4, kTcpOnly, kAnyFamily},
    {IPPROTO_TCP, TCP_USER_TIMEOUT, "TCP_USER_TIMEOUT", 4, kTcpOnly, kAnyFamily},
    {IPPROTO_TCP, TCP_NOTSENT_LOWAT, "TCP_NOTSENT_LOWAT", 4, kTcpOnly, kAnyFamily},
    {IPPROTO_TCP, TCP_SYNCNT, "TCP_SYNCNT", 4, kTcpOnly, kAnyFamily},
    {IPPROTO_TCP, TCP_LINGER2, "TCP_LINGER2", 4, kTcpOnly, kAnyFamily},
    {IPPROTO_TCP, TCP_WINDOW_CLAMP, "TCP_WINDOW_CLAMP", 4, kTcpOnly, kAnyFamily},
    {IPPROTO_TCP, TCP_FASTOPEN, "TCP_FASTOPEN", 4, kTcpOnly, kAnyFamily},
    {IPPROTO_TCP, TCP_THIN_LINEAR_TIMEOUTS, "TCP_THIN_LINEAR_TIMEOUTS", 4, kTcpOnly, kAnyFamily},
    {IPPROTO_TCP, TCP_CONGESTION, "TCP_CONGESTION", 16, kTcpOnly, kAnyFamily},
    {IPPROTO_UDP, UDP_CORK, "UDP_CORK", 4, kUdpOnly, kAnyFamily},
    {IPPROTO_UDP, UDP_SEGMENT, "UDP_SEGMENT", 4, kUdpOnly, kAnyFamily},
    {IPPROTO_UDP, UDP_GRO, "UDP_GRO", 4, kUdpOnly, kAnyFamily},
};

bool applies(const Option& o, int family, int type) {
    if (o.family != kAnyFamily && o.family != family) return false;
    if (o.proto == kTcpOnly) return type == SOCK_STREAM;
    if (o.proto == kUdpOnly) return type == SOCK_DGRAM;
    return true;
}

const Option* find_option(uint32_t level, uint32_t name) {
    for (const auto& o : kOptions)
        if (uint32_t(o.level) == level && uint32_t(o.name) == name) return &o;
    return nullptr;
}

bool is_buffer(const Option& o) {
    return o.level == SOL_SOCKET && (o.name == SO_SNDBUF || o.name == SO_RCVBUF);
}

// The value as getsockopt gives it, zero-padded to 16 bytes; len 0 when the
// option cannot be read on this socket.
image::InetOptionRecord read_option(int sock, const Option& o) {
    image::InetOptionRecord r{};
    r.level = uint32_t(o.level);
    r.name = uint32_t(o.name);
    socklen_t len = o.len;
    if (getsockopt(sock, o.level, o.name, r.value, &len) != 0) return r;
    r.len = o.name == SO_BINDTODEVICE ? uint32_t(len) : o.len;
    return r;
}

}  // namespace

Result<std::vector<image::InetOptionRecord>> dump_options(int sock, const InetView& v) {
    UniqueFd fresh(socket(v.domain, v.type | SOCK_CLOEXEC, v.protocol));
    if (!fresh) return errno_error("socket (a new one, for the default options)");
    int lock = 0;
    socklen_t len = sizeof lock;
    if (getsockopt(sock, SOL_SOCKET, SO_BUF_LOCK, &lock, &len) != 0)
        return errno_error("getsockopt SO_BUF_LOCK");
    std::vector<image::InetOptionRecord> out;
    for (const auto& o : kOptions) {
        if (!applies(o, v.domain, v.type)) continue;
        auto mine = read_option(sock, o);
        if (is_buffer(o)) {
            int bit = o.name == SO_SNDBUF ? kSndbufLock : kRcvbufLock;
            if (!(lock & bit)) continue;
            int val;
            std::memcpy(&val, mine.value, 4);
            val /= 2;
            std::memcpy(mine.value, &val, 4);
            out.push_back(mine);
            continue;
        }
        auto def = read_option(fresh.get(), o);
        if (mine.len == 0) continue;  // the kernel has no such option for this socket
        if (!o.always && mine.len == def.len && !std::memcmp(mine.value, def.value, 16)) continue;
        out.push_back(mine);
    }
    return out;
}

Status apply_options(int sock, const InetEntry& e) {
    for (const auto& o : e.options) {
        const Option* known = find_option(o.level, o.name);
        const char* text = known ? known->text : "?";
        if (setsockopt(sock, int(o.level), int(o.name), o.value, o.len) != 0)
            return errno_error(strfmt("setsockopt {}", text));
    }
    return {};
}

std::optional<std::string> bad_option(const image::InetOptionRecord& o, uint32_t family,
                                      uint32_t type) {
    const Option* known = find_option(o.level, o.name);
    if (!known || !applies(*known, int(family), int(type)))
        return strfmt("socket option level {} name {}", o.level, o.name);
    if (known->name == SO_BINDTODEVICE ? o.len > 16 : o.len != known->len)
        return strfmt("socket option {} of {} bytes", known->text, o.len);
    return std::nullopt;
}

std::optional<std::string> unsaved_option_state(int sock) {
    // SO_GET_FILTER gives the length of an attached classic BPF filter.
    socklen_t len = 0;
    if (getsockopt(sock, SOL_SOCKET, SO_GET_FILTER, nullptr, &len) == 0 && len > 0)
        return "an attached socket filter (SO_ATTACH_FILTER)" + std::string(" not supported yet");
    return std::nullopt;
}

}  // namespace crfs::state
