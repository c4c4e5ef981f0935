#include "common/image_spool.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "common/strfmt.h"
#include "crfs/image_format.h"

namespace crfs {

namespace {

constexpr uint64_t kPage = image::kPageSize;
constexpr uint64_t kMaxPageData = uint64_t(image::kMaxPagesPerRecord) * kPage;
constexpr size_t kStageMax = 256 << 10;  // image bytes kept before a write, at most
static_assert(ImageSpool::kRunHeadBytes ==
              sizeof(image::RecordHeader) + sizeof(image::PagesRecord));

Status pwrite_all(int fd, const char* buf, size_t len, uint64_t off, const char* what) {
    while (len) {
        ssize_t n = ::pwrite(fd, buf, len, off_t(off));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno_error(what);
        buf += n, len -= size_t(n), off += uint64_t(n);
    }
    return {};
}

// Writes every iovec (consumed as it goes) at `off`.
Status pwritev_all(int fd, std::vector<iovec>& iov, uint64_t off, const char* what) {
    for (size_t i = 0; i < iov.size();) {
        ssize_t n = ::pwritev(fd, iov.data() + i, int(std::min<size_t>(iov.size() - i, IOV_MAX)),
                              off_t(off));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno_error(what);
        off += uint64_t(n);
        for (size_t k = size_t(n); k;) {
            size_t t = std::min(k, iov[i].iov_len);
            iov[i].iov_base = static_cast<char*>(iov[i].iov_base) + t;
            iov[i].iov_len -= t, k -= t;
            if (!iov[i].iov_len) ++i;
        }
        while (i < iov.size() && !iov[i].iov_len) ++i;
    }
    iov.clear();
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

Status ImageSpool::flush() {
    if (!stage_.empty()) {
        if (auto ok =
                pwrite_all(image_.get(), stage_.data(), stage_.size(), stage_at_, "spool image");
            !ok)
            return ok;
        image_end_ = std::max(image_end_, stage_at_ + stage_.size());
        stage_.clear();
    }
    if (!pending_.empty()) {
        if (auto ok =
                pwritev_all(pages_.get(), pending_, stored_ - pending_bytes_, "spool page data");
            !ok)
            return ok;
        pending_bytes_ = 0;
    }
    return {};
}

Status ImageSpool::to_image(const char* buf, size_t len, uint64_t at) {
    if (!stage_.empty() && at != stage_at_ + stage_.size())
        if (auto ok = flush(); !ok) return ok;
    if (len >= kStageMax / 4) {  // bulk bytes go straight through, never copied
        if (auto ok = flush(); !ok) return ok;
        if (auto ok = pwrite_all(image_.get(), buf, len, at, "spool image"); !ok) return ok;
        image_end_ = std::max(image_end_, at + len);
        return {};
    }
    if (stage_.empty()) stage_at_ = at;
    stage_.append(buf, len);
    if (stage_.size() >= kStageMax) return flush();
    return {};
}

Status ImageSpool::to_pages(const char* buf, size_t len) {
    if (!len) return {};
    if (!pending_.empty() &&
        static_cast<char*>(pending_.back().iov_base) + pending_.back().iov_len == buf)
        pending_.back().iov_len += len;
    else
        pending_.push_back({const_cast<char*>(buf), len});
    pending_bytes_ += len;
    stored_ += len;
    written_ += len;  // a hole in the image
    if (pending_.size() >= IOV_MAX) return flush();
    return {};
}

Status ImageSpool::begin_record() {
    uint32_t type;
    uint64_t length;
    std::memcpy(&type, hold_, 4);
    std::memcpy(&length, hold_ + 8, 8);
    trailer_body_ = type == uint32_t(image::RecordType::kTrailer);
    section_body_ = sink_ && type == uint32_t(image::RecordType::kMemberPages) &&
                    length == sizeof(image::MemberPagesRecord);
    bool pages = type == uint32_t(image::RecordType::kPages) &&
                 length >= sizeof(image::PagesRecord) + kPage &&
                 length <= sizeof(image::PagesRecord) + kMaxPageData &&
                 (length - sizeof(image::PagesRecord)) % kPage == 0;
    if (diverting_ && !pages)  // stream: the sink says which records may follow the pages
        if (auto ok = sink_->record(type); !ok) return ok;
    if (pages && sink_ && !diverting_ && runs_.empty()) {  // stream: the first pages record
        if (auto ok = flush(); !ok) return ok;
        uint64_t at = written_ - sizeof hold_;
        if (image_end_ < at) {
            if (::ftruncate(image_.get(), off_t(at)) != 0)
                return errno_error("spool image: ftruncate");
            image_end_ = at;
        }
        diverting_ = sink_->first_pages(at);
    }
    state_ = pages ? State::kPagesFixed : State::kBody;
    left_ = pages ? sizeof(image::PagesRecord) : length;
    if (!pages)
        return to_image(reinterpret_cast<const char*>(hold_), sizeof hold_,
                        written_ - sizeof hold_);
    heads_.append(reinterpret_cast<const char*>(hold_), sizeof hold_);
    runs_.push_back(
        {written_ + sizeof(image::PagesRecord), length - sizeof(image::PagesRecord), stored_});
    return {};
}

Status ImageSpool::append(const char* buf, size_t len) {
    Status ok = {};
    while (ok && (len || (left_ == 0 && (state_ == State::kBody || state_ == State::kPagesFixed ||
                                         state_ == State::kPageData)))) {
        switch (state_) {
            case State::kPlain:
                ok = to_image(buf, len, written_);
                written_ += len;
                len = 0;
                continue;
            case State::kAfterTrailer:
                // A second image (a chain: restorer/image_chain.h): spooled as before.
                ok = materialize();
                continue;
            case State::kHeader:
            case State::kRecordHeader: {
                size_t n = std::min<size_t>(len, sizeof hold_ - held_);
                std::memcpy(hold_ + held_, buf, n);
                held_ += n;
                // The image's header is written as it comes; a record header
                // once its type says where it goes.
                if (state_ == State::kHeader) ok = to_image(buf, n, written_);
                written_ += n;
                buf += n, len -= n;
                if (held_ < sizeof hold_) continue;
                held_ = 0;
                if (state_ == State::kRecordHeader) {
                    ok = begin_record();
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
                if (state_ == State::kPageData && diverting_) {  // stream
                    image::PagesRecord pr;
                    std::memcpy(&pr, heads_.data() + heads_.size() - sizeof pr, sizeof pr);
                    ok = sink_->data(pr.vaddr, pr.nr_pages, runs_.back().bytes - left_, buf, n);
                    written_ += n;  // a hole in the image, nothing stored
                } else if (state_ == State::kPageData) {
                    ok = to_pages(buf, n);
                } else {
                    if (state_ == State::kBody && section_body_)  // streamtree
                        std::memcpy(section_ + (sizeof section_ - left_), buf, n);
                    if (state_ == State::kBody)
                        ok = to_image(buf, n, written_);
                    else
                        heads_.append(buf, n);
                    written_ += n;
                }
                buf += n, len -= n, left_ -= n;
                if (left_) continue;
                if (state_ == State::kPagesFixed) {
                    state_ = State::kPageData;
                    left_ = runs_.back().bytes;
                } else if (state_ == State::kBody && section_body_) {
                    image::MemberPagesRecord m;
                    std::memcpy(&m, section_, sizeof m);
                    section_body_ = false;
                    state_ = State::kRecordHeader;
                    ok = sink_->section(m.process);
                } else {
                    state_ = state_ == State::kBody && trailer_body_ ? State::kAfterTrailer
                                                                     : State::kRecordHeader;
                }
                continue;
            }
        }
    }
    if (!ok) return ok;
    // A record header cut by the end of this write: its bytes so far are in
    // the image memfd meanwhile (an image that ends here reads as written).
    if (state_ == State::kRecordHeader && held_)
        ok = to_image(reinterpret_cast<const char*>(hold_), held_, written_ - held_);
    if (!ok) return ok;
    if (auto f = flush(); !f) return f;
    // The image file is as long as the image, pages records or not.
    if (image_end_ < written_) {
        if (::ftruncate(image_.get(), off_t(written_)) != 0)
            return errno_error("spool image: ftruncate");
        image_end_ = written_;
    }
    return {};
}

Status ImageSpool::materialize() {
    if (auto ok = flush(); !ok) return ok;
    state_ = State::kPlain;
    if (!pages_) return {};
    std::vector<char> buf(1 << 20);
    for (size_t i = 0; i < runs_.size(); ++i) {
        const Run& r = runs_[i];
        size_t head = i * kRunHeadBytes;
        if (auto ok = pwrite_all(image_.get(), heads_.data() + head,
                                 std::min(kRunHeadBytes, heads_.size() - head),
                                 r.logical - kRunHeadBytes, "spool: putting a pages record back");
            !ok)
            return ok;
        for (uint64_t done = 0; done < r.bytes && r.stored + done < stored_;) {
            size_t want =
                size_t(std::min<uint64_t>({buf.size(), r.bytes - done, stored_ - r.stored - done}));
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
    image_end_ = std::max(image_end_, written_);
    runs_.clear();
    heads_.clear();
    heads_.shrink_to_fit();
    pages_.reset();
    stored_ = 0;
    return {};
}

Result<size_t> ImageSpool::Source::read(void* out, size_t len) {
    char* to = static_cast<char*>(out);
    size_t done = 0;
    const auto& runs = s_.runs_;
    while (done < len && pos_ < size_) {
        while (run_ < runs.size() && runs[run_].logical + runs[run_].bytes <= pos_) ++run_;
        uint64_t want = std::min<uint64_t>(len - done, size_ - pos_);
        size_t n;
        if (run_ < runs.size() && pos_ >= runs[run_].logical - kRunHeadBytes) {
            const Run& r = runs[run_];
            if (pos_ < r.logical) {  // its headers, from the compact store
                size_t at = run_ * kRunHeadBytes + size_t(pos_ - (r.logical - kRunHeadBytes));
                if (at >= s_.heads_.size()) break;
                n = size_t(std::min<uint64_t>({want, r.logical - pos_, s_.heads_.size() - at}));
                std::memcpy(to + done, s_.heads_.data() + at, n);
            } else {  // its data, from the page store
                want = std::min<uint64_t>(want, r.logical + r.bytes - pos_);
                ssize_t k = ::pread(s_.pages_.get(), to + done, size_t(want),
                                    off_t(r.stored + (pos_ - r.logical)));
                if (k < 0 && errno == EINTR) continue;
                if (k < 0) return errno_error("spool: reading page data");
                if (k == 0) break;
                n = size_t(k);
            }
        } else {  // the image memfd, up to the next run's headers
            if (run_ < runs.size())
                want = std::min<uint64_t>(want, runs[run_].logical - kRunHeadBytes - pos_);
            n = size_t(want);
            std::memcpy(to + done, image_ + pos_, n);
        }
        done += n;
        pos_ += n;
    }
    return done;
}

Result<uint64_t> ImageSpool::Source::skip(uint64_t len) {
    uint64_t k = std::min<uint64_t>(len, size_ - pos_);
    pos_ += k;
    return k;
}

Result<int> ImageSpool::place(DecodedImage& img) {
    if (!pages_) return image_.get();
    std::vector<uint64_t> at(img.pages.size());
    for (size_t i = 0; i < img.pages.size(); ++i) {
        const PageRun& p = img.pages[i];
        uint64_t len = uint64_t(p.nr_pages) * kPage;
        auto it = std::upper_bound(runs_.begin(), runs_.end(), p.stream_offset,
                                   [](uint64_t off, const Run& r) { return off < r.logical; });
        if (it == runs_.begin() ||
            p.stream_offset + len > std::prev(it)->logical + std::prev(it)->bytes ||
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
