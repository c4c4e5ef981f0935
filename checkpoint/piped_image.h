// An image the checkpoint worker streams through a pipe (checkpoint/worker.h),
// served by offset without a copy of the whole image in the daemon.
//
// The worker writes the image front to back; this side keeps only a window of
// the last kWindow bytes it took from the pipe. A read inside the window is
// served from it (a re-read, or concurrent reads of one handle arriving out of
// order); a read past it takes bytes from the pipe up to its end, dropping
// what it skips; a read that starts before the window is ESPIPE: the bytes
// are gone, and a new open makes a new image. Every byte served is the
// worker's one image, so every reader of one handle sees the same bytes.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <mutex>

#include "checkpoint/checkpoint.h"
#include "common/unique_fd.h"

namespace crfs {

class PipedImage : public Snapshot {
  public:
    static constexpr size_t kWindow = 4 << 20;

    // `pipe`: the read end; `worker`: the writer, reaped on destruction
    // (closing the pipe first makes it stop with EPIPE); `size`: the image's
    // size, as the worker reported it.
    PipedImage(UniqueFd pipe, pid_t worker, uint64_t size);
    ~PipedImage() override;
    PipedImage(const PipedImage&) = delete;
    PipedImage& operator=(const PipedImage&) = delete;

    uint64_t size() const override { return size_; }
    Result<size_t> read(uint64_t offset, void* buf, size_t len) const override;

  private:
    // Takes bytes from the pipe into the window until `end`, keeping every
    // byte from `keep_from` on (mu_ held).
    Status fill_to(uint64_t keep_from, uint64_t end) const;

    const uint64_t size_;
    pid_t worker_;
    mutable std::mutex mu_;                   // guards everything below
    mutable UniqueFd pipe_;                   // closed at the end of the image or on an error
    mutable std::unique_ptr<char[]> window_;  // ring: stream byte b at window_[b % kWindow]
    mutable uint64_t taken_ = 0;              // stream bytes taken from the pipe so far
};

}  // namespace crfs
