// An inet socket of an image as JSON: addresses as text, the options by
// number, the repair state of an established connection and its queue sizes.
#include <arpa/inet.h>

#include "tools/image_json.h"

namespace crfs::tool {

namespace {

std::string ip(uint32_t family, const uint8_t* a) {
    char buf[INET6_ADDRSTRLEN] = "?";
    inet_ntop(int(family), a, buf, sizeof buf);
    return buf;
}

}  // namespace

Json inet_json(const InetEntry& e) {
    const auto& r = e.rec;
    Json j = {{"family", r.family == AF_INET6 ? "inet6" : "inet"},
              {"type", r.type},
              {"bound", bool(r.flags & image::kInetBound)},
              {"connected", bool(r.flags & image::kInetConnected)},
              {"listening", bool(r.flags & image::kInetListening)},
              {"backlog", r.backlog}};
    if (r.flags & image::kInetBound)
        j["local"] = {{"addr", ip(r.family, r.local_addr)}, {"port", r.local_port}};
    if (r.flags & image::kInetConnected)
        j["peer"] = {{"addr", ip(r.family, r.peer_addr)}, {"port", r.peer_port}};
    Json opts = Json::array();
    for (const auto& o : e.options)
        opts.push_back({{"level", o.level}, {"name", o.name}, {"len", o.len}});
    j["options"] = std::move(opts);
    if (e.repair) {
        const auto& t = *e.repair;
        j["tcp"] = {{"snd_seq", t.snd_seq},
                    {"rcv_seq", t.rcv_seq},
                    {"mss", t.mss},
                    {"options", t.options},
                    {"snd_wscale", t.snd_wscale},
                    {"rcv_wscale", t.rcv_wscale},
                    {"send_bytes", t.send_len},
                    {"unsent_bytes", t.unsent_len},
                    {"recv_bytes", t.recv_len}};
    }
    return j;
}

}  // namespace crfs::tool
