// The parasite: a few dozen instructions run inside the frozen task that make
// every syscall the checkpoint needs from the inside (rt_sigaction of all 64
// signals, sigaltstack, getitimer x3, brk) in one go and stop on an int3.
// Injecting them one by one costs two ptrace stops each (~136 stops); the
// parasite costs three (mmap, run, munmap: its mmap and munmap are stepped,
// a stop each, RemoteSyscall::step_calls; five before session 42), and one
// in each other thread of the task, which runs it in the main thread's area
// (ParasiteArea). Where it runs, the thread's later remote syscalls are
// stepped too, and its registers go back without one more stop (finish()).
//
// After those it runs a batch: the read-only questions the state kinds ask
// the task (timer slack, THP disable, dumpable, child subreaper, membarrier
// registrations, clear_child_tid, I/O priority, pdeathsig: state/settings.cc,
// state/threads.cc, state/thread_attrs.cc), each a syscall of the table crfs
// writes into the output page. ParasiteAnswers hands their results to those
// kinds through their state::InTask: a call the batch made is answered from
// it, once, with the raw result the task got; any other call is injected as
// before, so what the kinds read does not depend on the batch, only how many
// stops it costs (docs/trees.md "Bench").
//
// Last in the batch, the lock probe: madvise(MADV_DONTNEED) of the area's
// third page, which nothing writes. It fails (EINVAL) only where the area is
// VM_LOCKED, that is where mlockall(MCL_FUTURE) set the task's def_flags, so
// its 0 answers state/mlockall.h's question without reading smaps
// (lock_probe_result).
//
// It is mapped into the task with a remote mmap (a 12 KiB anonymous RWX area:
// code page, output page, lock probe page; right below the task's lowest mapping where
// the caller knows it, else hinted low, as state/mlockall.cc's probe page:
// either way its smaps entry comes first), written through /proc/<pid>/mem,
// run with PTRACE_CONT, read back and unmapped; the VMA layout is as before. The code
// lives in .rodata of crfs, is never executed in crfs itself, uses only
// relative jumps and no stack.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>

#include "checkpoint/remote_syscall.h"
#include "common/procfs.h"
#include "common/result.h"
#include "crfs/image_format.h"
#include "state/timers.h"  // state::InTask

namespace crfs {

// The parasite's area in the task: its code page, its output page, and the
// lock probe's page (never written: only the batch's madvise asks of it).
inline constexpr uint64_t kParasiteAreaBytes = 3 * 4096;

// What the parasite writes, at fixed offsets the assembly relies on.
struct ParasiteOutput {
    image::KernelSigaction actions[64];  // 0: rt_sigaction(sig, NULL, &actions[sig-1], 8)
    int64_t action_ret[64];              // 2048
    uint64_t altstack_sp;                // 2560: stack_t
    int32_t altstack_flags;
    int32_t altstack_pad;
    uint64_t altstack_size;
    int64_t altstack_ret;   // 2584
    int64_t itimers[3][4];  // 2592: struct itimerval x3
    int64_t itimer_ret[3];  // 2688
    int64_t brk;            // 2712: brk(0)
    // The batch: batch_count calls of `batch`, written by crfs, each one's
    // result in its `ret`; a pointer argument points into `batch_out`.
    static constexpr size_t kMaxBatch = 16;
    struct Call {
        int64_t nr;
        uint64_t args[6];
        int64_t ret;
    };
    int64_t batch_count;  // 2720
    int64_t batch_pad[3];
    Call batch[kMaxBatch];          // 2752
    uint64_t batch_out[kMaxBatch];  // 3776
};
static_assert(sizeof(ParasiteOutput) == 3904);

// Runs once the parasite ran, while its area is still mapped in the task (at
// `area`; a mapping the task made just now, so with its mm->def_flags:
// state/mlockall.h reads them there instead of mapping a probe page), with
// its output (unchecked: before check() may fail the run, so that what the
// `also` call made, see below, is never left in the task).
using WhileMapped = std::function<Status(uint64_t area, const ParasiteOutput& out)>;

// The raw result of the batch's lock probe (see above): 0 where the area is
// not VM_LOCKED (so the task's def_flags hold no mlockall flag), else the
// error; nothing where the batch did not run it.
std::optional<int64_t> lock_probe_result(const ParasiteOutput& o);

// The raw result of run_parasite's `also` call (the batch entry after the
// kinds' questions), or nothing where the batch did not make it.
std::optional<int64_t> also_result(const ParasiteOutput& o);

class ParasiteArea;

// Runs the parasite. Falls back to one remote syscall at a time where the task
// may not map executable memory, or catches, ignores or has pending SIGTRAP
// (the parasite's int3 would change or take it) (no batch then: batch_count 0,
// and `while_mapped` is not run).
// `frozen`: the thread's status as a view read it while the task was frozen
// (state::TaskView), which answers the SIGTRAP question; null: read it now.
// `keep`: as try_parasite's.
// `also`: one more call the batch makes after the kinds' questions (a stop
// fewer than making it after: checkpoint.cc's userfaultfd); only where the
// parasite ran, its raw result then in also_result(), for `while_mapped` to
// undo what it made. ParasiteAnswers never answers a kind's call from it. A
// run that fails before `while_mapped` (the task killed, the code faulted)
// may leave what it made in the task; the checkpoint fails with that error.
// `lowest`: the start of the task's lowest mapping, as its maps read while
// frozen say (0: not known). perf: the area is mapped right below it
// (MAP_FIXED_NOREPLACE: never over anything), where the task's page tables
// already reach, so its first write allocates no page-table pages and its
// munmap frees none (nor flushes for them); at the low hint, nothing else
// of the task is that low, so both did (this VM: a 64 x 1 MiB tree's
// "members captured" 67 -> 52.5 ms, docs/performance.md "Session 45").
// Where that spot cannot be had (taken, or under vm.mmap_min_addr), the
// low hint as before, a stop more. CRFS_PARASITE_LOW=1 in crfsd's
// environment: always the low hint (the old path).
Result<ParasiteOutput> run_parasite(RemoteSyscall& rs, const WhileMapped& while_mapped = {},
                                    const ProcStatus* frozen = nullptr,
                                    ParasiteArea* keep = nullptr,
                                    const ParasiteOutput::Call* also = nullptr,
                                    uint64_t lowest = 0);

// The parasite's area kept mapped after the main thread's run, for the
// task's other threads, which share its memory: each runs the code already
// there, one stop (its int3) instead of three (no mmap, no munmap of its own).
// Unmapped through the RemoteSyscall of the thread that mapped it, which must
// outlive it: by unmap(), or by the destructor (which logs a failure).
class ParasiteArea {
  public:
    ParasiteArea() = default;
    ParasiteArea(const ParasiteArea&) = delete;
    ParasiteArea& operator=(const ParasiteArea&) = delete;
    ~ParasiteArea();
    bool mapped() const { return rs_ != nullptr; }
    uint64_t base() const { return base_; }
    Status unmap();

