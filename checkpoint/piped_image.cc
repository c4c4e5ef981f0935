#include "checkpoint/piped_image.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/strfmt.h"

namespace crfs {

namespace {

// A read at the head waits for more than this before it replies (a record's
// header the worker wrote on its own is copied into the window first):
// below two pages libfuse copies instead of splicing anyway.
constexpr size_t kSmallPiece = 16 << 10;
constexpr size_t kMostCopiedFirst = 64 << 10;
// At most this much per spliced reply: libfuse splices a reply through its
// own pipe, which it grows to the reply's size plus a page per piece and two
// more; past pipe-max-size (1 MiB; crfsd lacks CAP_SYS_RESOURCE there) the
// grow fails and libfuse copies the reply through memory instead (two
// copies and a 1 MiB malloc: seen, 68 of 84 replies of a 64 MiB image).
constexpr size_t kMostSpliced = (1 << 20) - (8 << 12);

// Per thread: a pipe the bytes of one reply are tee'd into. Empty between
// replies. Its size: the worker's pipe's (1 MiB), so one tee takes all of it.
struct Stage {
    UniqueFd rd, wr;
};

int dev_null() {
    static const int fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    return fd;
}

Stage* stage() {
    thread_local Stage st;
    thread_local bool tried = false;
    if (!tried) {
        tried = true;
        int p[2];
        if (dev_null() >= 0 && ::pipe2(p, O_CLOEXEC) == 0) {
            st.rd.reset(p[0]);
            st.wr.reset(p[1]);
            ::fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
        }
    }
    return st.rd ? &st : nullptr;
}

// Drops `n` bytes from the front of the pipe `fd` without reading them
// (splice to /dev/null releases the page references).
bool drop(int fd, size_t n) {
    while (n) {
        ssize_t r = ::splice(fd, nullptr, dev_null(), nullptr, n, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        n -= size_t(r);
    }
    return true;
}

// Empties the stage; false if it cannot (then it is closed, and the next
// read of this thread copies).
bool clear(Stage& st) {
    int left = 0;
    if (::ioctl(st.rd.get(), FIONREAD, &left) == 0 &&
        (left == 0 || drop(st.rd.get(), size_t(left))))
        return true;
    st.rd.reset();
    st.wr.reset();
    return false;
}

}  // namespace

PipedImage::PipedImage(UniqueFd pipe, pid_t worker, uint64_t size, UniqueFd status,
                       std::shared_ptr<void> hold)
    : worker_(worker),
      size_(size),
      status_(std::move(status)),
      failed_(),
      hold_(std::move(hold)),
      pipe_(std::move(pipe)) {}

PipedImage::~PipedImage() {
    pipe_.reset();  // a worker still writing gets EPIPE and exits
    int st;
    while (worker_ > 0 && ::waitpid(worker_, &st, 0) < 0 && errno == EINTR) {
    }
    hold_.reset();  // only now: the worker let the task go
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

Status PipedImage::fill_to(uint64_t keep_from, uint64_t end) const {
    // Not zeroed: a pass over 4 MiB of fresh memory per handle, for bytes
    // that are always written before they are served.
    if (!window_) window_ = std::make_unique_for_overwrite<char[]>(kWindow);
    // Bytes spliced past the window since it was last filled: a new run.
    if (held_to_ != taken_ && taken_ < end) held_from_ = held_to_ = taken_;
    while (taken_ < end && (size_ == 0 || taken_ < size_)) {
        if (failed_) return std::unexpected(*failed_);
        if (!pipe_) return make_error(EIO, strfmt("image stream broken at byte {}", taken_));
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
            hold_.reset();  // the worker is done with the task
            if (Error e = ended(err); e.code != 0) {
                failed_ = e;
                return std::unexpected(e);
            }
            return {};  // the end, now known
        }
        taken_ += uint64_t(n);
        held_to_ = taken_;
    }
    if (size_ != 0 && taken_ == size_) {
        pipe_.reset();
        hold_.reset();
    }
    return {};
}

namespace {

// The ring's bytes [offset, offset + len), in at most two pieces.
int ring_pieces(char* ring, uint64_t offset, size_t len, iovec (&pieces)[2]) {
    int count = 0;
    for (size_t done = 0; done < len; ++count) {
        size_t at = size_t((offset + done) % PipedImage::kWindow);
        size_t n = std::min(len - done, PipedImage::kWindow - at);
        pieces[count] = {ring + at, n};
        done += n;
    }
    return count;
}

}  // namespace

Result<size_t> PipedImage::serve(uint64_t offset, size_t len, const Reply& reply) const {
    return serve(offset, len, reply, {});
}

Result<size_t> PipedImage::serve(uint64_t offset, size_t len, const Reply& reply,
                                 const PipeReply& pipe_reply) const {
    std::lock_guard lock(mu_);
    if (size_ != 0 && offset >= size_) {
        reply(nullptr, 0);
        return size_t{0};
    }
    len = size_t(std::min<uint64_t>(len, kWindow));
    if (pipe_reply && offset == taken_ && len > 0)
        if (auto r = splice_head(len, pipe_reply)) return *r;
    // Behind the head: only what the window holds (not what went out spliced).
    if (offset < taken_ && (offset < held_lo() || offset >= held_to_))
        return make_error(ESPIPE, strfmt("image is a stream: byte {} was served {} bytes ago "
                                         "and is no longer held; open it again for a new "
                                         "image",
                                         offset, taken_ - offset));
    if (held_to_ != taken_ && offset < taken_)
        len = size_t(std::min<uint64_t>(len, held_to_ - offset));  // up to the spliced bytes
    else if (auto r = fill_to(offset, offset + len); !r)
        return std::unexpected(r.error());
    if (size_ != 0) len = size_t(std::min<uint64_t>(len, size_ > offset ? size_ - offset : 0));
    iovec pieces[2];
    int count = ring_pieces(window_.get(), offset, len, pieces);
    reply(pieces, count);
    return len;
}

std::optional<Result<size_t>> PipedImage::splice_head(size_t len,
                                                      const PipeReply& pipe_reply) const {
    if (no_tee_ || failed_ || !pipe_) return std::nullopt;
    Stage* st = stage();
    if (!st) return std::nullopt;
    if (size_ != 0) len = size_t(std::min<uint64_t>(len, size_ - taken_));
    len = std::min(len, kMostSpliced);
    const uint64_t offset = taken_;
    size_t first = 0;  // copied into the window first
    size_t n = 0;      // then tee'd into the stage
    for (;;) {
        // Blocks until the worker wrote something; 0: it closed the pipe.
        ssize_t t = ::tee(pipe_.get(), st->wr.get(), len - first, 0);
        if (t < 0 && errno == EINTR) continue;
        if (t < 0 && errno == EINVAL) no_tee_ = true;  // not a pipe (a test's file)
        if (t <= 0) break;  // the end or an error: the copy path says which
        n = size_t(t);
        if (n >= kSmallPiece || first + n >= len || first + n > kMostCopiedFirst) break;
        // A small piece (a record's header): into the window, and wait for more.
        if (!clear(*st)) return std::nullopt;
        if (auto r = fill_to(offset, taken_ + n); !r)
            return Result<size_t>(std::unexpected(r.error()));
        first = size_t(taken_ - offset);
        n = 0;
        if (!pipe_) break;  // the end of a known size
    }
    // Nothing to splice (only what the window holds now, or the end): the
    // copy path serves it from the window.
    if (n == 0) return std::nullopt;
    iovec pieces[2];
    int count = ring_pieces(window_.get(), offset, first, pieces);
    size_t took = std::min(pipe_reply(pieces, count, st->rd.get(), n), n);
    clear(*st);  // what the reply left there stays in the worker's pipe
    if (took) {
        if (!drop(pipe_.get(), took)) {
            failed_ = Error{EIO, strfmt("image stream: cannot drop byte {} on from the pipe: {}",
                                        taken_, std::strerror(errno))};
            pipe_.reset();
            hold_.reset();
            return Result<size_t>(std::unexpected(*failed_));
        }
        taken_ += took;
        if (size_ != 0 && taken_ == size_) {
            pipe_.reset();
            hold_.reset();
        }
    }
    return Result<size_t>(first + took);
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
