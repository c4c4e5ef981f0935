#include "checkpoint/piped_image.h"

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>
#include <thread>

#include "checkpoint/image_sink.h"
#include "common/cpu_placement.h"
#include "common/own_children.h"
#include "common/strfmt.h"

namespace crfs {

namespace {

// perf: the windows of images that were closed, kept for the next ones (a
// fresh 4 MiB window was ~1,000 page faults in the daemon per checkpoint,
// on its first reads). A window serves only bytes its own stream wrote into
// it (fill_to before every serve), so what a kept one still holds of an
// earlier image never reaches a reader.
// perf: each window is a mapping of its own, MADV_DONTFORK. A restore
// clones its processes from the daemon (state/tree_restore.cc): a kept
// window was 4 MiB of every clone's copy, its page tables copied at the
// clone and unmapped again by the clone's blob (a 64 x 1 MiB tree: 1,024
// page-table entries, 64 times; docs/performance.md "Session 45").
// MAP_NORESERVE too: its bytes are always written, so there is nothing to
// reserve, and smaps tells a window by it ("nr" beside "dc" in VmFlags:
// tests/fs/small_restore_mount_test.py, which checks that a restore leaves
// no other mapping of the daemon marked).
// CRFS_WINDOW_FORKED=1 in crfsd's environment: copied (the old path).
class WindowPool {
  public:
    using Window = PipedImage::Window;
    // Null if it cannot be mapped.
    Window take() {
        {
            std::lock_guard lock(mu_);
            if (!kept_.empty()) {
                auto w = std::move(kept_.back());
                kept_.pop_back();
                return w;
            }
        }
        // Not zeroed by a pass of ours: bytes are always written before they are served.
        void* p = mmap(nullptr, PipedImage::kWindow, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) return nullptr;
        static const bool forked = getenv("CRFS_WINDOW_FORKED") != nullptr;
        if (!forked) (void)madvise(p, PipedImage::kWindow, MADV_DONTFORK);  // else copied
        return Window(static_cast<char*>(p));
    }
    void give(Window w) {
        std::lock_guard lock(mu_);
        if (w && kept_.size() < kKept) kept_.push_back(std::move(w));
    }

  private:
    static constexpr size_t kKept = 4;  // at most 16 MiB kept
    std::mutex mu_;
    std::vector<Window> kept_;
};

WindowPool& windows() {
    static WindowPool pool;
    return pool;
}

}  // namespace

PipedImage::PipedImage(std::vector<UniqueFd> pipes, pid_t worker, uint64_t size, UniqueFd status,
                       std::shared_ptr<PidLock> hold, bool worker_copies,
                       std::function<void()> reaped)
    : worker_(worker),
      size_(size),
      status_(std::move(status)),
      failed_(),
      hold_(std::move(hold)),
      reaped_(std::move(reaped)),
      pipes_(std::move(pipes)) {
    // The CPUs it was spawned with: kept off one of them at a time (serve).
    keep_worker_off_ = worker_copies && worker_ > 0 &&
                       sched_getaffinity(worker_, sizeof worker_cpus_, &worker_cpus_) == 0;
}

PipedImage::~PipedImage() {
    pipes_.clear();  // a worker still writing gets EPIPE and exits
    int st;
    if (worker_ > 0) {
        own_children::waitpid(worker_, &st, 0);
        if (reaped_) reaped_();
    }
    hold_.reset();  // only now: the worker let the task go
    windows().give(std::move(window_));
}

void PipedImage::let_go() const {
    pipes_.clear();
    if (!hold_ || worker_ <= 0) {
        hold_.reset();
        return;
    }
    // perf: the worker releases the task's userfaultfd after the last byte
    // (the kernel walks every area); the next checkpoint of the task and its
    // `reason` wait for that, the reader does not.
    hold_->releasing();
    auto wait = [w = worker_, h = hold_, reaped = reaped_]() mutable {
        int st;
        own_children::waitpid(w, &st, 0);  // EINTR retried; forgets the pid
        h.reset();
        if (reaped) reaped();
    };
    try {
        std::thread(wait).detach();
    } catch (const std::system_error&) {
        wait();  // no thread: the reader waits
    }
    worker_ = 0;  // reaped there
    hold_.reset();
}

Error PipedImage::ended(int err) const {
    // The worker writes its status before it closes the image pipe, so it is
    // there by now (or never: the worker died).
    std::string text;
    char buf[4096];
    for (ssize_t n; status_ && (n = ::read(status_.get(), buf, sizeof buf)) != 0;) {
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 || text.size() > 65536) break;
        text.append(buf, size_t(n));
    }
    status_.reset();
    size_t nl = text.find('\n');
    int code = -1;
    if (nl != std::string::npos) code = std::atoi(text.substr(0, nl).c_str());
    if (code == 0 && nl != std::string::npos && size_ == 0) {
        size_ = taken_;  // the end of the image
        return Error{0, ""};
    }
    if (code > 0 && code < 4096) return Error{code, text.substr(nl + 1)};
    return Error{EIO, strfmt("image stream from the checkpoint worker ended at byte {}{}{}{}",
                             taken_, size_ ? strfmt(" of {}", size_) : "",
                             err ? ": " : " (worker gone)", err ? std::strerror(err) : "")};
}

