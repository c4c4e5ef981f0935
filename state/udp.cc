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
    auto s = make_socket(e, SOCK_DGRAM, IPPROTO_UDP);
    if (!s) return std::unexpected(s.error());
    if (e.rec.flags & image::kInetBound)
        if (auto b = bind_to(s->get(), e.rec); !b) return std::unexpected(b.error());
    if (e.rec.flags & image::kInetConnected)
        if (auto c = connect_to(s->get(), e.rec); !c) return std::unexpected(c.error());
    return s;
}

}  // namespace crfs::state
