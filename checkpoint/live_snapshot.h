// The live snapshot (issue 13; docs/performance.md "Live snapshot"): the task
// is frozen only while its metadata is collected; its private memory is
// write-protected with userfaultfd and streamed after the thaw, and a page the
// task is about to write before the stream reached it is copied first
// (copy-before-write). The image is the task as of the freeze instant.
//
// While frozen:
//   take_task_uffd   a userfaultfd made inside the task (remote syscall, with
//                    the task's own rights: the kernel decides), taken over
//                    with pidfd_getfd, the task's copy closed. Only this
//                    process holds it: when it exits, however it exits, the
//                    kernel drops every protection and wakes the task.
//   protect_memory   registers the VMAs holding the pages to store, write-
//                    protects them, copies what uffd cannot protect (shared
//                    memory, mappings the kernel refuses) right away. Private
//                    anonymous VMAs are protected whole, unscanned: which of
//                    their pages existed at the freeze is asked after the
//                    thaw (still write-protected, or saved by the fault
//                    thread), so no walk of their pages but the write-protect
//                    itself happens while frozen.
// After the thaw:
//   LiveMemory       a thread answers write faults (copy the page if it was
//                    not sent yet, then un-protect it, which wakes the task);
//                    stream() sends the pages in address order, each one
//                    un-protected once sent, so the task runs freely behind
//                    the stream. munmap/mremap/madvise(DONTNEED) of a page not
//                    yet sent makes the stream fail with EAGAIN (its content
//                    as of the freeze is gone), and so does a page taken with
//                    no event (a guard region, another userfaultfd's
//                    UFFDIO_MOVE): the reader may open again (it gets EBUSY,
//                    fs/ops.cc).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string_view>
#include <thread>
#include <vector>

#include "checkpoint/image_sink.h"
#include "common/procfs.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "crfs/image_format.h"
#include "state/memory_dump.h"

namespace crfs {

class RemoteSyscall;

class ParasiteArea;  // checkpoint/parasite.h

// The live snapshot's userfaultfd: write faults delivered, mapping changes told.
inline constexpr uint64_t kLiveUffdFeatures = (1u << 0) | (1u << 2) | (1u << 3) | (1u << 6);

// Creates the task's userfaultfd and takes it over (see above). An invalid fd
// when the kernel refuses one that handles kernel-mode faults too (a task
// without CAP_SYS_PTRACE gets only UFFD_USER_MODE_ONLY, where a read(2) into
// a protected page fails with EFAULT instead of waiting: unusable), logged;
// the caller then copies memory while frozen. An error only if the task's
// copy could not be closed.
// `features`, `flags`: what UFFDIO_API and userfaultfd(2) get (the delta
// tracking, checkpoint/incremental.h, asks for asynchronous write-protect).
// `area`: the parasite's area, mapped in the task by its main thread's run
// (`rs`'s): the userfaultfd and its close then run there as batches
// (checkpoint/parasite.h run_batch), a stop each (as a stepped remote
// syscall's; two for one through its entry and exit).
Result<UniqueFd> take_task_uffd(pid_t pid, RemoteSyscall& rs, uint64_t features = kLiveUffdFeatures,
                                int flags = 0, const ParasiteArea* area = nullptr);

// The userfaultfd(2) argument take_task_uffd passes with `flags`.
uint64_t task_uffd_flags(int flags = 0);

// take_task_uffd once the task made its userfaultfd: `made` is the raw
// result of userfaultfd(task_uffd_flags(...)) in the task (a parasite's
// batch made it: checkpoint/parasite.h, one stop fewer). The same result.
Result<UniqueFd> adopt_task_uffd(pid_t pid, RemoteSyscall& rs, int64_t made, uint64_t features,
                                 const ParasiteArea* area);

// Protected ahead of the freeze (docs/performance.md "Frozen time: protected
// ahead"). In a process holding much memory the write-protect walk (~10-18 ms
// per GiB) was most of the frozen window. So before the freeze the task is
// stopped only to make its userfaultfd (take_task_uffd, in its main thread;
// the others run on), let go, and its big private anonymous areas are
// registered and write-protected while it runs; a write meanwhile is answered
// by un-protecting the page (nothing is kept: the freeze has not come yet).
// protect_memory, given the uffd once the task is frozen, protects again only
// what is in the page tables and not write-protected (PAGEMAP_SCAN): the pages
// written meanwhile, and any an area mapped, moved or refused meanwhile holds.
// What the ahead phase did or failed to do changes how much that is, never
// what the image holds. A sleeping task is then stopped once more with
// nothing injected, so that it passes through user mode before the freeze
// (on this VM its first run after the protection stalls: see the .cc). A
// task with a seccomp filter is not stopped ahead (the filter could kill it
// for the injected syscall before the freeze's check).
class ProtectAhead {
  public:
    // Null, logged, when it does not apply or cannot be had (no userfaultfd
    // for the task, it could not be stopped): the checkpoint protects while
    // frozen, as without it. An error when the task could not be put back as
    // it was after the injected syscalls (the checkpoint fails, as it would
    // while frozen). `min_bytes`: the RSS from which it is tried; `status`:
    // the task's, read just before by the caller.
    static Result<std::unique_ptr<ProtectAhead>> start(pid_t pid, const ProcStatus& status,
                                                       uint64_t min_bytes);
    ~ProtectAhead();  // stops answering, closes the uffd: every protection dropped
    ProtectAhead(const ProtectAhead&) = delete;
    ProtectAhead& operator=(const ProtectAhead&) = delete;

