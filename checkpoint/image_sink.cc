#include "checkpoint/image_sink.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>

#include "common/huge_pages.h"
#include "common/io.h"
#include "common/xxh3_update.h"

namespace crfs {

namespace {
std::atomic<char*> g_ready_ring{nullptr};  // prefault_ring's, for the next sink
}  // namespace

void ImageSink::prefault_ring() {
    if (g_ready_ring.load()) return;
    char* p = map_huge_aligned(kRingMap);
    if (!p) return;
    // One call where the kernel has it (5.14); else a write per page.
    if (madvise(p, kRingMap, MADV_POPULATE_WRITE) != 0)
        for (size_t off = 0; off < kRingMap; off += image::kPageSize)
            static_cast<volatile char*>(p)[off] = 0;
    if (char* none = nullptr; !g_ready_ring.compare_exchange_strong(none, p)) munmap(p, kRingMap);
}

ImageSink::ImageSink(std::span<const int> fds)
    : fds_(fds.begin(), fds.end()), xxh_(XXH3_createState()) {
    XXH3_64bits_reset(static_cast<XXH3_state_t*>(xxh_));
    // What the pipes hold at most, all told (taken_by_reader); not pipes: unknown.
    uint64_t sum = 0;
    for (int fd : fds_) {
        int n = fcntl(fd, F_GETPIPE_SZ);
        sum = n > 0 && sum != UINT64_MAX ? sum + uint64_t(n) : UINT64_MAX;
    }
    capacity_ = sum;
    // Small records gather here; a piece that does not fit is written as it
    // is (perf: 1 MiB of fresh memory cost every worker ~1 ms of page faults).
    buf_.reserve(kGather);
}

ImageSink::~ImageSink() {
    XXH3_freeState(static_cast<XXH3_state_t*>(xxh_));
    // The pipe may still hold references to these pages: unmapping only
    // drops ours, the pages live on until the reader took them.
    if (ring_mem_) munmap(ring_mem_, kRingMap);
    if (bounce_) munmap(bounce_, kChunk);
}

// Plain writes, each stripe's bytes into its fd.
Status ImageSink::write_out(const char* data, size_t len) {
    while (len) {
        Stripe to = stripe_at(written_, fds_.size());
        size_t n = std::min(len, to.room);
        if (auto r = write_full(fds_[to.index], data, n); !r) return r;
        written_ += n;
        data += n;
        len -= n;
    }
    return {};
}

Status ImageSink::flush() {
    if (buf_.empty()) return {};
    auto r = write_out(buf_.data(), buf_.size());
    buf_.clear();
    return r;
}

// Every byte written up to `upto` has left the pipes (the reader takes
// the stream in order, so what they hold is its last bytes).
bool ImageSink::taken_by_reader(uint64_t upto) const {
    // perf: the pipes hold at most their capacity, so bytes written that long
    // ago are gone without asking: FIONREAD takes the pipe's lock, which the
    // daemon holds while it copies a read out (1.4% of a 16 x 16 MiB tree's
    // samples were spent waiting on it).
    if (capacity_ != UINT64_MAX && written_ >= upto + capacity_) return true;
    uint64_t held = 0;
    for (int fd : fds_) {
        int in_pipe = 0;
        if (ioctl(fd, FIONREAD, &in_pipe) != 0 || in_pipe < 0) return false;
        held += uint64_t(in_pipe);
    }
    return written_ - held >= upto;
}

char* ImageSink::chunk_buffer() {
    auto map = [&](size_t bytes) -> char* {
        void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return p == MAP_FAILED ? nullptr : static_cast<char*>(p);
    };
    lent_ = nullptr;
    if (splice_ && !ring_mem_ && !ring_failed_) {
        // perf: the ring in one mapping on huge-page boundaries, so that a
        // worker's first chunks are two huge-page faults, not 768 page faults
        // (~3 ms on a VM). Pages are still faulted in only where a chunk is used.
        ring_mem_ = g_ready_ring.exchange(nullptr);
        if (!ring_mem_) ring_mem_ = map_huge_aligned(kRingMap);
        ring_failed_ = ring_mem_ == nullptr;
        for (size_t i = 0; ring_mem_ && i < std::size(ring_); ++i)
            ring_[i].mem = ring_mem_ + i * kLentBytes;  // a chunk, then its headers' room
    }
    if (splice_) {
        Lent& l = ring_[next_];
        if (l.mem && (l.spliced_to == 0 || taken_by_reader(l.spliced_to))) {
            next_ = (next_ + 1) % std::size(ring_);
            lent_ = &l;
            l.heads_used = 0;
            return l.mem;
        }
        ++bounced_;
    }
    if (!bounce_) bounce_ = map(kChunk);
    if (!bounce_) {  // no memory for a chunk: a vector, as before
        static thread_local std::vector<char> v;
        v.resize(kChunk);
        return v.data();
    }
    return bounce_;
}

Status ImageSink::splice_out(const char* data, size_t len) {
    if (auto r = splice_bytes(data, len); !r) return r;
    if (splice_) lent_->spliced_to = written_;
    return {};
}

// vmsplice of `len` bytes after what is buffered (plain writes if the fd is no pipe).
Status ImageSink::splice_bytes(const char* data, size_t len) {
    if (auto r = flush(); !r) return r;
    while (len) {
        Stripe to = stripe_at(written_, fds_.size());
        iovec iov{const_cast<char*>(data), std::min(len, to.room)};
        ssize_t n = vmsplice(fds_[to.index], &iov, 1, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EBADF || errno == EINVAL)) {
            splice_ = false;  // not a pipe: plain writes from now on
            return write_out(data, len);
        }
        if (n < 0) return errno_error("write the image (vmsplice)");
        data += n;
        len -= size_t(n);
        written_ += uint64_t(n);
    }
    return {};
}

