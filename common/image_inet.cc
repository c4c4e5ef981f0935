#include "common/image_inet.h"

#include <algorithm>
#include <cstring>

#include "common/strfmt.h"

namespace crfs {

namespace {

using image::RecordType;

// Upper bound on the bytes of one TCP queue in an image (the kernel's own
// tcp_wmem/tcp_rmem maxima are a few MiB).
constexpr uint64_t kMaxQueueBytes = 64ull << 20;

std::unexpected<Error> inconsistent(const Record& r, std::string what) {
    return make_error(EBADMSG, strfmt("record {} ({}) at byte {}: {}", r.index, r.name, r.offset,
                                      std::move(what)));
}

template <class T>
T load(const std::string& p) {
    T v;
    std::memcpy(&v, p.data(), sizeof v);
    return v;
}

InetEntry* entry_of(DecodedImage& img, int32_t fd) {
    auto it = std::find_if(img.inet.begin(), img.inet.end(),
                           [&](const InetEntry& e) { return e.rec.fd == fd; });
    return it == img.inet.end() ? nullptr : &*it;
}

}  // namespace

Status decode_inet(DecodedImage& img, const Record& r) {
    const std::string& p = r.payload;
    switch (r.type) {
        case RecordType::kInetSocket: {
            auto rec = load<image::InetSocketRecord>(p);
            auto f = std::find_if(img.fds.begin(), img.fds.end(),
                                  [&](const FdEntry& e) { return e.rec.fd == rec.fd; });
            if (f == img.fds.end() || f->rec.same_as >= 0 ||
                (f->rec.kind != uint32_t(image::FdKind::kTcp) &&
                 f->rec.kind != uint32_t(image::FdKind::kUdp)))
                return inconsistent(r, strfmt("socket for fd {}, which is no inet socket fd of "
                                              "its own",
                                              rec.fd));
            if (entry_of(img, rec.fd)) return inconsistent(r, strfmt("fd {} twice", rec.fd));
            img.inet.push_back(InetEntry{rec, {}, {}, {}, {}});
            return {};
        }
        case RecordType::kInetOption: {
            auto rec = load<image::InetOptionRecord>(p);
            InetEntry* e = entry_of(img, rec.fd);
            if (!e) return inconsistent(r, strfmt("option for fd {}, no socket before", rec.fd));
            if (e->options.size() >= 64) return inconsistent(r, "more than 64 options");
            e->options.push_back(rec);
            return {};
        }
        case RecordType::kTcpRepair: {
            auto rec = load<image::TcpRepairRecord>(p);
            InetEntry* e = entry_of(img, rec.fd);
            if (!e || !(e->rec.flags & image::kInetRepair) || e->repair)
                return inconsistent(r, strfmt("repair state for fd {}, which has no established "
                                              "connection or has one already",
                                              rec.fd));
            if (rec.send_len > kMaxQueueBytes || rec.recv_len > kMaxQueueBytes ||
                rec.unsent_len > rec.send_len)
                return inconsistent(r, strfmt("fd {}: queue lengths send {} (unsent {}) recv {}",
                                              rec.fd, rec.send_len, rec.unsent_len, rec.recv_len));
            e->repair = rec;
            return {};
        }
        case RecordType::kTcpQueue: {
            auto rec = load<image::TcpQueueRecord>(p);
            InetEntry* e = entry_of(img, rec.fd);
            if (!e || !e->repair || (rec.queue != 1 && rec.queue != 2))
                return inconsistent(r, strfmt("queue {} bytes for fd {}, which has no repair "
                                              "state",
                                              rec.queue, rec.fd));
            std::string& q = rec.queue == 1 ? e->recv_queue : e->send_queue;
            uint64_t want = rec.queue == 1 ? e->repair->recv_len : e->repair->send_len;
            uint64_t n = p.size() - sizeof rec;
            if (rec.offset != q.size() || q.size() + n > want)
                return inconsistent(r, strfmt("fd {} queue {}: {} bytes at offset {}, expected "
                                              "offset {} of {}",
                                              rec.fd, rec.queue, n, rec.offset, q.size(), want));
            q.append(p, sizeof rec);
            return {};
        }
        default:
            return inconsistent(r, "not an inet record");
    }
}

Status check_inet_complete(const DecodedImage& img) {
    for (const auto& f : img.fds) {
        bool inet = f.rec.kind == uint32_t(image::FdKind::kTcp) ||
                    f.rec.kind == uint32_t(image::FdKind::kUdp);
        if (!inet || f.rec.same_as >= 0) continue;
        auto e = std::find_if(img.inet.begin(), img.inet.end(),
                              [&](const InetEntry& i) { return i.rec.fd == f.rec.fd; });
        if (e == img.inet.end())
            return make_error(
                EBADMSG,
                strfmt("incomplete image: socket fd {} has no inet-socket record", f.rec.fd));
        if ((e->rec.flags & image::kInetRepair) &&
            (!e->repair || e->recv_queue.size() != e->repair->recv_len ||
             e->send_queue.size() != e->repair->send_len))
            return make_error(EBADMSG,
                              strfmt("incomplete image: connection of fd {} lacks its repair "
                                     "state or queue bytes",
                                     f.rec.fd));
    }
    return {};
}

}  // namespace crfs
