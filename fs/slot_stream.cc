#include "fs/slot_stream.h"

#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/log.h"
#include "common/strfmt.h"
#include "common/thread_stacks.h"
#include "crfs/image_format.h"

namespace crfs::fs {

namespace {
constexpr uint64_t kPage = image::kPageSize;

// Test only: CRFS_TEST_STREAM_COPY_FAIL=ADDR (hex) in crfsd's environment:
// a streamed restore's copy of page data to ADDR fails with EIO, as a copy
// into the task may fail for reasons no image edit gives (the task killed,
// memory refused), so a test can see a fault found after a write's answer
// (docs/restore.md "Fault injection").
bool test_copy_fails(uint64_t dst) {
    static const uint64_t addr = [] {
        const char* v = std::getenv("CRFS_TEST_STREAM_COPY_FAIL");
        return v ? std::strtoull(v, nullptr, 16) : 0;
    }();
    return addr && dst == addr;
}
}  // namespace

SlotStream::SlotStream(const RestoreRequest& req, Lease running)
    : req_(req), running_(std::move(running)) {
    req_.stream = &rs_;
    rs_.ready = [this](const std::vector<StreamReady>& r) -> Status {
        std::unique_lock lock(mu_);
        for (const auto& t : r) tasks_.push_back({t, {}});
        // A single process's runs are its own; a tree's go to the process
        // whose section they are in (section()).
        if (tasks_.size() == 1 && !tasks_.front().ready.process) cur_ = &tasks_.front();
        if (section_) pick_section();
        ready_ = true;
        cv_.notify_all();
        cv_.wait(lock, [&] { return decision_.has_value(); });
        return *decision_;
    };
}

SlotStream::~SlotStream() {
    if (thread_.joinable())
        give_up(Error{ECANCELED, "restore: the image was given up before it was whole"});
}

void SlotStream::give_up(Error why) {
    {
        std::lock_guard lock(mu_);
        if (!decision_) decision_ = std::unexpected(std::move(why));
        cv_.notify_all();
    }
    if (thread_.joinable()) thread_.join();
}

bool SlotStream::first_pages(uint64_t at) {
    rs_.prefix_len = at;
    thread_ = std::thread([this] {
        // Its frames hold this writer's restore: a tree's members take no copy
        // of them, as of a FUSE worker's (common/thread_stacks.h).
        note_thread_stack();
        auto pid = restore_image(req_);
        std::lock_guard lock(mu_);
        result_ = std::move(pid);
        done_ = true;
        cv_.notify_all();
    });
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return ready_ || done_; });
    if (ready_) return true;
    lock.unlock();
    thread_.join();
    // Not streamed: the spool keeps the pages and the close restores as before
    // (and says why, for an image that fails again).
    if (result_ && !*result_ && rs_.final_failure) {
        failed_ = result_->error();
        log_info("restore failed while streamed: %s", failed_->what.c_str());
        return false;
    }
    if (result_ && !*result_)
        log_info("restore not streamed (%s): %s; spooled",
                 rs_.before_task ? "before the task" : "its task failed",
                 result_->error().what.c_str());
    return false;
}

pid_t SlotStream::task_pid() {
    std::lock_guard lock(mu_);
    return ready_ && !tasks_.empty() ? tasks_.front().ready.pid : 0;
}

void SlotStream::pick_section() {
    cur_ = nullptr;
    for (auto& t : tasks_)
        if (t.ready.process == *section_) cur_ = &t;
}

Status SlotStream::section(uint32_t process) {
    // Before the stream began (the first section's record is in the records
    // the restore plans from): noted, picked once the tasks are ready.
    std::lock_guard lock(mu_);
    section_ = process;
    if (ready_) pick_section();
    return {};
}

Status SlotStream::record(uint32_t type) {
    if (refusal_ || type == uint32_t(image::RecordType::kStats) ||
        type == uint32_t(image::RecordType::kMemberStats) ||  // overlap: after the last section
        type == uint32_t(image::RecordType::kTrailer) ||
        type == uint32_t(image::RecordType::kMemberPages))  // streamtree: section()
        return {};
    const image::RecordTypeInfo* info = image::record_type_info(type);
    if (type == uint32_t(image::RecordType::kPages))
        refusal_ = Error{EBADMSG, "bad image: a pages record of a bad length after the page data"};
    else
        refusal_ = Error{EINVAL, strfmt("bad image: a {} record after the page data (a streamed "
                                        "restore plans the task from the records before the "
                                        "pages)",
                                        info ? info->name : "unknown")};
    return {};
}

