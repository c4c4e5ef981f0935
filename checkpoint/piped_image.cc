#include "checkpoint/piped_image.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/strfmt.h"

namespace crfs {

PipedImage::PipedImage(UniqueFd pipe, pid_t worker, uint64_t size)
    : size_(size), worker_(worker), pipe_(std::move(pipe)) {}

PipedImage::~PipedImage() {
    pipe_.reset();  // a worker still writing gets EPIPE and exits
    int st;
    while (worker_ > 0 && ::waitpid(worker_, &st, 0) < 0 && errno == EINTR) {
    }
}

Status PipedImage::fill_to(uint64_t keep_from, uint64_t end) const {
    if (!window_) window_ = std::make_unique<char[]>(kWindow);
    while (taken_ < end) {
        if (!pipe_)
            return make_error(EIO, strfmt("image stream broken at byte {} of {}", taken_, size_));
        // Up to the ring's end and `end` (so the window keeps the most it
        // can before it), never over the bytes from `keep_from` on.
        size_t at = size_t(taken_ % kWindow);
        size_t room =
            std::min<uint64_t>({kWindow - at, end - taken_, keep_from + kWindow - taken_});
        ssize_t n = ::read(pipe_.get(), window_.get() + at, room);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int err = n < 0 ? errno : 0;
            pipe_.reset();
            return make_error(EIO, strfmt("image stream from the checkpoint worker ended at "
                                          "byte {} of {}{}{}",
                                          taken_, size_, err ? ": " : " (worker gone)",
                                          err ? std::strerror(err) : ""));
        }
        taken_ += uint64_t(n);
    }
    if (taken_ == size_) pipe_.reset();
    return {};
}

Result<size_t> PipedImage::read(uint64_t offset, void* buf, size_t len) const {
    if (offset >= size_) return size_t{0};
    len = size_t(std::min<uint64_t>({len, size_ - offset, kWindow}));
    std::lock_guard lock(mu_);
    uint64_t oldest = taken_ > kWindow ? taken_ - kWindow : 0;
    if (offset < oldest)
        return make_error(ESPIPE, strfmt("image is a stream: byte {} was served {} bytes ago "
                                         "and is no longer held; open it again for a new "
                                         "image",
                                         offset, taken_ - offset));
    if (auto r = fill_to(offset, offset + len); !r) return std::unexpected(r.error());
    // Copy out of the ring, in at most two pieces.
    char* out = static_cast<char*>(buf);
    for (size_t done = 0; done < len;) {
        size_t at = size_t((offset + done) % kWindow);
        size_t n = std::min(len - done, kWindow - at);
        std::memcpy(out + done, window_.get() + at, n);
        done += n;
    }
    return len;
}

}  // namespace crfs
