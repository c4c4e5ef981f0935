#include "common/image_writer.h"

#include <sys/utsname.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>

#include "common/io.h"

namespace crfs {

using image::RecordHeader;
using image::RecordType;

size_t ImageStream::read(uint64_t offset, void* buf, size_t len) const {
    if (offset >= size_ || len == 0) return 0;
    // First segment that ends after `offset`.
    auto it = std::upper_bound(segments_.begin(), segments_.end(), offset,
                               [](uint64_t off, const Segment& s) { return off < s.offset; });
    --it;  // segments_[0].offset == 0 <= offset, so this is valid
    size_t done = 0;
    char* out = static_cast<char*>(buf);
    for (; it != segments_.end() && done < len; ++it) {
        uint64_t skip = offset + done - it->offset;
        if (skip >= it->len) continue;
        size_t n = std::min<uint64_t>(it->len - skip, len - done);
        std::memcpy(out + done, it->data + skip, n);
        done += n;
    }
    return done;
}

Status ImageStream::write_to(int fd) const {
    for (const auto& s : segments_)
        if (auto w = write_full(fd, s.data, s.len); !w) return w;
    return {};
}

ImageWriter::ImageWriter(const image::Header& header) {
    append_meta({reinterpret_cast<const char*>(&header), sizeof header});
}

void ImageWriter::append_meta(std::string_view bytes) {
    if (bytes.empty()) return;
    if (!pending_.empty() && !pending_.back().external) {
        pending_.back().len += bytes.size();
    } else {
        pending_.push_back({false, meta_.size(), nullptr, bytes.size()});
    }
    meta_.append(bytes);
}

void ImageWriter::add(RecordType type, std::string_view payload) {
    add_external(type, payload, nullptr, 0);
}

void ImageWriter::add_external(RecordType type, std::string_view prefix, const void* data,
                               size_t len) {
    RecordHeader rh{static_cast<uint32_t>(type), 0, prefix.size() + len};
    append_meta({reinterpret_cast<const char*>(&rh), sizeof rh});
    append_meta(prefix);
    if (len > 0) pending_.push_back({true, 0, static_cast<const char*>(data), len});
    ++records_;
}

ImageStream ImageWriter::finish() && {
    image::Trailer trailer{records_, 0, {}};
    std::memcpy(trailer.magic, image::kTrailerMagic, sizeof trailer.magic);
    RecordHeader th{static_cast<uint32_t>(RecordType::kTrailer), 0, sizeof trailer};
    append_meta({reinterpret_cast<const char*>(&th), sizeof th});
    size_t checksum_off = meta_.size() + offsetof(image::Trailer, checksum);
    append_meta({reinterpret_cast<const char*>(&trailer), sizeof trailer});

    // meta_ no longer grows: offsets into it become pointers now.
    ImageStream s;
    s.meta_ = std::move(meta_);
    uint64_t off = 0;
    for (const Pending& p : pending_) {
        const char* data = p.external ? p.data : s.meta_.data() + p.meta_off;
        s.segments_.push_back({off, data, p.len});
        off += p.len;
    }
    s.size_ = off;

    // The checksum covers every byte before the trailer's record header.
    uint64_t hashed_end = off - sizeof th - sizeof trailer;
    XXH3_state_t* st = XXH3_createState();
    XXH3_64bits_reset(st);
    for (const auto& seg : s.segments_) {
        if (seg.offset >= hashed_end) break;
        XXH3_64bits_update(st, seg.data, std::min<uint64_t>(seg.len, hashed_end - seg.offset));
    }
    uint64_t sum = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    std::memcpy(s.meta_.data() + checksum_off, &sum, sizeof sum);
    return s;
}

image::Header make_header(uint32_t flags, uint32_t xsave_size) {
    image::Header h{};
    std::memcpy(h.magic, image::kMagic, sizeof h.magic);
    h.version = image::kFormatVersion;
    h.header_size = sizeof h;
    h.arch = image::kArchX86_64;
    h.page_size = image::kPageSize;
    uint32_t eax = 0, edx = 0;
    // XGETBV(0) = XCR0: which xsave components the OS enabled.
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    h.xsave_features = (uint64_t(edx) << 32) | eax;
    h.xsave_size = xsave_size;
    h.flags = flags;
    struct utsname u {};
    if (uname(&u) == 0)
        std::memcpy(h.kernel_release, u.release,
                    std::min(sizeof h.kernel_release - 1, std::strlen(u.release)));
    return h;
}

}  // namespace crfs