void PipedImage::WindowUnmap::operator()(char* p) const {
    munmap(p, kWindow);
}

Status PipedImage::fill_to(uint64_t keep_from, uint64_t end) const {
    if (!window_) window_ = windows().take();
    if (!window_) return errno_error("mmap of the image's 4 MiB window");
    while (taken_ < end && (size_ == 0 || taken_ < size_)) {
        if (failed_) return std::unexpected(*failed_);
        if (pipes_.empty())
            return make_error(EIO, strfmt("image stream broken at byte {}", taken_));
        // Up to the ring's end and `end` (so the window keeps the most it
        // can before it), never over the bytes from `keep_from` on, nor past
        // this stripe.
        size_t at = size_t(taken_ % kWindow);
        ImageSink::Stripe from = ImageSink::stripe_at(taken_, pipes_.size());
        size_t room = std::min<uint64_t>(
            {kWindow - at, end - taken_, keep_from + kWindow - taken_, from.room});
        ssize_t n = ::read(pipes_[from.index].get(), window_.get() + at, room);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int err = n < 0 ? errno : 0;
            let_go();  // the worker is done with the task once it exited
            if (Error e = ended(err); e.code != 0) {
                failed_ = e;
                return std::unexpected(e);
            }
            return {};  // the end, now known
        }
        taken_ += uint64_t(n);
    }
    if (size_ != 0 && taken_ == size_) let_go();
    return {};
}

Result<size_t> PipedImage::serve(uint64_t offset, size_t len, const Reply& reply,
                                 pid_t reader) const {
    static const bool anywhere = getenv("CRFS_SERVE_ANYWHERE") != nullptr;
    const int cpu = reader > 0 && !anywhere ? last_cpu_of(reader) : -1;
    RunOn near_reader(cpu);  // perf: same-CPU wakeups both ways (common/cpu_placement.h)
    std::lock_guard lock(mu_);
    // And a live snapshot's worker on another: its stream is its copies out of
    // the task. Not a plain tree's (the copies are another thread's, and the
    // thread that writes the stream, kept off, only slowed the reader:
    // 64 x 1 MiB, 30 rounds each, 42.9 -> 56.4 ms median after the first byte).
    if (keep_worker_off_ && cpu >= 0 && worker_ > 0 && cpu != worker_off_ &&
        keep_off(worker_, worker_cpus_, cpu))
        worker_off_ = cpu;
    if (size_ != 0 && offset >= size_) {
        reply(nullptr, 0);
        return size_t{0};
    }
    len = size_t(std::min<uint64_t>(len, kWindow));
    uint64_t oldest = taken_ > kWindow ? taken_ - kWindow : 0;
    if (offset < oldest)
        return make_error(ESPIPE, strfmt("image is a stream: byte {} was served {} bytes ago "
                                         "and is no longer held; open it again for a new "
                                         "image",
                                         offset, taken_ - offset));
    if (auto r = fill_to(offset, offset + len); !r) return std::unexpected(r.error());
    if (size_ != 0) len = size_t(std::min<uint64_t>(len, size_ > offset ? size_ - offset : 0));
    // The ring's bytes, in at most two pieces.
    iovec pieces[2];
    int count = 0;
    for (size_t done = 0; done < len; ++count) {
        size_t at = size_t((offset + done) % kWindow);
        size_t n = std::min(len - done, kWindow - at);
        pieces[count] = {window_.get() + at, n};
        done += n;
    }
    reply(pieces, count);
    return len;
}

Result<size_t> PipedImage::read(uint64_t offset, void* buf, size_t len) const {
    char* out = static_cast<char*>(buf);
    return serve(offset, len, [&](const iovec* pieces, int count) {
        for (int i = 0; i < count; ++i) {
            std::memcpy(out, pieces[i].iov_base, pieces[i].iov_len);
            out += pieces[i].iov_len;
        }
    });
}

}  // namespace crfs
