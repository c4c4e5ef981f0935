#include "state/sockets.h"

#include "common/io.h"
#include "common/procfs.h"

namespace crfs::state {

std::optional<std::string> SocketTable::find(uint64_t inode) {
    if (!loaded_) load();
    auto it = by_inode_.find(inode);
    if (it == by_inode_.end()) return std::nullopt;
    return it->second;
}

void SocketTable::load() {
    loaded_ = true;
    std::string base = "/proc/" + std::to_string(pid_) + "/net/";
    auto add = [&](const char* file, auto parse) {
        auto text = read_file(base + file);
        if (!text) return;
        for (auto& s : parse(*text)) by_inode_.emplace(s.inode, std::move(s.description));
    };
    add("tcp", [](auto& t) { return parse_net_inet(t, "TCP", true); });
    add("tcp6", [](auto& t) { return parse_net_inet(t, "TCPv6", true); });
    add("udp", [](auto& t) { return parse_net_inet(t, "UDP", false); });
    add("udp6", [](auto& t) { return parse_net_inet(t, "UDPv6", false); });
    add("udplite", [](auto& t) { return parse_net_inet(t, "UDP-Lite", false); });
    add("raw", [](auto& t) { return parse_net_inet(t, "raw IP", false); });
    add("raw6", [](auto& t) { return parse_net_inet(t, "raw IPv6", false); });
    add("unix", [](auto& t) { return parse_net_unix(t); });
    add("netlink", [](auto& t) { return parse_net_simple(t, "netlink", 9); });
    add("packet", [](auto& t) { return parse_net_simple(t, "packet", 8); });
}

}  // namespace crfs::state
