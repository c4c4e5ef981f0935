// A restore slot's spool, laid out for the restorer blob and kept compact:
// the data of each pages record goes page-aligned into a page store memfd
// (`pages_fd`), the record's 32 bytes of headers (record header and
// PagesRecord) into a compact store in memory, and every other byte of the
// image at its own offset in the image memfd (`image_fd`), where a pages
// record leaves a hole (zeros, no memory). A one-page run costs one page of
// fresh memory, not two (its headers would land one in nearly every page of
// the image memfd). The slot sees the framing as the bytes arrive (header,
// then record headers: types and lengths), so nothing is copied twice, and
// each write() of the slot becomes a few pwrite(v)s, not a few per record;
// the blob then fills anonymous memory from an aligned mapping of the page
// store with UFFDIO_COPY, which needs a page-aligned source and skips the
// zeroing of the task's fresh pages.
//
// Not a format change: the decoder reads the image as written through
// Source (the image memfd with the stores' bytes where they belong); it
// skips page data unread once the checksum was taken as the bytes arrived,
// and a restore moves each decoded page run's offset to the page store with
// place(). Anything the framing walk does not understand (a second image
// after a trailer: a chain; a header size out of range) puts the stores'
// bytes back (materialize) and spools the rest plainly, as before.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/image_reader.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace crfs {

// stream: where a streamed restore's page data goes instead of the page
// store (fs/slot_stream.h). Called from append(), in the image's order.
class PageSink {
  public:
    virtual ~PageSink() = default;
    // The image's first pages record starts at byte `at`; every byte before
    // it is in image_fd() now. True: this record's data and every later
    // pages record's go to data(), not to the page store.
    virtual bool first_pages(uint64_t at) = 0;
    // `len` bytes of the page run at `vaddr` (nr_pages long), from byte `off` of its data.
    virtual Status data(uint64_t vaddr, uint32_t nr_pages, uint64_t off, const char* buf,
                        size_t len) = 0;
    // A record of type `type` starts after the page data began to go to data().
    virtual Status record(uint32_t type) = 0;
    // streamtree: a member-pages record (of its size) for process `process`
    // ends at the bytes so far, before or after the page data began to go
    // to data(): the runs that follow are that process's.
    virtual Status section(uint32_t process) {
        (void)process;
        return {};
    }
};

class ImageSpool {
  public:
    // Both memfds are made here, named after `name` (the slot). `split`
    // false: the plain spool of before (one memfd, the image as written).
    static Result<ImageSpool> create(const std::string& name, bool split = true);

    // The next `len` bytes of the image (written sequentially).
    Status append(const char* buf, size_t len);
    uint64_t size() const { return written_; }

    // The image memfd (its size is size()): pages records as holes unless
    // materialized. Records of other types are at their own offsets in it.
    int image_fd() const { return image_.get(); }
    // The pages records are apart (the framing walk saw one image so far):
    // read the image through Source, not from image_fd() alone.
    bool split() const { return bool(pages_); }

    // The image as written, from a mapping of image_fd() (`image`, size()
    // bytes, the caller's) and the two stores. Forward only; the spool must
    // not change while a Source reads it.
    class Source : public ByteSource {
      public:
        Source(const ImageSpool& s, const char* image, size_t size)
            : s_(s), image_(image), size_(size) {}
        Result<size_t> read(void* buf, size_t len) override;
        Result<uint64_t> skip(uint64_t len) override;

      private:
        const ImageSpool& s_;
        const char* image_;
        size_t size_;
        uint64_t pos_ = 0;
        size_t run_ = 0;  // the first run not wholly before pos_
    };

    // Moves every page run of `img` (decoded from the spool) to the page
    // store and returns the fd to read page data from: the page store, or
    // image_fd() when a run is not one the framing walk stored (then the
    // stores' bytes are put back first and the runs keep their offsets).
    Result<int> place(DecodedImage& img);

    // Puts the pages records back into image_fd() (the full decode, chains,
    // and whatever a hostile framing makes of it read the whole image there).
    Status materialize();

    // A pages record: its headers and data (for tests: the stored runs so far).
    struct Run {
        uint64_t logical;  // offset of the data in the image (its headers: the 32 bytes before)
        uint64_t bytes;    // its length (a multiple of the page size)
        uint64_t stored;   // offset in the page store (page-aligned)
    };
    const std::vector<Run>& runs() const { return runs_; }
    // stream: offers the image's first pages record to `sink` (the caller's;
    // null: none). Set before the first append.
    void divert(PageSink* sink) { sink_ = sink; }
    bool diverted() const { return diverting_; }
    static constexpr size_t kRunHeadBytes = 32;  // RecordHeader + PagesRecord

  private:
    enum class State {
        kHeader,
        kRecordHeader,
        kPagesFixed,
        kPageData,
        kBody,
        kAfterTrailer,
        kPlain
    };
    // Bytes for the image memfd at `at` (copied and kept while they follow
    // the last ones: one pwrite for a stretch of records).
    Status to_image(const char* buf, size_t len, uint64_t at);
    // Page data for the page store at stored_ (the caller's buffer until flush).
    Status to_pages(const char* buf, size_t len);
    // Writes what to_image and to_pages kept; before append returns.
    Status flush();
    // The record header in hold_ is complete: what follows it.
    Status begin_record();

    UniqueFd image_, pages_;
    std::vector<Run> runs_;
    std::string heads_;       // kRunHeadBytes per run, in run order (the last may be short)
    uint64_t written_ = 0;    // image bytes so far
    uint64_t stored_ = 0;     // page store bytes so far
    uint64_t image_end_ = 0;  // the image memfd's size as set so far
    State state_ = State::kHeader;
    unsigned char hold_[16] = {};  // the header's first 16 bytes, or a record header
    size_t held_ = 0;
    uint64_t left_ = 16;         // bytes left in the current piece of the framing
    bool trailer_body_ = false;  // kBody is the trailer's
    // streamtree: kBody is a member-pages record's, for the sink (section()).
    bool section_body_ = false;
    unsigned char section_[8] = {};
    // Kept writes: image bytes for [stage_at_, +stage_.size()), page data
    // for the page store from stored_ - pending_bytes_.
    std::string stage_;
    uint64_t stage_at_ = 0;
    std::vector<iovec> pending_;
    uint64_t pending_bytes_ = 0;
    PageSink* sink_ = nullptr;  // stream
    bool diverting_ = false;
};

}  // namespace crfs
