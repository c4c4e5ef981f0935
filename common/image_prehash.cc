#include "common/image_prehash.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <new>

#include "common/xxh3_update.h"

namespace crfs {

ImagePrehash::ImagePrehash() : xxh_(XXH3_createState()) {
    if (!xxh_) throw std::bad_alloc();
    reset();
}

ImagePrehash::~ImagePrehash() {
    XXH3_freeState(static_cast<XXH3_state_t*>(xxh_));
}

void ImagePrehash::reset() {
    XXH3_64bits_reset(static_cast<XXH3_state_t*>(xxh_));
    hashed_ = 0;
    tail_len_ = 0;
}

void ImagePrehash::update(const void* buf, size_t len) {
    auto* state = static_cast<XXH3_state_t*>(xxh_);
    const auto* in = static_cast<const unsigned char*>(buf);
    // Of the held-back tail and the new bytes, all but the last
    // kTrailerRecordBytes are hashed now, oldest first.
    size_t total = tail_len_ + len;
    if (total <= kTrailerRecordBytes) {
        std::memcpy(tail_ + tail_len_, in, len);
        tail_len_ = total;
        return;
    }
    size_t out = total - kTrailerRecordBytes;
    size_t from_tail = std::min(out, tail_len_);
    xxh3_update(state, tail_, from_tail);
    xxh3_update(state, in, out - from_tail);
    hashed_ += out;
    // The new tail: what is left of the old one, then the end of `in`.
    size_t keep_old = tail_len_ - from_tail;
    std::memmove(tail_, tail_ + from_tail, keep_old);
    std::memcpy(tail_ + keep_old, in + (out - from_tail), len - (out - from_tail));
    tail_len_ = kTrailerRecordBytes;
}

std::optional<StreamHash> ImagePrehash::result() const {
    if (tail_len_ < kTrailerRecordBytes) return std::nullopt;
    return StreamHash{XXH3_64bits_digest(static_cast<XXH3_state_t*>(xxh_)), hashed_};
}

}  // namespace crfs
