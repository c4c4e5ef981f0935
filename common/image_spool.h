// A restore slot's spool, laid out for the restorer blob: every byte of the
// image at its own offset in one memfd (`image_fd`), except the data of each
// pages record, which goes page-aligned into a second memfd (`pages_fd`) and
// leaves a hole (zeros, no memory) in the first. The slot sees the framing as
// the bytes arrive (header, then record headers: types and lengths), so
// nothing is copied twice; the blob then fills anonymous memory from an
// aligned mapping of the page store with UFFDIO_COPY, which needs a
// page-aligned source and skips the zeroing of the task's fresh pages.
//
// Not a format change: the decoder reads `image_fd` as the image (it skips
// page data unread once the checksum was taken as the bytes arrived), and a
// restore moves each decoded page run's offset to the page store with
// place(). Anything the framing walk does not understand (a second image
// after a trailer: a chain; a header size out of range) puts the page data
// back (materialize) and spools the rest plainly, as before.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/image_reader.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace crfs {

class ImageSpool {
  public:
    // Both memfds are made here, named after `name` (the slot). `split`
    // false: the plain spool of before (one memfd, the image as written).
    static Result<ImageSpool> create(const std::string& name, bool split = true);

    // The next `len` bytes of the image (written sequentially).
    Status append(const char* buf, size_t len);
    uint64_t size() const { return written_; }

    // The image, page data as holes unless materialized; its size is size().
    int image_fd() const { return image_.get(); }

    // Moves every page run of `img` (decoded from image_fd()) to the page
    // store and returns the fd to read page data from: the page store, or
    // image_fd() when a run is not one the framing walk stored (then the
    // page data is put back first and the runs keep their offsets).
    Result<int> place(DecodedImage& img);

    // Puts the page data back into image_fd() (the full decode, chains, and
    // whatever a hostile framing makes of it read the whole image there).
    Status materialize();

    // Where a page run's data is (for tests): the stored runs so far.
    struct Run {
        uint64_t logical;  // offset of the data in the image
        uint64_t bytes;    // its length (a multiple of the page size)
        uint64_t stored;   // offset in the page store (page-aligned)
    };
    const std::vector<Run>& runs() const { return runs_; }

  private:
    enum class State { kHeader, kRecordHeader, kPagesFixed, kPageData, kBody, kAfterTrailer, kPlain };
    Status write_image(const char* buf, size_t len);
    Status write_pages(const char* buf, size_t len);
    // The record header in hold_ is complete: what follows it.
    void begin_record();

    UniqueFd image_, pages_;
    std::vector<Run> runs_;
    uint64_t written_ = 0;  // image bytes so far
    uint64_t stored_ = 0;   // page store bytes so far
    State state_ = State::kHeader;
    unsigned char hold_[16] = {};  // the header's first 16 bytes, or a record header
    size_t held_ = 0;
    uint64_t left_ = 16;           // bytes left in the current piece of the framing
    bool trailer_body_ = false;    // kBody is the trailer's
};

}  // namespace crfs
