// Threads (docs/state.md "threads"), both halves; detect is state/threads.cc's
// detect_threads (what a thread holds apart from the main thread).
//
// Dump: every thread of a task, frozen together, and the per-thread state the
// image holds for each (docs/image-format.md, thread record).
//
// Freezing: the main thread first, then every tid of /proc/<pid>/task, listed
// again until a listing finds no thread that is not frozen yet: a thread that
// was being created by a thread we froze shows up in the next listing (clone
// returns to user space, where the interrupt stops it, only after the new
// thread is in the list), and frozen threads create none. A thread that exits
// before it is seized is skipped.
//
// Per thread: the general registers (with fs/gs base) and xstate, the blocked
// mask, the private pending signals, the alternate signal stack (sigaltstack,
// run inside that thread), clear_child_tid (PR_GET_TID_ADDRESS, inside),
// timer slack, I/O priority and pdeathsig (state/thread_attrs.h, inside), the
// robust list (get_robust_list), rseq (PTRACE_GET_RSEQ_CONFIGURATION) and comm.
// What is asked inside is asked in one run of the parasite in that thread
// (checkpoint/parasite.h: its altstack and batch), one syscall at a time only
// where the task may not map executable memory.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "checkpoint/freeze.h"
#include "checkpoint/remote_syscall.h"
#include "common/image_reader.h"
#include "common/procfs.h"
#include "common/result.h"
#include "crfs/image_format.h"
#include "crfs/restorer_args.h"
#include "restorer/restore.h"
#include "state/regs.h"
#include "state/thread_attrs.h"

namespace crfs {

// The tids of /proc/<pid>/task; the task being gone is ESRCH.
Result<std::vector<pid_t>> list_tids(pid_t pid);

class FrozenThreads {
  public:
    static Result<FrozenThreads> freeze(pid_t pid, bool suspend_seccomp);
    FrozenTask& main() { return *all_.front(); }
    // Every thread but the main one, in tid order of discovery.
    std::vector<FrozenTask*> others() const;
    // Releases every thread; the first failure is returned.
    Status release();
    // Longest frozen time of any thread.
    uint64_t frozen_ns() const;

  private:
    std::vector<std::unique_ptr<FrozenTask>> all_;
};

// One thread other than the main one.
struct ThreadCapture {
    image::ThreadRecord rec{};
    TaskRegs regs;
    image::SigstateRecord sigstate{};
    std::vector<image::SiginfoRecord> pending;  // its private queue
    image::ThreadAttrsRecord attrs{};           // fid: state/thread_attrs.h
};

// The thread record's fields read from outside: robust list, rseq, comm
// (clear_child_tid comes from read_tid_address).
// `comm`: the thread's name where it was read already (the main thread's is
// its process's stat comm, read while frozen); null: /proc/<pid>/task/<tid>/comm.
Result<image::ThreadRecord> read_thread_record(pid_t pid, pid_t tid,
                                               const std::string* comm = nullptr);

// clear_child_tid of thread `tid`, which `in` runs syscalls in
// (PR_GET_TID_ADDRESS). Its slack, I/O priority and pdeathsig:
// state::dump_thread_attrs.
Result<uint64_t> read_tid_address(pid_t tid, const state::InTask& in);

class ParasiteArea;  // checkpoint/parasite.h

// Everything of one frozen thread that is not the main one. `frozen`: its
// status as read while frozen (state::TaskView::thread_status), for the
// parasite's SIGTRAP question; null: read now. `area`: the parasite's area
// the main thread kept mapped, where this thread runs it (try_parasite_in);
// null or unmapped: an area of its own.
Result<ThreadCapture> capture_thread(pid_t pid, FrozenTask& t, uint64_t vdso_start,
                                     uint64_t vdso_end, const ProcStatus* frozen = nullptr,
                                     const ParasiteArea* area = nullptr);

// --- restore -----------------------------------------------------------------

// Restore: threads at restore (docs/trees.md): the blob creates every thread but the
// main one with clone3 and its original tid, each with a stack of its own in
// the blob's area and a signal frame of its own built here; each sets its
// fs/gs base, robust list, rseq, clear_child_tid, comm and credentials and
// waits on the sync page until the main thread passed the point of no return.

// glibc keeps every thread's tid in its memory (struct pthread: pthread_kill,
// mutex owners, robust futex words), so threads come back only with their
// original tids, which only a writer who may choose pids gets: anything else
// is EPERM with the reason.
Status check_thread_ids(const DecodedImage& img, const RestoreRequest& req);

// Bytes fill_threads takes from the blob's area (an upper bound).
uint64_t threads_area_bytes(const DecodedImage& img);

// Allocates with `take(bytes, align)` (addresses valid in the new task) and
// fills a.threads, a.nr_threads and the main thread's registrations.
using AreaAlloc = std::function<void*(size_t bytes, size_t align)>;
Status fill_threads(const DecodedImage& img, const AreaAlloc& take, crfs_restorer_args& a);

// --- check (hostile images) --------------------------------------------------

// Every thread record: tid, robust list, rseq, clear_child_tid within the
// kernel's sizes and user addresses; registers, alternate stack and private
// pending signals as the main thread's.
Status check_threads(const DecodedImage& img);

}  // namespace crfs