  private:
    friend Result<std::optional<ParasiteOutput>> try_parasite(RemoteSyscall&, const WhileMapped&,
                                                              const ProcStatus*, ParasiteArea*,
                                                              const ParasiteOutput::Call*,
                                                              uint64_t);
    RemoteSyscall* rs_ = nullptr;  // of the thread that mapped it
    uint64_t base_ = 0;
};

// The parasite, or nothing where the task may not map executable memory or
// catches, ignores or has pending SIGTRAP. `keep`: the area is not unmapped
// after the run but kept there (for the other threads: try_parasite_in).
// `lowest`: as run_parasite's.
Result<std::optional<ParasiteOutput>> try_parasite(
    RemoteSyscall& rs, const WhileMapped& while_mapped = {}, const ProcStatus* frozen = nullptr,
    ParasiteArea* keep = nullptr, const ParasiteOutput::Call* also = nullptr, uint64_t lowest = 0);

// The same in another thread of the task, in `area` (the code is there
// already) when it is mapped; else (null too) in an area of its own, as
// try_parasite.
Result<std::optional<ParasiteOutput>> try_parasite_in(RemoteSyscall& rs, const ParasiteArea* area,
                                                      const ProcStatus* frozen);

// Whether the thread `tid` of status `st` catches, ignores or has pending
// SIGTRAP (SigCgt, SigIgn, its own SigPnd): the parasite ends in int3, whose
// SIGTRAP the kernel forces (force_sig): blocked (every signal is while crfs
// injects) or ignored, the task's SIGTRAP action is reset to SIG_DFL, and a
// SIGTRAP the thread has pending merges with it (the stop, which discards
// ours, would discard that one). With the default action and none pending,
// nothing of the task's changes. A status read while the task was frozen
// answers as one read now: SigCgt and SigIgn change only by a sigaction of
// the task (or of a process sharing its handlers: a member, frozen too), and
// nothing crfs does before the parasite queues a signal. A SIGTRAP sent to
// the thread meanwhile merges with the int3's; the stop shows its siginfo and
// RemoteSyscall hands it back to the task (docs/checkpoint.md).
Result<bool> sigtrap_in_use(const ProcStatus& st, pid_t tid);

// Runs only `calls` (nr and args; at most kMaxBatch) in the parasite's area
// at `area`, mapped by a run of the parasite in this task (ParasiteArea):
// one stop, where each as a remote syscall costs two. Each call's raw result
// (negative errno on failure) goes into its `ret`. For a thread that may run
// the parasite (try_parasite ran it, or would).
Status run_batch(RemoteSyscall& rs, uint64_t area, std::span<ParasiteOutput::Call> calls);

// The same results gathered with single remote syscalls (the fallback; also
// what the parasite is tested against). Runs no batch.
Result<ParasiteOutput> run_single_syscalls(RemoteSyscall& rs);

// A state::InTask running each call in the task, one remote syscall each.
state::InTask live_in_task(RemoteSyscall& rs);

// The parasite's batch as a state::InTask of the task `rs` runs in: a call
// (nr, a1, a2) the batch made is answered from `o` (once; a2 == in().scratch
// stands for its pointer argument, whose 8 bytes read_scratch then gives);
// any other call runs in the task.
class ParasiteAnswers {
  public:
    ParasiteAnswers(RemoteSyscall& rs, const ParasiteOutput& o);
    ParasiteAnswers(const ParasiteAnswers&) = delete;
    ParasiteAnswers& operator=(const ParasiteAnswers&) = delete;
    const state::InTask& in() const { return in_; }
    // How many calls were answered from the batch (tests, traces).
    int answered() const { return answered_; }

  private:
    Result<int64_t> call(long nr, uint64_t a1, uint64_t a2);
    Status read_scratch(void* out, size_t len) const;
    RemoteSyscall& rs_;
    ParasiteOutput o_;
    bool used_[ParasiteOutput::kMaxBatch] = {};
    std::optional<uint64_t> out_;  // the pointer output of the last answered call
    int answered_ = 0;
    state::InTask in_;
};

}  // namespace crfs
