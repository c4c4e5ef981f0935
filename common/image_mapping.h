// A read-only shared mapping of an image file (a slot's spool memfd, a
// file): the decoder reads it in place. `populate`: faulted in at once
// (MAP_POPULATE); else only what is touched, and a length past the file's
// end is fine until touched (a streamed spool's page data is a hole).
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <utility>

namespace crfs {

// Nothing mapped (an mmap failure too): data() is null.
class ImageMapping {
  public:
    ImageMapping() = default;
    ImageMapping(int fd, size_t len, bool populate = true) {
        void* p =
            ::mmap(nullptr, len, PROT_READ, MAP_SHARED | (populate ? MAP_POPULATE : 0), fd, 0);
        if (p != MAP_FAILED) data_ = static_cast<const char*>(p), len_ = len;
    }
    ImageMapping(ImageMapping&& o) noexcept
        : data_(std::exchange(o.data_, nullptr)), len_(std::exchange(o.len_, 0)) {}
    ImageMapping& operator=(ImageMapping&& o) noexcept {
        std::swap(data_, o.data_);
        std::swap(len_, o.len_);
        return *this;
    }
    ~ImageMapping() {
        if (data_) ::munmap(const_cast<char*>(data_), len_);
    }
    const char* data() const { return data_; }
    size_t size() const { return len_; }

  private:
    const char* data_ = nullptr;
    size_t len_ = 0;
};

}  // namespace crfs
