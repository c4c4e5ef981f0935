// UDP sockets (kind kUdp): unbound, bound, connected.
//   detect  udp_reason: datagrams queued in either direction are a reason
//           (they cannot be read without taking them from the task), and so
//           is an option state no record carries.
//   dump    dump_inet (state/inet.cc): addresses and options; nothing else.
//   restore restore_udp: socket, options, bind, connect.
#include <linux/sockios.h>
#include <sys/ioctl.h>

#include "common/strfmt.h"
#include "state/inet.h"
#include "state/kind.h"

namespace crfs::state {

std::optional<std::string> udp_reason(int sock, const InetView& v) {
    if (auto o = unsaved_option_state(sock)) return v.what + ": " + *o;
    int inq = 0, outq = 0;
    if (ioctl(sock, SIOCINQ, &inq) != 0 || ioctl(sock, SIOCOUTQ, &outq) != 0)
        return v.what + ": its queues cannot be read (" + std::string(strerror(errno)) + ")";
    if (inq > 0 || outq > 0)
        return strfmt(
            "{} with datagrams queued ({} bytes to read, {} to send); queued "
            "datagrams{}",
            v.what, inq, outq, kNotYet);
    return std::nullopt;
}

Result<UniqueFd> restore_udp(const InetEntry& e) {
    const auto& rec = e.rec;
    UniqueFd s(socket(int(rec.family), SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_UDP));
    if (!s) return errno_error("socket");
    if (auto o = apply_options(s.get(), e); !o) return std::unexpected(o.error());
    sockaddr_storage local, peer;
    socklen_t llen = sockaddr_of(rec, false, local), plen = sockaddr_of(rec, true, peer);
    if ((rec.flags & image::kInetBound) &&
        bind(s.get(), reinterpret_cast<sockaddr*>(&local), llen) != 0)
        return errno_error("bind to " + addr_text(local));
    if ((rec.flags & image::kInetConnected) &&
        connect(s.get(), reinterpret_cast<sockaddr*>(&peer), plen) != 0)
        return errno_error("connect to " + addr_text(peer));
    return s;
}

}  // namespace crfs::state
