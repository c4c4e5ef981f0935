// Writes an image front to back into an fd, hashing as it goes, and ends it
// with the trailer (docs/image-format.md).
//
// Page data (perf, docs/performance.md "Dump through the mount"): the live
// stream reads each chunk of the task's memory into a buffer the sink lends
// (chunk_buffer) and, where the fd is a pipe, the sink hands those pages to
// the pipe with vmsplice instead of copying them into it: the daemon's read
// of the pipe is then the only copy between the task and its window. The
// pipe holds references to the buffer's pages, not a copy, so a buffer is
// lent again only once the reader has taken every byte spliced from it
// (FIONREAD: bytes still in the pipe); otherwise the chunk goes through a
// bounce buffer and a plain write.
//
// Stripes (perf, docs/performance.md "Session 38"): the sink may write into
// several pipes, the stream's bytes in kStripe-byte stripes, stripe k into
// pipe k % n, so the stream has n pipes' worth of room between the worker and
// the daemon (a pipe holds at most 1 MiB without CAP_SYS_RESOURCE). With one
// pipe, as big as a FUSE read, the worker and the daemon went in lock step:
// each waited for the other about once per MiB (PipedImage reads them back).
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "crfs/image_format.h"

namespace crfs {

class ImageSink {
  public:
    static constexpr size_t kChunk = 1 << 20;    // the size of chunk_buffer()
    static constexpr size_t kGather = 64 << 10;  // small records gather up to this
    static constexpr size_t kStripe = 1 << 20;   // bytes per fd in turn, with several fds
    explicit ImageSink(int fd) : ImageSink(std::span<const int>(&fd, 1)) {}
    // `fds`: stripe k of the stream goes to fds[k % size] (one fd: all of it).
    explicit ImageSink(std::span<const int> fds);
    // Where byte `at` of a stream striped over `n` fds goes (the writer's
    // and the reader's one rule): fds[index], with `room` bytes from `at`
    // on going there in a row.
    struct Stripe {
        size_t index;
        size_t room;
    };
    static Stripe stripe_at(uint64_t at, size_t n) {
        if (n == 1) return {0, SIZE_MAX};
        return {size_t(at / kStripe % n), size_t(kStripe - at % kStripe)};
    }
    ~ImageSink();
    ImageSink(const ImageSink&) = delete;
    ImageSink& operator=(const ImageSink&) = delete;
    // Bytes that already hold `records` whole records (a header and records).
    Status raw(const void* data, size_t len, uint64_t records);
    // Bytes of whole records in a private anonymous mapping that is never
    // written again while it is mapped (a tree's copied pages, PageBuffer):
    // where the fd is a pipe they are vmspliced, not copied; the pipe's
    // references keep them should the mapping go before the reader took them.
    Status stable(const void* data, size_t len, uint64_t records);
    Status record(image::RecordType type, std::string_view prefix, const void* data = nullptr,
                  size_t len = 0);
    Status finish();  // the trailer, then everything is written
    uint64_t bytes() const { return bytes_; }

    // A buffer of kChunk bytes, page-aligned, to fill and pass (pieces of
    // it) as record data before the next call; its contents are not kept.
    char* chunk_buffer();
    // Chunks that went through the bounce buffer (for tests).
    uint64_t bounced() const { return bounced_; }
    // Pages records (kPages) whose data lies in the buffer chunk_buffer()
    // lent last, written as record() would, but where the fd is a pipe their
    // headers and pages go with one vmsplice (per IOV_MAX pieces), not one
    // write and one vmsplice per record: 30,000 one-page areas made 60,000
    // syscalls. The headers are kept beside the chunk until the reader took them.
    struct Pages {
        uint64_t vaddr;
        uint32_t nr_pages;
        const char* data;
    };
    Status pages(const std::vector<Pages>& recs);

    // A lent chunk: kChunk bytes of pages, then room for the headers of the
    // records spliced from it (pages()); the ring's chunks lie kLentBytes apart.
    static constexpr size_t kHead = sizeof(image::RecordHeader) + sizeof(image::PagesRecord);
    static constexpr size_t kHeads = kChunk / image::kPageSize * kHead;
    static constexpr size_t kLentBytes = kChunk + kHeads;
    // perf: the ring's chunks: room for those the stripes' pipes hold (4 MiB
    // in a worker's pipes), the one being filled and one more, so that a
    // chunk is seldom still in a pipe when its turn comes.
    static constexpr size_t kRing = 7;

    // perf: the ring's memory mapped and faulted in now, for this process's
    // next sink (a spare worker does it while it waits, checkpoint/worker.h);
    // nothing if one is waiting already or there is no memory for it.
    static void prefault_ring();

  private:
    struct Lent {
        char* mem = nullptr;
        uint64_t spliced_to = 0;  // stream bytes written when its last splice ended
        size_t heads_used = 0;    // bytes of the header room in use since it was lent
    };
    Status put(const void* data, size_t len);
    Status flush();
    Status write_out(const char* data, size_t len);
    Status splice_out(const char* data, size_t len);
    Status splice_bytes(const char* data, size_t len);
    bool taken_by_reader(uint64_t upto) const;
    Status splice_iov(std::vector<iovec>& iov);
    std::vector<int> fds_;  // the stripes' fds
    void* xxh_;
    std::vector<char> buf_;
    uint64_t records_ = 0, bytes_ = 0;
    uint64_t written_ = 0;  // bytes gone into fds_ (bytes_ minus what buf_ holds)
    bool splice_ = true;    // fds_ take vmsplice (pipes)
    uint64_t capacity_;     // the pipes' bytes, all told (UINT64_MAX: unknown)
    Lent ring_[kRing];
    static constexpr size_t kRingMap = 8 << 20;  // ring_'s mapping: 4 huge pages
    static_assert(kRing * kLentBytes <= kRingMap, "the ring's lent chunks fit its mapping");
    char* ring_mem_ = nullptr;
    bool ring_failed_ = false;  // no mapping for the ring: the bounce buffer only
    char* bounce_ = nullptr;
    Lent* lent_ = nullptr;  // the buffer lent last (null: the bounce buffer)
    size_t next_ = 0;
    uint64_t bounced_ = 0;
    std::vector<iovec> iov_;  // pages(): reused
};

}  // namespace crfs
