#include "common/image_spool.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/strfmt.h"
#include "crfs/image_format.h"

namespace crfs {

namespace {

constexpr uint64_t kPage = image::kPageSize;
constexpr uint64_t kMaxPageData = uint64_t(image::kMaxPagesPerRecord) * kPage;

Status pwrite_all(int fd, const char* buf, size_t len, uint64_t off, const char* what) {
    while (len) {
        ssize_t n = ::pwrite(fd, buf, len, off_t(off));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno_error(what);
        buf += n, len -= size_t(n), off += uint64_t(n);
    }
    return {};
}

}  // namespace

Result<ImageSpool> ImageSpool::create(const std::string& name, bool split) {
    ImageSpool s;
    s.image_.reset(::memfd_create(("crfs-slot-" + name).c_str(), MFD_CLOEXEC));
    if (!s.image_) return errno_error("spool for slot " + name + ": memfd_create");
    if (!split) {
        s.state_ = State::kPlain;
        return s;
    }
    s.pages_.reset(::memfd_create(("crfs-pages-" + name).c_str(), MFD_CLOEXEC));
    if (!s.pages_) return errno_error("page spool for slot " + name + ": memfd_create");
    return s;
}

Status ImageSpool::write_image(const char* buf, size_t len) {
    if (auto ok = pwrite_all(image_.get(), buf, len, written_, "spool image"); !ok) return ok;
    written_ += len;
    return {};
}

Status ImageSpool::write_pages(const char* buf, size_t len) {
    if (auto ok = pwrite_all(pages_.get(), buf, len, stored_, "spool page data"); !ok) return ok;
    stored_ += len;
    written_ += len;  // a hole in the image
    return {};
}

void ImageSpool::begin_record() {
    uint32_t type;
    uint64_t length;
    std::memcpy(&type, hold_, 4);
    std::memcpy(&length, hold_ + 8, 8);
    trailer_body_ = type == uint32_t(image::RecordType::kTrailer);
    bool pages = type == uint32_t(image::RecordType::kPages) &&
                 length >= sizeof(image::PagesRecord) + kPage &&
                 length <= sizeof(image::PagesRecord) + kMaxPageData &&
                 (length - sizeof(image::PagesRecord)) % kPage == 0;
    state_ = pages ? State::kPagesFixed : State::kBody;
    left_ = pages ? sizeof(image::PagesRecord) : length;
    if (pages) runs_.push_back({0, length - sizeof(image::PagesRecord), 0});
}

Status ImageSpool::append(const char* buf, size_t len) {
    while (len || (left_ == 0 && (state_ == State::kBody || state_ == State::kPagesFixed ||
                                  state_ == State::kPageData))) {
        switch (state_) {
            case State::kPlain:
                return write_image(buf, len);
            case State::kAfterTrailer:
                // A second image (a chain: restorer/image_chain.h): spooled as before.
                if (auto ok = materialize(); !ok) return ok;
                continue;
            case State::kHeader:
            case State::kRecordHeader: {
                size_t n = std::min<size_t>(len, sizeof hold_ - held_);
                std::memcpy(hold_ + held_, buf, n);
                held_ += n;
                if (auto ok = write_image(buf, n); !ok) return ok;
                buf += n, len -= n;
                if (held_ < sizeof hold_) continue;
                held_ = 0;
                if (state_ == State::kRecordHeader) {
                    begin_record();
                    continue;
                }
                uint32_t header_size;
                std::memcpy(&header_size, hold_ + 12, 4);
                if (header_size < sizeof(image::Header) || header_size > 4096) {
                    state_ = State::kPlain;  // the decoder names the fault
                    continue;
                }
                state_ = State::kBody;
                trailer_body_ = false;
                left_ = header_size - sizeof hold_;
                continue;
            }
            case State::kBody:
            case State::kPagesFixed:
            case State::kPageData: {
                size_t n = size_t(std::min<uint64_t>(len, left_));
                auto ok = state_ == State::kPageData ? write_pages(buf, n) : write_image(buf, n);
                if (!ok) return ok;
                buf += n, len -= n, left_ -= n;
                if (left_) continue;
                if (state_ == State::kPagesFixed) {
                    Run& r = runs_.back();
                    r.logical = written_;
                    r.stored = stored_;
                    state_ = State::kPageData;
                    left_ = r.bytes;
                } else {
                    state_ = state_ == State::kBody && trailer_body_ ? State::kAfterTrailer
                                                                      : State::kRecordHeader;
                }
                continue;
            }
        }
    }
    // The image file is as long as the image, page data or not.
    struct stat st {};
    if (::fstat(image_.get(), &st) != 0) return errno_error("spool image: fstat");
    if (uint64_t(st.st_size) < written_ && ::ftruncate(image_.get(), off_t(written_)) != 0)
        return errno_error("spool image: ftruncate");
    return {};
}

Status ImageSpool::materialize() {
    state_ = State::kPlain;
    if (!pages_) return {};
    std::vector<char> buf(1 << 20);
    for (const Run& r : runs_) {
        for (uint64_t done = 0; done < r.bytes && r.stored + done < stored_;) {
            size_t want = size_t(std::min<uint64_t>({buf.size(), r.bytes - done, stored_ - r.stored - done}));
            ssize_t n = ::pread(pages_.get(), buf.data(), want, off_t(r.stored + done));
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return errno_error("spool: reading page data back");
            if (auto ok = pwrite_all(image_.get(), buf.data(), size_t(n), r.logical + done,
                                     "spool: putting page data back");
                !ok)
                return ok;
            // Given back as it goes: the daemon never holds the page data twice.
            (void)::fallocate(pages_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                              off_t(r.stored + done), n);
            done += uint64_t(n);
        }
    }
    runs_.clear();
    pages_.reset();
    stored_ = 0;
    return {};
}

Result<int> ImageSpool::place(DecodedImage& img) {
    if (!pages_) return image_.get();
    std::vector<uint64_t> at(img.pages.size());
    for (size_t i = 0; i < img.pages.size(); ++i) {
        const PageRun& p = img.pages[i];
        uint64_t len = uint64_t(p.nr_pages) * kPage;
        auto it = std::upper_bound(runs_.begin(), runs_.end(), p.stream_offset,
                                   [](uint64_t off, const Run& r) { return off < r.logical; });
        if (it == runs_.begin() || p.stream_offset + len > std::prev(it)->logical + std::prev(it)->bytes ||
            std::prev(it)->stored + (p.stream_offset - std::prev(it)->logical) + len > stored_) {
            // Not where the framing walk put page data: read it all from the image.
            if (auto ok = materialize(); !ok) return std::unexpected(ok.error());
            return image_.get();
        }
        at[i] = std::prev(it)->stored + (p.stream_offset - std::prev(it)->logical);
    }
    for (size_t i = 0; i < img.pages.size(); ++i) img.pages[i].stream_offset = at[i];
    return pages_.get();
}

}  // namespace crfs
