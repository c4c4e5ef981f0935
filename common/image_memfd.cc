#include "common/image_memfd.h"

#include <algorithm>
#include <cstring>

#include "common/strfmt.h"

namespace crfs {

namespace {

std::unexpected<Error> inconsistent(const Record& r, std::string what) {
    return make_error(EBADMSG, strfmt("record {} ({}) at byte {}: {}", r.index, r.name, r.offset,
                                      std::move(what)));
}

}  // namespace

Status decode_memfd(DecodedImage& img, const Record& r, const std::string& p) {
    if (img.header.version < 4)
        return inconsistent(r, strfmt("memfd record in a version {} image", img.header.version));
    if (r.type == image::RecordType::kMemfd) {
        MemfdEntry e;
        std::memcpy(&e.rec, p.data(), sizeof e.rec);
        if (e.rec.name_len > image::kMaxMemfdName || r.length - sizeof e.rec != e.rec.name_len)
            return inconsistent(
                r, strfmt("name of {} bytes in a record of {}", e.rec.name_len, r.length));
        if (e.rec.size > image::kMaxMemfdBytes)
            return inconsistent(r, strfmt("memfd of {} bytes", e.rec.size));
        for (const auto& o : img.memfds)
            if (o.rec.ino == e.rec.ino) return inconsistent(r, strfmt("memfd {} twice", e.rec.ino));
        e.name = p.substr(sizeof e.rec);
        img.memfds.push_back(std::move(e));
        return {};
    }
    image::MemfdDataRecord d;
    std::memcpy(&d, p.data(), sizeof d);
    auto m = std::find_if(img.memfds.begin(), img.memfds.end(),
                          [&](const MemfdEntry& e) { return e.rec.ino == d.ino; });
    if (m == img.memfds.end())
        return inconsistent(r, strfmt("data for memfd {}, which has no record before it", d.ino));
    uint64_t len = r.length - sizeof d;
    uint64_t from = m->runs.empty() ? 0 : m->runs.back().offset + m->runs.back().len;
    if (len == 0 || d.offset < from || d.offset > m->rec.size || len > m->rec.size - d.offset)
        return inconsistent(r, strfmt("memfd {} data of {} bytes at offset {} (size {}, the "
                                      "data before ends at {})",
                                      d.ino, len, d.offset, m->rec.size, from));
    m->runs.push_back({d.offset, r.offset + sizeof(image::RecordHeader) + sizeof d, len});
    return {};
}

}  // namespace crfs
