// An image the checkpoint worker streams through pipes (checkpoint/worker.h:
// stripe k of the stream in pipe k % n, ImageSink::stripe_at), served by
// offset without a copy of the whole image in the daemon.
//
// The worker writes the image front to back; this side keeps only a window of
// the last kWindow bytes it took from the pipe. A read inside the window is
// served from it (a re-read, or concurrent reads of one handle arriving out of
// order); a read past it takes bytes from the pipe up to its end, dropping
// what it skips; a read that starts before the window is ESPIPE: the bytes
// are gone, and a new open makes a new image. Every byte served is the
// worker's one image, so every reader of one handle sees the same bytes.
//
// The size may be unknown until the end (a live snapshot drops all-zero
// pages as it streams them): the stream then ends where the pipe does, and
// the worker's status pipe says whether that is the image's end ("0\n") or
// why the image could not be finished ("<errno>\n<text>", e.g. EAGAIN when
// the task unmapped memory not yet sent, which fs/ops.cc replies as EBUSY);
// nothing there: the worker died.
#pragma once

#include <sys/types.h>

#include <sched.h>
#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "checkpoint/pid_lock.h"
#include "common/unique_fd.h"

namespace crfs {

class PipedImage : public Snapshot {
  public:
    static constexpr size_t kWindow = 4 << 20;
    // A window: a mapping of its own, MADV_DONTFORK (piped_image.cc WindowPool).
    struct WindowUnmap {
        void operator()(char* p) const;
    };
    using Window = std::unique_ptr<char, WindowUnmap>;

    // `pipes`: the read ends, a pipe per stripe; `worker`: the writer, reaped
    // on destruction (closing the pipes first makes it stop with EPIPE); `size`: the image's
    // size, as the worker reported it, or 0 if not known before the end, which
    // `status` (the read end of the worker's status pipe) then confirms.
    // `hold`: a live snapshot's lock on the task, kept until the stream
    // ended and then until the worker exited (it releases the task's
    // userfaultfd after the last byte: a thread waits for that, so the
    // reader's last read does not).
    // `worker_copies`: the worker's main thread copies the task's memory as
    // it streams (a live snapshot's): it is kept off the reader's CPU (serve).
    // `reaped`: called once the worker was reaped (checkpoint/worker.h: the
    // next spare worker is spawned then, when the checkpoint costs nothing more).
    PipedImage(std::vector<UniqueFd> pipes, pid_t worker, uint64_t size, UniqueFd status = {},
               std::shared_ptr<PidLock> hold = {}, bool worker_copies = false,
               std::function<void()> reaped = {});
    ~PipedImage() override;
    PipedImage(const PipedImage&) = delete;
    PipedImage& operator=(const PipedImage&) = delete;

    // 0 while not known.
    uint64_t size() const override {
        std::lock_guard lock(mu_);
        return size_;
    }
    Result<size_t> read(uint64_t offset, void* buf, size_t len) const override;

    // As read, without the copy: `reply` gets the bytes where the window
    // holds them (at most two pieces of the ring) and must be done with them
    // when it returns; it runs with the lock held, so no other read of the
    // handle moves the window meanwhile. The daemon replies to FUSE from
    // there (one copy fewer per byte served). Returns the bytes given.
    // `reader`: the thread that asked (a FUSE request's), or 0: the read is
    // served on the CPU it last ran on and the worker kept off that CPU
    // (common/cpu_placement.h); CRFS_SERVE_ANYWHERE=1 in crfsd's
    // environment: not (the old path, for benches).
    using Reply = std::function<void(const iovec* pieces, int count)>;
    Result<size_t> serve(uint64_t offset, size_t len, const Reply& reply, pid_t reader = 0) const;

  private:
    // Takes bytes from the pipe into the window until `end`, keeping every
    // byte from `keep_from` on (mu_ held).
    Status fill_to(uint64_t keep_from, uint64_t end) const;

    // The pipe ended before the known end of the image, or (size unknown) at
    // all: the worker's word on why, as the error (mu_ held).
    Error ended(int err) const;

    // The stream ended: `hold_` goes once the worker exited (mu_ held).
    void let_go() const;

    mutable std::mutex mu_;  // guards everything below
    mutable pid_t worker_;   // 0 once reaped
    mutable uint64_t size_;  // 0: not known yet
    mutable UniqueFd status_;
    mutable std::optional<Error> failed_;  // why the stream ended early
    mutable std::shared_ptr<PidLock> hold_;
    std::function<void()> reaped_;
    mutable std::vector<UniqueFd> pipes_;     // closed at the end of the image or on an error
    mutable Window window_;                   // ring: stream byte b at window_[b % kWindow]
    mutable uint64_t taken_ = 0;              // stream bytes taken from the pipe so far
    bool keep_worker_off_ = false;            // worker_copies, and its CPUs known
    cpu_set_t worker_cpus_;                   // the worker's CPUs as spawned
    mutable int worker_off_ = -1;             // the CPU the worker is kept off (-1: none)
};

}  // namespace crfs
