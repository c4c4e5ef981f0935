// stream (issue 13): a slot's restore that runs while the image still
// arrives. At the image's first pages record (every record that plans the
// task comes before the pages in an image crfs writes: checkpoint.cc
// build_records) the slot starts restore_image on a thread of its own with
// the bytes so far; the task is made as today (decode, validate, plan,
// clone, stage 1 as the writer: its credentials and cgroup), the blob maps
// every VMA, registers the private anonymous ones on a userfaultfd and waits
// (restorer/blob/stream.h). Each later FUSE write's page data then goes
// straight into the task: UFFDIO_COPY from the FUSE buffer into private
// anonymous memory, process_vm_writev into the other mappings that hold
// pages, each run checked to lie inside one VMA of the validated plan, and to
// give no page an earlier run gave (common/page_set.h), before a byte is
// copied. Nothing is stored. At close the whole image is decoded
// (fixed parts, hashed as written) and its checksum and record count
// verified; only then does the task go on. Any failure (a bad record, a bad
// checksum, an early close, the slot removed or truncated) kills and reaps
// the task, and the restore's guards undo what stage 1 made.
//
// An image whose records before the pages cannot be planned from alone (a
// tree, a chain, a System V segment, a restart_syscall: restore.cc
// `streamable`), or whose restore fails before its task exists, is spooled
// as before and restored at close, which then says why.
#pragma once

#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "common/image_spool.h"
#include "common/page_set.h"
#include "fs/limits.h"
#include "restorer/restore.h"

namespace crfs::fs {

class SlotStream : public PageSink {
  public:
    // `req`: the restore as the slot's close would ask it (its image_fd the
    // spool's image memfd, which outlives this object: Slot::drop_spool).
    SlotStream(const RestoreRequest& req, Lease running);
    ~SlotStream() override;  // gives up a restore still waiting: the task is killed
    SlotStream(const SlotStream&) = delete;
    SlotStream& operator=(const SlotStream&) = delete;

    bool first_pages(uint64_t at) override;
    Status data(uint64_t vaddr, uint32_t nr_pages, uint64_t off, const char* buf,
                size_t len) override;
    Status record(uint32_t type) override;

    // The image arrived whole: `verified` is the outcome of its decode. Ok:
    // the task goes on and its pid is returned; an error: the task is killed
    // and the error returned.
    Result<pid_t> finish(Status verified);
    // The task made for this image, once its VMAs wait for the pages (0
    // before): under its pid the tree shows the slot, not the task (ops.cc
    // hidden_by_task), so a name looked up meanwhile stays the slot's.
    pid_t task_pid();
    // The restore's reads of restart_syscall code (RestoreStream::restart_code).
    const std::vector<uint64_t>& restart_code() const { return rs_.restart_code; }
    // A record the streamed restore cannot take came after the page data
    // (record()): refused at close, unless the image is refused for another
    // fault first (the decode at close names it as the spooled restore does).
    const std::optional<Error>& refusal() const { return refusal_; }

  private:
    void give_up(Error why);
    Status copy_in(uint64_t dst, const char* src, uint64_t len, bool uffd);

    RestoreRequest req_;
    RestoreStream rs_;
    Lease running_;
    std::thread thread_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool ready_ = false, done_ = false;
    std::optional<Status> decision_;  // the slot's word to a waiting restore
    StreamReady task_;
    std::optional<Result<pid_t>> result_;
    // A page cut between two writes (UFFDIO_COPY copies whole pages).
    alignas(64) char partial_[4096];
    size_t partial_len_ = 0;
    uint64_t partial_dst_ = 0;
    size_t vma_ = 0;  // the VMA of the current run (task_.vmas)
    bool vma_uffd_ = false;
    bool skip_run_ = false;  // the current run lies outside the VMAs or gives a page twice:
                             // refused at close
    PageSet given_;          // the pages of the runs so far
    std::optional<Error> refusal_;
};

}  // namespace crfs::fs
