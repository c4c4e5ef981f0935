#include "restorer/check_inet.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>

#include "common/strfmt.h"
#include "state/check.h"
#include "state/inet.h"

namespace crfs {

namespace {

constexpr uint32_t kInetFlags =
    image::kInetBound | image::kInetConnected | image::kInetListening | image::kInetRepair;
constexpr uint32_t kTcpOpts = image::kTcpOptSack | image::kTcpOptTimestamps | image::kTcpOptWscale;
constexpr uint32_t kMaxWscale = 14;  // RFC 7323

using check::bad;

bool all_zero(const uint8_t* p, size_t n) {
    return std::all_of(p, p + n, [](uint8_t b) { return b == 0; });
}

Status check_socket(const FdEntry& f, const InetEntry& e) {
    const auto& r = e.rec;
    bool tcp = f.rec.kind == uint32_t(image::FdKind::kTcp);
    std::string at = strfmt("fd {}", r.fd);
    if (r.family != AF_INET && r.family != AF_INET6)
        return bad(strfmt("{}: socket family {}", at, r.family));
    if (r.type != uint32_t(tcp ? SOCK_STREAM : SOCK_DGRAM))
        return bad(strfmt("{}: socket type {} for a {} socket", at, r.type, tcp ? "TCP" : "UDP"));
    if (r.flags & ~kInetFlags) return bad(strfmt("{}: socket flags 0x{:x}", at, r.flags));
    bool bound = r.flags & image::kInetBound, connected = r.flags & image::kInetConnected;
    bool listening = r.flags & image::kInetListening, repair = r.flags & image::kInetRepair;
    // The states restore knows: TCP unconnected, listening (bound) or
    // established (bound, connected, repair); UDP unbound, bound, connected.
    bool ok =
        tcp ? (repair ? bound && connected && !listening : !connected && (!listening || bound))
            : !listening && !repair;
    if (!ok) return bad(strfmt("{}: socket flags 0x{:x} name no state", at, r.flags));
    if (listening ? r.backlog < 0 || r.backlog > 65535 : r.backlog != 0)
        return bad(strfmt("{}: backlog {}", at, r.backlog));
    if (r.family == AF_INET && (!all_zero(r.local_addr + 4, 12) || !all_zero(r.peer_addr + 4, 12)))
        return bad(at + ": IPv4 address with bytes past the fourth");
    if ((!bound && (r.local_port || !all_zero(r.local_addr, 16))) ||
        (!connected && (r.peer_port || !all_zero(r.peer_addr, 16))))
        return bad(at + ": address of an unbound or unconnected side");
    if ((bound && !r.local_port) || (connected && !r.peer_port)) return bad(at + ": port 0");
    for (const auto& o : e.options)
        if (auto why = state::bad_option(o, r.family, r.type)) return bad(at + ": " + *why);
    if (!e.repair) return {};
    const auto& t = *e.repair;
    if (t.options & ~kTcpOpts) return bad(strfmt("{}: TCP options 0x{:x}", at, t.options));
    if (t.snd_wscale > kMaxWscale || t.rcv_wscale > kMaxWscale)
        return bad(strfmt("{}: window scale {}/{}", at, t.snd_wscale, t.rcv_wscale));
    if (!(t.options & image::kTcpOptWscale) && (t.snd_wscale || t.rcv_wscale))
        return bad(at + ": window scale without the option");
    if (t.mss == 0 || t.mss > 65535) return bad(strfmt("{}: MSS {}", at, t.mss));
    return {};
}

}  // namespace

bool is_socket_kind(uint32_t kind) {
    return kind == uint32_t(image::FdKind::kTcp) || kind == uint32_t(image::FdKind::kUdp);
}

Status check_socket_fd(const FdEntry& f) {
    const auto& r = f.rec;
    if ((r.open_flags & ~uint32_t(O_NONBLOCK)) != O_RDWR)
        return bad(strfmt("fd {}: socket open flags 0x{:x}", r.fd, r.open_flags));
    if (r.fd_flags & ~image::kFdCloexec)
        return bad(strfmt("fd {}: fd flags 0x{:x}", r.fd, r.fd_flags));
    if (!f.path.empty() || r.pos != 0 || !S_ISSOCK(r.mode))
        return bad(strfmt("fd {}: a socket with a path, an offset or another file type", r.fd));
    return {};
}

Status check_inet(const DecodedImage& img) {
    for (const auto& e : img.inet) {
        auto f = std::find_if(img.fds.begin(), img.fds.end(),
                              [&](const FdEntry& x) { return x.rec.fd == e.rec.fd; });
        if (f == img.fds.end()) return bad(strfmt("socket record of no fd {}", e.rec.fd));
        if (auto s = check_socket(*f, e); !s) return s;
    }
    return {};
}

}  // namespace crfs
