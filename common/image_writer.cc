#include "common/image_writer.h"

#include <sys/utsname.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "common/io.h"
#include "common/xxh3_update.h"

namespace crfs {

using image::RecordHeader;
using image::RecordType;

void MetaBlocks::grow() {
    blocks_.emplace_back(new char[next_]);  // not zeroed: see the class
    at_ = blocks_.back().get();
    room_ = next_;
    next_ = std::min<size_t>(next_ * 2, 1 << 20);
}

char* MetaBlocks::contiguous(size_t n) {
    if (room_ < n) grow();
    return at_;
}

ImageStream::ImageStream(ImageStream&& o) noexcept {
    *this = std::move(o);
}

ImageStream& ImageStream::operator=(ImageStream&& o) noexcept {
    if (this == &o) return *this;
    meta_ = std::move(o.meta_);  // its blocks stay where they are: segments_ still point there
    segments_ = std::move(o.segments_);
    size_ = o.size_;
    hashed_end_ = o.hashed_end_;
    checksum_at_ = std::exchange(o.checksum_at_, nullptr);
    if (xxh_) XXH3_freeState(static_cast<XXH3_state_t*>(xxh_));
    xxh_ = std::exchange(o.xxh_, nullptr);
    hashed_ = o.hashed_;
    sealed_ = o.sealed_;
    return *this;
}

ImageStream::~ImageStream() {
    if (xxh_) XXH3_freeState(static_cast<XXH3_state_t*>(xxh_));
}

size_t ImageStream::copy_out(uint64_t offset, char* out, size_t len) const {
    if (offset >= size_ || len == 0) return 0;
    // The last segment that starts at or before `offset`.
    auto it = std::upper_bound(segments_.begin(), segments_.end(), offset,
                               [](uint64_t off, const Segment& s) { return off < s.offset; });
    --it;  // segments_[0].offset == 0 <= offset, so this is valid
    size_t done = 0;
    for (; it != segments_.end() && done < len; ++it) {
        uint64_t skip = offset + done - it->offset;
        if (skip >= it->len) continue;
        size_t n = std::min<uint64_t>(it->len - skip, len - done);
        std::memcpy(out + done, it->data + skip, n);
        done += n;
    }
    return done;
}

void ImageStream::hash_served(uint64_t offset, const char* data, size_t n) const {
    if (sealed_ || offset > hashed_ || offset + n <= hashed_) return;  // not the next piece
    uint64_t from = hashed_, to = std::min<uint64_t>(offset + n, hashed_end_);
    if (to > from) {
        xxh3_update(xxh_, data + (from - offset), to - from);  // perf: AVX2 if there
        hashed_ = to;
    }
    if (hashed_ == hashed_end_) seal();
}

void ImageStream::seal() const {
    if (sealed_) return;
    // Hash whatever the readers have not: straight from the segments.
    std::vector<char> chunk(1 << 20);
    while (hashed_ < hashed_end_) {
        size_t n = copy_out(hashed_, chunk.data(),
                            std::min<uint64_t>(chunk.size(), hashed_end_ - hashed_));
        xxh3_update(xxh_, chunk.data(), n);
        hashed_ += n;
    }
    uint64_t sum = XXH3_64bits_digest(static_cast<XXH3_state_t*>(xxh_));
    std::memcpy(checksum_at_, &sum, sizeof sum);
    sealed_ = true;
}

size_t ImageStream::read(uint64_t offset, void* buf, size_t len) const {
    if (offset >= size_ || len == 0) return 0;
    char* out = static_cast<char*>(buf);
    uint64_t checksum_at = size_ - sizeof(image::Trailer) + offsetof(image::Trailer, checksum);
    bool sealed;
    {
        std::lock_guard l(mu_);
        if (!sealed_ && offset + len > checksum_at) seal();
        sealed = sealed_;
    }
    size_t n = copy_out(offset, out, len);
    if (!sealed) {
        std::lock_guard l(mu_);
        hash_served(offset, out, n);
    }
    return n;
}

Status ImageStream::write_to(int fd) const {
    std::vector<char> chunk(1 << 20);
    for (uint64_t off = 0; off < size_;) {
        size_t n = read(off, chunk.data(), chunk.size());
        if (auto w = write_full(fd, chunk.data(), n); !w) return w;
        off += n;
    }
    return {};
}

ImageWriter::ImageWriter(const image::Header& header) {
    append_meta({reinterpret_cast<const char*>(&header), sizeof header});
}

void ImageWriter::append_meta(std::string_view bytes) {
    meta_.append(bytes, [&](const char* at, size_t n) {
        Pending* last = pending_.empty() ? nullptr : &pending_.back();
        if (last && !last->external && last->data + last->len == at)
            last->len += n;  // right after it, in its block
        else
            pending_.push_back({false, at, n});
    });
}

void ImageWriter::add(RecordType type, std::string_view payload) {
    add_external(type, payload, nullptr, 0);
}

void ImageWriter::add_external(RecordType type, std::string_view prefix, const void* data,
                               size_t len) {
    RecordHeader rh{static_cast<uint32_t>(type), 0, prefix.size() + len};
    append_meta({reinterpret_cast<const char*>(&rh), sizeof rh});
    append_meta(prefix);
    if (len > 0) pending_.push_back({true, static_cast<const char*>(data), len});
    ++records_;
}

ImageStream ImageWriter::finish() && {
    image::Trailer trailer{records_, 0, {}};
    std::memcpy(trailer.magic, image::kTrailerMagic, sizeof trailer.magic);
    RecordHeader th{static_cast<uint32_t>(RecordType::kTrailer), 0, sizeof trailer};
    append_meta({reinterpret_cast<const char*>(&th), sizeof th});
    // The trailer in one block: its checksum is written there, at the end.
    char* checksum_at = meta_.contiguous(sizeof trailer) + offsetof(image::Trailer, checksum);
    append_meta({reinterpret_cast<const char*>(&trailer), sizeof trailer});

    ImageStream s;
    s.meta_ = std::move(meta_);
    uint64_t off = 0;
    for (const Pending& p : pending_) {
        s.segments_.push_back({off, p.data, p.len});
        off += p.len;
    }
    s.size_ = off;

    // The checksum covers every byte before the trailer's record header; it is
    // computed as the stream is read (see ImageStream).
    s.hashed_end_ = off - sizeof th - sizeof trailer;
    s.checksum_at_ = checksum_at;
    s.xxh_ = XXH3_createState();
    XXH3_64bits_reset(static_cast<XXH3_state_t*>(s.xxh_));
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
