// stream (issue 13): a slot's restore that runs while the image still
// arrives. At the image's first pages record (every record that plans the
// task comes before the pages in an image crfs writes: checkpoint.cc
// build_records) the slot starts restore_image on a thread of its own with
// the bytes so far; the task is made as today (decode, validate, plan,
// clone, stage 1 as the writer: its credentials and cgroup), the blob maps
// every VMA, registers the private anonymous ones on a userfaultfd and waits
// (restorer/blob/stream.h). Each later FUSE write's page data then goes
// straight into the task: UFFDIO_COPY from the FUSE buffer into private
// anonymous memory, pwrite to /proc/<pid>/mem (opened while the task lived)
// into the other mappings that hold pages, each run checked to lie inside
// one VMA of the validated plan, and to give no page an earlier run gave
// (common/page_set.h), before a byte is copied. Nothing is stored. At close
// the whole image is decoded (fixed parts, hashed as written) and its
// checksum and record count verified; only then does the task go on. Any
// failure (a bad record, a bad checksum, an early close, the slot removed or
// truncated) kills and reaps the task, and the restore's guards undo what
// stage 1 made.
//
// streamtree: a tree's image of version 16 holds every process's records
// before its page sections (docs/trees.md): the stream starts at the first
// section's first pages record, the whole tree is made and each live
// process's VMAs wait for their pages; each section's runs go into its own
// process (the `member-pages` record that opens it: section()), checked
// against that process's VMAs, with a page set per process. At close every
// process goes on, or the whole tree is killed.
//
// An image whose records before the pages cannot be planned from alone (a
// tree before version 16, a chain, a System V segment, shared memory a
// tree's process owns: restore.cc `streamable`), or whose restore fails
// before its tasks exist, is spooled as before and restored at close, which
// then says why.
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
    Status section(uint32_t process) override;

    // The image arrived whole: `verified` is the outcome of its decode. Ok:
    // the task goes on and its pid is returned; an error: the task is killed
    // and the error returned.
    Result<pid_t> finish(Status verified);
    // The task made for this image (a tree's root), once its VMAs wait for
    // the pages (0 before): under its pid the tree shows the slot, not the
    // task (ops.cc hidden_by_task), so a name looked up meanwhile stays the slot's.
    pid_t task_pid();
    // The restore's reads of restart_syscall code (RestoreStream::restart_code).
    const std::vector<std::pair<uint32_t, uint64_t>>& restart_code() const {
        return rs_.restart_code;
    }
    // A record the streamed restore cannot take came after the page data
    // (record()): refused at close, unless the image is refused for another
    // fault first (the decode at close names it as the spooled restore does).
    const std::optional<Error>& refusal() const { return refusal_; }
    // streamtree: the tree's restore failed once its processes were made
    // (RestoreStream::final_failure): the image's outcome, not tried again.
    const std::optional<Error>& failed() const { return failed_; }

  private:
    void give_up(Error why);
    void pick_section();  // cur_ from section_ (under mu_ or once ready)
    Status copy_in(uint64_t dst, const char* src, uint64_t len, bool uffd);

    RestoreRequest req_;
    RestoreStream rs_;
    Lease running_;
    std::thread thread_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool ready_ = false, done_ = false;
    std::optional<Status> decision_;  // the slot's word to a waiting restore
    // Each task of the image (a tree's: in image order) and the pages its runs gave.
    struct Task {
        StreamReady ready;
        PageSet given;
    };
    std::vector<Task> tasks_;
    Task* cur_ = nullptr;  // the task of the current section (a single process: its one)
    std::optional<uint32_t> section_;  // the process of the last member-pages record
    std::optional<Result<pid_t>> result_;
    // A page cut between two writes (UFFDIO_COPY copies whole pages).
    alignas(64) char partial_[4096];
    size_t partial_len_ = 0;
    uint64_t partial_dst_ = 0;
    bool vma_uffd_ = false;  // the current run is in a VMA of the task's userfaultfd
    bool skip_run_ = false;  // the current run lies outside the VMAs or gives a page twice:
                             // refused at close
    std::optional<Error> refusal_;
    std::optional<Error> failed_;
};

}  // namespace crfs::fs
