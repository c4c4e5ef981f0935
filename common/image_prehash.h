// The checksum of an image computed as its bytes arrive (a restore slot's
// writes), so that the decode at close need not read the page data again.
// An image's checksum covers every byte before its trailer record, and the
// trailer record (header + Trailer) is the last kTrailerRecordBytes of a
// whole image: the hasher holds the latest kTrailerRecordBytes back and
// hashes everything before them. The decoder (DecodeOptions::hashed) accepts
// the result only for a stream whose trailer starts exactly there.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "crfs/image_format.h"

namespace crfs {

inline constexpr size_t kTrailerRecordBytes = sizeof(image::RecordHeader) + sizeof(image::Trailer);

// XXH3-64 of a stream's first `bytes` bytes.
struct StreamHash {
    uint64_t checksum = 0;
    uint64_t bytes = 0;
};

class ImagePrehash {
  public:
    ImagePrehash();
    ~ImagePrehash();
    ImagePrehash(const ImagePrehash&) = delete;
    ImagePrehash& operator=(const ImagePrehash&) = delete;

    void update(const void* buf, size_t len);
    void reset();
    // The hash of everything but the last kTrailerRecordBytes written;
    // nullopt while fewer bytes than that arrived.
    std::optional<StreamHash> result() const;

  private:
    void* xxh_;  // XXH3_state_t
    uint64_t hashed_ = 0;
    unsigned char tail_[kTrailerRecordBytes];
    size_t tail_len_ = 0;
};

}  // namespace crfs