    // Once the task is frozen and its remote syscalls are done (their scratch
    // may be in memory protected here): stops answering its faults and gives
    // the uffd (for protect_memory). Once.
    UniqueFd take();
    // How long the task was stopped (both stops): frozen time too.
    uint64_t stopped_ns() const { return stopped_ns_; }
    // The task it protects (its start time tells a reused pid).
    pid_t pid() const { return pid_; }
    uint64_t starttime() const { return starttime_; }
    // How many were started in this process (tests).
    static uint64_t started();
    // Whether `pid`'s area [start, end) is registered to this uffd (detect's
    // "uw", state/memory.h set_ours_registered): the kernel answers.
    bool owns(pid_t pid, uint64_t start, uint64_t end) const;

  private:
    ProtectAhead(pid_t pid, uint64_t starttime, UniqueFd uffd, uint64_t stopped_ns);
    void serve_faults();
    pid_t pid_;
    uint64_t starttime_;
    UniqueFd uffd_, stop_;
    uint64_t stopped_ns_;
    std::thread thread_;
};

// The frozen half (see above); `uffd` may be ProtectAhead's. Pages that stay
// in the task are in the result's `live`; the rest in its runs/buffer as
// dump_memory puts them. If write-protecting fails, everything is copied now
// and `live` is null.
Result<MemoryDump> protect_memory(pid_t pid, std::vector<MapsEntry> maps, PageBuffer buffer,
                                  UniqueFd uffd);

// Write-protected pages of one registered VMA, streamed after the thaw.
// `ask`: the run is a whole private anonymous area, which may hold pages that
// were not in the page tables at the freeze: what is still write-protected,
// or was saved, is what the image holds (the rest was zero at the freeze), so
// the stream asks the page tables (PAGEMAP_SCAN); a page held at the freeze
// (LiveMemory's `held`) that is neither fails the stream. Otherwise every
// page of the run was present or swapped at the freeze (the frozen scan found
// it) and the stream sends it without asking again. Either way a page loses
// its protection through the fault thread (which saves it first), the stream
// itself, an unmap/remap/discard (whose event fails the stream while it is
// unsent), or with no event (a guard region, UFFDIO_MOVE): every page read is
// checked to be still protected after the read (LiveMemory::check_kept).
struct LiveRun {
    uint64_t vaddr;
    uint64_t nr_pages;
    bool ask;
    bool readv = true;  // process_vm_readv may read it (state/memory_dump.h readv_can_read)
};

class LiveMemory {
  public:
    // `runs`: in address order (see LiveRun).
    // `held`: the pages of the `ask` runs in the page tables at the freeze
    // (ranges in address order).
    LiveMemory(pid_t pid, UniqueFd uffd, UniqueFd mem, UniqueFd pagemap, std::vector<LiveRun> runs,
               std::vector<std::pair<uint64_t, uint64_t>> held);
    ~LiveMemory();  // stops answering faults, closes the uffd: the task runs unprotected
    LiveMemory(const LiveMemory&) = delete;
    LiveMemory& operator=(const LiveMemory&) = delete;

    // Sends every protected page as pages records into `sink`, in address
    // order (all-zero pages dropped, counted in stats.pages_zero). Once.
    Status stream(ImageSink& sink, image::StatsRecord& stats);

    uint64_t pages() const { return pages_; }
    // Pages copied before the task wrote them and not streamed yet.
    size_t saved_pages() const;
    // Faults answered so far (for tests and the bench).
    uint64_t faults() const { return faults_; }
    // Answers now, while the task is frozen, the faults it would take first
    // at these addresses (as serve_faults would: the pages around each saved,
    // then un-protected). perf: each thread's rseq area, which the kernel
    // writes as the thread returns to user mode: on the way back into an
    // interrupted syscall at the thaw, where each such fault was a round trip
    // through the fault thread that the release waited for (a 16 x 16 MiB
    // tree's thaw: ~7 ms, ~4 ms without rseq, on this VM).
    void save_ahead(std::span<const uint64_t> addrs);

  private:
    void serve_faults();
    // A write fault at `addr` answered (mu_ held): the unsent pages of its
    // run around it saved, then un-protected; a refused un-protect (an event
    // pending) is added to `retry`.
    void answer(uint64_t addr, std::vector<std::pair<uint64_t, uint64_t>>& retry);
    bool in_runs(uint64_t page) const;
    // Whether every run [va, end) meets may be read by process_vm_readv.
    bool readv_in(uint64_t va, uint64_t end) const;
    bool unsent(uint64_t page) const;  // mu_ held
    void check_gone(uint64_t start, uint64_t end, const char* what);
    Status check_held(uint64_t at, uint64_t end,
                      const std::vector<std::pair<uint64_t, uint64_t>>& ranges);  // mu_ not held
    Status check_kept(uint64_t va, uint64_t end);                                 // mu_ held
    Status unprotect(uint64_t start, uint64_t end);
    Result<bool> take(uint64_t va, uint64_t end, char* buf);  // mu_ held
    void save(uint64_t start, uint64_t end);                  // mu_ held

    pid_t pid_;
    UniqueFd uffd_, mem_, pagemap_, stop_;
    std::vector<LiveRun> runs_;
    // The `ask` runs' pages in the page tables at the freeze, in address order.
    std::vector<std::pair<uint64_t, uint64_t>> held_;
    uint64_t pages_ = 0;
    mutable std::mutex mu_;                              // guards the fields below
    uint64_t frontier_ = 0;                              // every protected page below was sent
    std::map<uint64_t, std::unique_ptr<char[]>> saved_;  // by address
    std::optional<Error> abort_;                         // the stream cannot be completed
    std::atomic<uint64_t> faults_{0};
    std::thread thread_;
};

}  // namespace crfs