// Hands iov's pieces to the pipes, in order (vmsplice may take part of them
// and block for room for the rest); fds that are no pipes get plain writes.
Status ImageSink::splice_iov(std::vector<iovec>& iov) {
    for (size_t i = 0; i < iov.size();) {
        // The pieces that fit in this stripe, the last one cut to fit (and
        // made whole again after the call).
        Stripe to = stripe_at(written_, fds_.size());
        size_t end = i, sum = 0;
        while (end < iov.size() && end - i < IOV_MAX && sum + iov[end].iov_len <= to.room)
            sum += iov[end++].iov_len;
        size_t whole = 0;
        bool cut = end < iov.size() && end - i < IOV_MAX && sum < to.room;
        if (cut) {
            whole = iov[end].iov_len;
            iov[end++].iov_len = to.room - sum;
        }
        ssize_t n = vmsplice(fds_[to.index], &iov[i], end - i, 0);
        if (cut) iov[end - 1].iov_len = whole;
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EBADF || errno == EINVAL)) {
            splice_ = false;  // not a pipe: plain writes from now on
            for (; i < iov.size(); ++i)
                if (auto r = write_out(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
                    !r)
                    return r;
            return {};
        }
        if (n < 0) return errno_error("write the image (vmsplice)");
        written_ += uint64_t(n);
        for (size_t left = size_t(n); left;) {
            if (left >= iov[i].iov_len) {
                left -= iov[i].iov_len;
                ++i;
            } else {
                iov[i].iov_base = static_cast<char*>(iov[i].iov_base) + left;
                iov[i].iov_len -= left;
                left = 0;
            }
        }
    }
    return {};
}

Status ImageSink::pages(const std::vector<Pages>& recs) {
    Lent* l = lent_;
    bool together = splice_ && l && l->heads_used + recs.size() * kHead <= kHeads;
    for (size_t i = 0; together && i < recs.size(); ++i)
        together = recs[i].data >= l->mem &&
                   recs[i].data + uint64_t(recs[i].nr_pages) * image::kPageSize <= l->mem + kChunk;
    if (!together) {  // the bounce buffer, or no room for the headers: one by one
        for (const Pages& p : recs) {
            image::PagesRecord pr{p.vaddr, p.nr_pages, 0};
            if (auto r = record(image::RecordType::kPages,
                                {reinterpret_cast<const char*>(&pr), sizeof pr}, p.data,
                                uint64_t(p.nr_pages) * image::kPageSize);
                !r)
                return r;
        }
        return {};
    }
    if (auto r = flush(); !r) return r;
    iov_.clear();
    char* head = l->mem + kChunk + l->heads_used;
    for (const Pages& p : recs) {
        size_t len = uint64_t(p.nr_pages) * image::kPageSize;
        image::RecordHeader rh{uint32_t(image::RecordType::kPages), 0,
                               sizeof(image::PagesRecord) + len};
        image::PagesRecord pr{p.vaddr, p.nr_pages, 0};
        std::memcpy(head, &rh, sizeof rh);
        std::memcpy(head + sizeof rh, &pr, sizeof pr);
        xxh3_update(xxh_, head, kHead);
        xxh3_update(xxh_, p.data, len);
        iov_.push_back({head, kHead});
        iov_.push_back({const_cast<char*>(p.data), len});
        head += kHead;
        bytes_ += kHead + len;
        ++records_;
    }
    l->heads_used += recs.size() * kHead;
    if (auto r = splice_iov(iov_); !r) return r;
    l->spliced_to = written_;
    return {};
}

Status ImageSink::put(const void* data, size_t len) {
    xxh3_update(xxh_, data, len);  // perf: AVX2 where the CPU has it
    bytes_ += len;
    auto* p = static_cast<const char*>(data);
    if (splice_ && lent_ && len >= 4096 && p >= lent_->mem && p + len <= lent_->mem + kChunk)
        return splice_out(p, len);
    if (buf_.size() + len <= buf_.capacity()) {
        buf_.insert(buf_.end(), p, p + len);
        return {};
    }
    if (auto r = flush(); !r) return r;
    return write_out(p, len);
}

Status ImageSink::raw(const void* data, size_t len, uint64_t records) {
    records_ += records;
    return len ? put(data, len) : Status{};
}

Status ImageSink::stable(const void* data, size_t len, uint64_t records) {
    if (!splice_ || len < 4096) return raw(data, len, records);
    records_ += records;
    xxh3_update(xxh_, data, len);
    bytes_ += len;
    return splice_bytes(static_cast<const char*>(data), len);
}

Status ImageSink::record(image::RecordType type, std::string_view prefix, const void* data,
                         size_t len) {
    image::RecordHeader rh{static_cast<uint32_t>(type), 0, prefix.size() + len};
    ++records_;
    if (auto r = put(&rh, sizeof rh); !r) return r;
    if (auto r = put(prefix.data(), prefix.size()); !r) return r;
    return len ? put(data, len) : Status{};
}

Status ImageSink::finish() {
    image::Trailer t{records_, XXH3_64bits_digest(static_cast<XXH3_state_t*>(xxh_)), {}};
    std::memcpy(t.magic, image::kTrailerMagic, sizeof t.magic);
    image::RecordHeader th{static_cast<uint32_t>(image::RecordType::kTrailer), 0, sizeof t};
    buf_.insert(buf_.end(), reinterpret_cast<const char*>(&th),
                reinterpret_cast<const char*>(&th) + sizeof th);
    buf_.insert(buf_.end(), reinterpret_cast<const char*>(&t),
                reinterpret_cast<const char*>(&t) + sizeof t);
    bytes_ += sizeof th + sizeof t;
    return flush();
}

}  // namespace crfs
