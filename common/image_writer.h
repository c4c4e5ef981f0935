// Builds a crfs image (docs/image-format.md) as a list of byte segments: the
// small metadata is copied into the writer, bulk data (page buffers) is only
// referenced, so a 1 GiB snapshot is never copied a second time. The finished
// stream is served by offset (FUSE read) or written to an fd.
// perf: the metadata goes into blocks that never move (MetaBlocks), not one
// string that doubles: a 64-process tree's 650 KB of records was copied
// twice over into fresh memory, ~200 pages faulted in (~12 us each on this VM)
// before the image's first byte.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "crfs/image_format.h"

namespace crfs {

// Bytes appended in blocks that stay where they are: 4 KiB, then each twice
// the last, up to 1 MiB. A block is not zeroed, so the pages of its room
// not written are not touched.
class MetaBlocks {
  public:
    // Copies `bytes` in; `fn(data, n)` is called for each piece, in order (a
    // piece does not cross a block).
    template <class Fn>
    void append(std::string_view bytes, Fn&& fn) {
        while (!bytes.empty()) {
            if (room_ == 0) grow();
            size_t n = std::min(room_, bytes.size());
            std::memcpy(at_, bytes.data(), n);
            fn(static_cast<const char*>(at_), n);
            at_ += n;
            room_ -= n;
            bytes.remove_prefix(n);
        }
    }
    // The next `n` bytes appended go into one block (n <= 4 KiB); where they will be.
    char* contiguous(size_t n);

  private:
    void grow();
    std::vector<std::unique_ptr<char[]>> blocks_;
    char* at_ = nullptr;
    size_t room_ = 0;
    size_t next_ = 4096;
};

// A finished image: header, records and trailer, in order.
//
// The trailer checksum is computed lazily: a reader that goes front to back
// (cp, cat, FUSE reads) hashes each piece as it is served, while it is still
// in cache, instead of a separate pass over a possibly huge image before the
// first byte goes out. A read that reaches the checksum bytes before the hash
// caught up finishes the hash first. read() is safe from several threads.
class ImageStream {
  public:
    ImageStream() = default;
    ImageStream(ImageStream&& o) noexcept;
    ImageStream& operator=(ImageStream&& o) noexcept;
    ~ImageStream();
    uint64_t size() const { return size_; }
    // Copies up to `len` bytes at `offset`; 0 at or past the end.
    size_t read(uint64_t offset, void* buf, size_t len) const;
    Status write_to(int fd) const;
    // perf: the bytes [0, end) in order, as pieces of the stream's own memory
    // (no copy, and not hashed: for a writer that checksums what it writes,
    // checkpoint/image_sink.h). Stops at the first piece `fn` fails.
    template <class Fn>
    Status for_each_piece(uint64_t end, Fn&& fn) const {
        for (const Segment& seg : segments_) {
            if (seg.offset >= end) break;
            size_t n = size_t(std::min<uint64_t>(seg.len, end - seg.offset));
            if (auto r = fn(seg.data, n); !r) return r;
        }
        return {};
    }

  private:
    friend class ImageWriter;
    struct Segment {
        uint64_t offset;   // position in the stream
        const char* data;  // into meta_'s blocks or caller-owned memory
        size_t len;
    };
    size_t copy_out(uint64_t offset, char* out, size_t len) const;
    void hash_served(uint64_t offset, const char* data, size_t n) const;  // mu_ held
    void seal() const;                                                    // mu_ held
    MetaBlocks meta_;
    std::vector<Segment> segments_;
    uint64_t size_ = 0;
    uint64_t hashed_end_ = 0;       // bytes covered by the checksum
    char* checksum_at_ = nullptr;   // where in meta_ the checksum goes

    mutable std::mutex mu_;        // guards the fields below and the checksum bytes
    mutable void* xxh_ = nullptr;  // XXH3_state_t while hashing
    mutable uint64_t hashed_ = 0;  // stream bytes hashed so far (a prefix)
    mutable bool sealed_ = false;  // checksum written
};

// Payload builder: fixed structs and trailing bytes appended in order.
class Payload {
  public:
    template <class T>
    Payload& add(const T& v) {
        bytes_.append(reinterpret_cast<const char*>(&v), sizeof v);
        return *this;
    }
    Payload& add_bytes(const void* p, size_t n) {
        bytes_.append(static_cast<const char*>(p), n);
        return *this;
    }
    Payload& add_string(std::string_view s) { return add_bytes(s.data(), s.size()); }
    const std::string& bytes() const { return bytes_; }

  private:
    std::string bytes_;
};

class ImageWriter {
  public:
    explicit ImageWriter(const image::Header& header);

    // A record whose payload is copied.
    void add(image::RecordType type, std::string_view payload);
    void add(image::RecordType type, const Payload& p) { add(type, p.bytes()); }
    // A record of `prefix` (copied) followed by `len` bytes at `data`, which
    // are not copied and must outlive the ImageStream.
    void add_external(image::RecordType type, std::string_view prefix, const void* data,
                      size_t len);

    uint64_t record_count() const { return records_; }

    // Appends the trailer (count and XXH3 checksum of everything before it).
    ImageStream finish() &&;

  private:
    struct Pending {
        bool external;
        const char* data;  // into meta_ when !external
        size_t len;
    };
    void append_meta(std::string_view bytes);
    MetaBlocks meta_;
    std::vector<Pending> pending_;
    uint64_t records_ = 0;
};

// A header for this machine: magic, version, arch, page size, kernel release, XCR0.
image::Header make_header(uint32_t flags, uint32_t xsave_size);

}  // namespace crfs