Status SlotStream::copy_in(uint64_t dst, const char* src, uint64_t len, bool uffd) {
    if (test_copy_fails(dst))
        return make_error(EIO, strfmt("restore: copying the pages at {:x} into the task: "
                                      "CRFS_TEST_STREAM_COPY_FAIL",
                                      dst));
    while (len) {
        if (uffd) {
            uffdio_copy c{dst, reinterpret_cast<uint64_t>(src), len, 0, 0};
            int r = ::ioctl(cur_->ready.uffd, UFFDIO_COPY, &c);
            int err = errno;
            uint64_t done = c.copy > 0 ? uint64_t(c.copy) : 0;
            dst += done, src += done, len -= done;
            if (r == 0 || (done && len)) continue;
            if (c.copy == -EEXIST || err == EEXIST)
                return make_error(EINVAL, strfmt("bad image: the page at {:x} twice", dst));
            if (err == EAGAIN || err == EINTR) continue;
            return sys_error(c.copy < 0 ? int(-c.copy) : err,
                             strfmt("restore: copying the pages at {:x} into the task", dst));
        }
        ssize_t n = ::pwrite(cur_->ready.mem, src, size_t(len), off_t(dst));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0)
            return sys_error(n < 0 ? errno : EIO,
                             strfmt("restore: writing the pages at {:x} into the task", dst));
        dst += uint64_t(n), src += n, len -= uint64_t(n);
    }
    return {};
}

Status SlotStream::data(uint64_t vaddr, uint32_t nr_pages, uint64_t off, const char* buf,
                        size_t len) {
    if (off == 0 && !cur_) {  // streamtree: a run in no live process's section
        skip_run_ = true;
        if (!refusal_)
            refusal_ = Error{EINVAL, strfmt("bad image: pages {:x} outside every page section of a "
                                            "live process",
                                            vaddr)};
        return {};
    }
    if (off == 0) {  // a run begins: inside one VMA of the validated plan, or no byte goes
        uint64_t end = vaddr + uint64_t(nr_pages) * kPage;
        const auto& v = cur_->ready.vmas;
        auto it = std::upper_bound(v.begin(), v.end(), vaddr,
                                   [](uint64_t a, const StreamVma& m) { return a < m.start; });
        skip_run_ = vaddr % kPage || end <= vaddr || it == v.begin() || end > std::prev(it)->end;
        // Not a byte of it goes anywhere; the close refuses the image (after
        // the checks that name such a run as the spooled restore does).
        if (skip_run_ && !refusal_)
            refusal_ = Error{EINVAL, strfmt("bad image: pages {:x}-{:x} outside every VMA a "
                                            "restore writes",
                                            vaddr, end)};
        if (skip_run_) return {};
        // A page an earlier run gave: not written over (the decode at close
        // refuses the image with the same message as a spooled restore).
        if ((skip_run_ = !cur_->given.add(vaddr, end))) {
            if (!refusal_) refusal_ = Error{EBADMSG, "bad image: " + page_twice(vaddr, end)};
            return {};
        }
        vma_uffd_ = std::prev(it)->uffd;
    }
    if (skip_run_) return {};
    uint64_t dst = vaddr + off;
    if (!vma_uffd_) return copy_in(dst, buf, len, false);
    if (partial_len_) {  // the rest of a page cut by the last write
        size_t n = std::min(len, kPage - partial_len_);
        std::memcpy(partial_ + partial_len_, buf, n);
        partial_len_ += n, buf += n, len -= n, dst += n;
        if (partial_len_ < kPage) return {};
        partial_len_ = 0;
        if (auto s = copy_in(partial_dst_, partial_, kPage, true); !s) return s;
    }
    size_t whole = len & ~(kPage - 1);
    if (whole)
        if (auto s = copy_in(dst, buf, whole, true); !s) return s;
    if (len > whole) {
        partial_dst_ = dst + whole;
        partial_len_ = len - whole;
        std::memcpy(partial_, buf + whole, partial_len_);
    }
    return {};
}

Result<pid_t> SlotStream::finish(Status verified) {
    if (verified && partial_len_)
        verified = make_error(EINVAL, "bad image: page data ends inside a page");
    {  // the go, or the end of the task
        std::lock_guard lock(mu_);
        if (!decision_) decision_ = verified;
        cv_.notify_all();
    }
    if (thread_.joinable()) thread_.join();
    if (!result_) return make_error(EIO, "restore: streamed restore ended without a result");
    return *result_;
}

}  // namespace crfs::fs
