#include "checkpoint/remote_syscall.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "checkpoint/task_attrs.h"
#include "common/io.h"
#include "common/log.h"
#include "common/strfmt.h"

namespace crfs {

namespace {

// Bound on stops that are not ours (job-control traps) per injected syscall.
constexpr int kMaxForeignStops = 64;

// Test only: CRFS_TEST_TRAP_BEFORE_CODE=FILE in crfsd's environment: while
// FILE exists, the checkpoint sends the thread a SIGTRAP of its own (tkill)
// just before it runs injected code: one that arrives after parasite.h's
// check (tests/fs/trap_race_mount_test.py).
void test_trap_before_code(pid_t tid) {
    static const char* path = getenv("CRFS_TEST_TRAP_BEFORE_CODE");
    if (!path || access(path, F_OK) != 0) return;
    log_error("checkpoint: CRFS_TEST_TRAP_BEFORE_CODE: SIGTRAP sent to task %d by pid %d", int(tid),
              int(getpid()));
    syscall(SYS_tkill, tid, SIGTRAP);
}

// Every signal blocked in the traced thread while injected code runs (its
// mask comes back with finish()).
Status block_all(pid_t pid) {
    uint64_t all = ~uint64_t(0);
    if (ptrace(PTRACE_SETSIGMASK, pid, sizeof all, &all) != 0)
        return errno_error(strfmt("block signals of task {}", pid));
    return {};
}

}  // namespace

Status RemoteSyscall::mem_io(uint64_t addr, void* buf, size_t len, bool write) const {
    // /proc/<pid>/mem rather than process_vm_*: it works on any page the
    // tracer may access, whatever its protection.
    if (!mem_) {
        auto f = open_fd(proc_path(task_.pid(), "mem"), O_RDWR);
        if (!f) return std::unexpected(f.error());
        mem_ = std::move(*f);
    }
    ssize_t n = write ? pwrite(mem_.get(), buf, len, off_t(addr))
                      : pread(mem_.get(), buf, len, off_t(addr));
    if (n != ssize_t(len))
        return make_error(
            EIO, strfmt("{} {} bytes at {:x} of task {}: {}", write ? "write" : "read", len, addr,
                        task_.pid(), n < 0 ? std::strerror(errno) : "short"));
    return {};
}

Result<std::unique_ptr<RemoteSyscall>> RemoteSyscall::prepare(FrozenTask& task, uint64_t vdso_start,
                                                              uint64_t vdso_end) {
    std::unique_ptr<RemoteSyscall> rs(new RemoteSyscall(task));
    pid_t pid = task.pid();
    if (ptrace(PTRACE_GETREGS, pid, nullptr, &rs->saved_regs_) != 0)
        return errno_error(strfmt("get registers of task {}", pid));
    if (ptrace(PTRACE_GETSIGMASK, pid, sizeof rs->saved_mask_, &rs->saved_mask_) != 0)
        return errno_error(strfmt("get signal mask of task {}", pid));

    // A `syscall` instruction (0f 05) in the vdso: executing it from there
    // changes no byte of the task. The kernel's vdso has one in its fallbacks.
    // perf: where it lay in the last vdso of this size is looked at first (the
    // kernel maps one image into every 64-bit task: two bytes read, not the
    // whole vdso); the vdso is searched if they are not 0f 05 there.
    // One word (size << 32 | offset): a vdso of another size (an x32 task's)
    // never pairs with this one's offset.
    static std::atomic<uint64_t> last{0};
    const uint64_t size = vdso_end - vdso_start;
    if (vdso_end > vdso_start && size <= (1u << 20)) {
        uint64_t known = last.load(std::memory_order_relaxed);
        uint64_t off = known & 0xffffffff;
        unsigned char two[2] = {};
        if (known >> 32 == size && off + 2 <= size && rs->mem_io(vdso_start + off, two, 2, false) &&
            two[0] == 0x0f && two[1] == 0x05) {
            rs->syscall_addr_ = vdso_start + off;
        } else {
            std::vector<unsigned char> text(size);
            if (rs->mem_io(vdso_start, text.data(), text.size(), false))
                for (size_t i = 0; i + 1 < text.size(); ++i)
                    if (text[i] == 0x0f && text[i + 1] == 0x05) {
                        rs->syscall_addr_ = vdso_start + i;
                        last.store(size << 32 | i, std::memory_order_relaxed);
                        break;
                    }
        }
    }
    if (rs->syscall_addr_ == 0) {
        // No vdso: borrow two bytes at rip, which is mapped executable.
        rs->syscall_addr_ = rs->saved_regs_.rip;
        errno = 0;
        rs->saved_text_ = ptrace(PTRACE_PEEKTEXT, pid, rs->syscall_addr_, nullptr);
        if (errno) return errno_error(strfmt("peek text of task {}", pid));
        long patched = (rs->saved_text_ & ~0xffffl) | 0x050f;
        if (ptrace(PTRACE_POKETEXT, pid, rs->syscall_addr_, patched) != 0)
            return errno_error(strfmt("poke text of task {}", pid));
        rs->patched_ = true;
    }

    // Scratch below the 128-byte red zone, where a signal frame could go anyway.
    rs->scratch_ = (rs->saved_regs_.rsp - 128 - kScratchSize) & ~uint64_t(63);
    if (auto r = rs->mem_io(rs->scratch_, rs->saved_scratch_, kScratchSize, false); !r) {
        if (rs->patched_) ptrace(PTRACE_POKETEXT, pid, rs->syscall_addr_, rs->saved_text_);
        return std::unexpected(r.error().context("scratch area on the stack"));
    }
    rs->active_ = true;

    if (auto r = block_all(pid); !r) {
        (void)rs->finish();
        return std::unexpected(r.error());
    }
    return rs;
}

Result<int> RemoteSyscall::wait_stop() {
    ++stops_;
    return task_.wait_stop();
}

void RemoteSyscall::step_calls() {
    step_ = !getenv("CRFS_REMOTE_SYSCALL_TWO_STOPS");  // read each time: tests set it
}

Result<int64_t> RemoteSyscall::call(long nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
                                    uint64_t a5, uint64_t a6) {
    pid_t pid = task_.pid();
    user_regs_struct r = saved_regs_;
    r.rip = syscall_addr_;
    r.rax = uint64_t(nr);
    r.orig_rax = ~uint64_t(0);  // no syscall in progress: nothing for the kernel to restart
    r.rdi = a1;
    r.rsi = a2;
    r.rdx = a3;
    r.r10 = a4;
    r.r8 = a5;
    r.r9 = a6;
    if (ptrace(PTRACE_SETREGS, pid, nullptr, &r) != 0)
        return errno_error(strfmt("set registers of task {}", pid));
    ++calls_;
    if (step_) return step_call(nr);

    in_signal_path_ = false;
    bool entered = false;
    for (int foreign = 0; foreign < kMaxForeignStops;) {
        if (ptrace(PTRACE_SYSCALL, pid, nullptr, nullptr) != 0)
            return errno_error(strfmt("resume task {} for a remote syscall", pid));
        auto st = wait_stop();
        if (!st) return std::unexpected(st.error());
        int sig = WSTOPSIG(*st);
        if (sig == (SIGTRAP | 0x80)) {
            __ptrace_syscall_info info{};
            if (ptrace(PTRACE_GET_SYSCALL_INFO, pid, sizeof info, &info) <= 0)
                return errno_error(strfmt("syscall info of task {}", pid));
            if (info.op == PTRACE_SYSCALL_INFO_ENTRY) {
                if (info.entry.nr != uint64_t(nr))
                    return make_error(
                        EIO, strfmt("task {} entered syscall {}, not {}", pid, info.entry.nr, nr));
                entered = true;
                continue;
            }
            if (info.op == PTRACE_SYSCALL_INFO_EXIT && entered) return info.exit.rval;
            return make_error(EIO, strfmt("task {}: unexpected syscall stop", pid));
        }
        ++foreign;
        if ((*st >> 16) == PTRACE_EVENT_STOP) continue;  // a job-control trap: go on
        if ((*st >> 16) == 0) {
            // Signal-delivery-stop. Only SIGSTOP gets through the full mask (SIGKILL
            // does not stop); keep it for after detach. Anything else is a fault
            // of the injected instruction.
            if (sig == SIGSTOP) {
                task_.note_swallowed_stop();
                continue;
            }
            return make_error(
                EIO, strfmt("remote syscall {} in task {} raised signal {}", nr, pid, sig));
        }
        return make_error(EIO, strfmt("task {}: unexpected ptrace stop {:x}", pid, *st));
    }
    return make_error(EIO, strfmt("task {}: remote syscall {} kept being interrupted", pid, nr));
}

Result<int64_t> RemoteSyscall::step_call(long nr) {
    // With the trap flag set, the kernel reports the step at the syscall's
    // exit, before the task is back in user mode (syscall_exit_work:
    // user_single_step_report, a forced SIGTRAP with si_code TRAP_BRKPT): a
    // signal-delivery-stop in its signal path, rip just after the `syscall`.
    // Every signal is blocked first: the int3's or an earlier step's forced
    // SIGTRAP unblocked SIGTRAP, and one sent to the thread meanwhile must
    // wait for the syscall's exit, where it merges into the step's.
    pid_t pid = task_.pid();
    if (auto r = block_all(pid); !r) return std::unexpected(r.error());
    test_trap_before_code(pid);
    for (int foreign = 0; foreign < kMaxForeignStops; ++foreign) {
        if (ptrace(PTRACE_SINGLESTEP, pid, nullptr, nullptr) != 0)
            return errno_error(strfmt("resume task {} for a remote syscall", pid));
        auto st = wait_stop();
        if (!st) return std::unexpected(st.error());
        const int sig = WSTOPSIG(*st), event = *st >> 16;
        if (event == PTRACE_EVENT_STOP) continue;  // a job-control trap: go on
        if (event != 0)
            return make_error(EIO, strfmt("task {}: unexpected ptrace stop {:x}", pid, *st));
        if (sig == SIGSTOP) {  // only SIGSTOP gets through the full mask
            task_.note_swallowed_stop();
            continue;
        }
        user_regs_struct now{};
        if (ptrace(PTRACE_GETREGS, pid, nullptr, &now) != 0)
            return errno_error(strfmt("get registers of task {}", pid));
        if (sig != SIGTRAP || now.rip != syscall_addr_ + 2)
            return make_error(EIO, strfmt("remote syscall {} in task {} got signal {} at {:x}", nr,
                                          pid, sig, now.rip));
        in_signal_path_ = true;
        // A SIGTRAP sent to the thread merged into the step's: the task's,
        // handed back as at the int3.
        if (auto r = keep_sigtrap_unless(TRAP_BRKPT); !r) return std::unexpected(r.error());
        return int64_t(now.rax);
    }
    return make_error(EIO, strfmt("task {}: remote syscall {} kept being interrupted", pid, nr));
}

Status RemoteSyscall::run_code(uint64_t entry, uint64_t int3_end, uint64_t arg) {
    pid_t pid = task_.pid();
    user_regs_struct r = saved_regs_;
    r.rip = entry;
    r.rdi = arg;
    r.orig_rax = ~uint64_t(0);
    if (ptrace(PTRACE_SETREGS, pid, nullptr, &r) != 0)
        return errno_error(strfmt("set registers of task {}", pid));
    ++calls_;
    test_trap_before_code(pid);
    for (int foreign = 0; foreign < kMaxForeignStops; ++foreign) {
        if (ptrace(PTRACE_CONT, pid, nullptr, nullptr) != 0)
            return errno_error(strfmt("resume task {} to run injected code", pid));
        auto st = wait_stop();
        if (!st) return std::unexpected(st.error());
        int sig = WSTOPSIG(*st);
        if ((*st >> 16) == PTRACE_EVENT_STOP) continue;
        if ((*st >> 16) != 0)
            return make_error(EIO, strfmt("task {}: unexpected ptrace stop {:x}", pid, *st));
        if (sig == SIGSTOP) {
            task_.note_swallowed_stop();
            continue;
        }
        user_regs_struct now{};
        if (ptrace(PTRACE_GETREGS, pid, nullptr, &now) != 0)
            return errno_error(strfmt("get registers of task {}", pid));
        in_signal_path_ = true;
        if (sig == SIGTRAP && now.rip == int3_end) return keep_sigtrap_unless(SI_KERNEL);
        return make_error(
            EIO, strfmt("injected code in task {} got signal {} at {:x}", pid, sig, now.rip));
    }
    return make_error(EIO, strfmt("task {}: injected code kept being interrupted", pid));
}

Status RemoteSyscall::keep_sigtrap_unless(int ours) {
    // The int3's SIGTRAP is forced by the kernel (si_code SI_KERNEL; a step's
    // TRAP_BRKPT: step_call), the `ours` of the stop just taken. A
    // SIGTRAP sent to this thread alone (tgkill) after parasite.h's check,
    // while every signal was blocked, was pending when the int3 fired: a
    // standard signal is queued once, so ours merged into it and this stop
    // carries its siginfo. That signal is the task's: blocked again (force_sig
    // unblocked SIGTRAP) and handed back with this stop's siginfo, the kernel
    // queues it again (ptrace_signal requeues a blocked signal), and the
    // interrupt stops the task in its signal path before user space. Not told
    // apart: a SIGTRAP sent in the microseconds between the int3's and the
    // stop (merged into ours, whose siginfo the stop shows).
    pid_t pid = task_.pid();
    siginfo_t si{};
    if (ptrace(PTRACE_GETSIGINFO, pid, nullptr, &si) != 0)
        return errno_error(strfmt("signal information of task {}", pid));
    if (si.si_code == ours) return {};
    if (auto r = block_all(pid); !r) return r;
    return back_to_signal_stop(SIGTRAP);
}

Status RemoteSyscall::read_scratch(void* out, size_t len) const {
    if (len > kScratchSize) return make_error(EINVAL, "scratch read too large");
    return mem_io(scratch_, out, len, false);
}

Status RemoteSyscall::finish() {
    if (!active_) return {};
    active_ = false;
    pid_t pid = task_.pid();
    Status result;
    auto keep_first = [&](Status s) {
        if (!s && result) result = s;
    };
    // The scratch bytes written back, page by page, only where an injected
    // syscall changed them: a page write-protected ahead of the freeze
    // (checkpoint/live_snapshot.h ProtectAhead) refuses /proc/<pid>/mem's
    // write (a remote access cannot wait for the userfaultfd), and one the
    // task's syscall wrote was un-protected for that write by then.
    for (uint64_t at = scratch_; at < scratch_ + kScratchSize;) {
        uint64_t end = std::min(scratch_ + kScratchSize, (at | 4095) + 1);
        const char* was = saved_scratch_ + (at - scratch_);
        char now[kScratchSize];
        auto read = mem_io(at, now, end - at, false);
        if (!read || std::memcmp(now, was, end - at) != 0)
            keep_first(mem_io(at, const_cast<char*>(was), end - at, true));
        at = end;
    }
    if (patched_ && ptrace(PTRACE_POKETEXT, pid, syscall_addr_, saved_text_) != 0)
        keep_first(errno_error(strfmt("restore text of task {}", pid)));
    // Back in a stop inside the kernel's signal path, the registers as they
    // were let the kernel itself restart the syscall, or end it with EINTR for
    // a handler that runs first; failing that, the restart is done here.
    // perf: a task stopped there already (the last call a step, the last run
    // an int3) is not stopped once more; one in group-stop goes the old way.
    user_regs_struct regs = saved_regs_;
    if (calls_ > 0 && restart_fixup(regs).orig_rax != regs.orig_rax &&
        !(in_signal_path_ && step_ && !task_.was_stopped())) {
        auto back = back_to_signal_stop();
        if (!back) {
            log_error("checkpoint: %s; the syscall is restarted by hand",
                      back.error().what.c_str());
            regs = restart_fixup(regs);
        }
    }
    if (ptrace(PTRACE_SETSIGMASK, pid, sizeof saved_mask_, &saved_mask_) != 0)
        keep_first(errno_error(strfmt("restore signal mask of task {}", pid)));
    if (ptrace(PTRACE_SETREGS, pid, nullptr, &regs) != 0)
        keep_first(errno_error(strfmt("restore registers of task {}", pid)));
    // The kernel restarts that syscall as the task goes on: its release
    // follows it back inside first (FrozenTask::note_restart).
    if (auto restart = syscall_restart(saved_regs_)) {
        const user_regs_struct again = restart_fixup(saved_regs_);
        task_.note_restart(uint64_t(restart->nr), restart->code, again.rax, again.rip);
    }
    return result;
}

Status RemoteSyscall::back_to_signal_stop(int sig) {
    // From the exit stop of the last injected syscall (or a signal-delivery
    // stop, resumed with `sig`): an interrupt makes the way back to user space
    // pass through get_signal, which traps there.
    pid_t pid = task_.pid();
    if (ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr) != 0)
        return errno_error(strfmt("interrupt task {}", pid));
    for (int foreign = 0; foreign < kMaxForeignStops; ++foreign, sig = 0) {
        if (ptrace(PTRACE_CONT, pid, nullptr, reinterpret_cast<void*>(uintptr_t(sig))) != 0)
            return errno_error(strfmt("resume task {} into its signal path", pid));
        auto st = wait_stop();
        if (!st) return std::unexpected(st.error());
        if ((*st >> 16) == PTRACE_EVENT_STOP) {
            in_signal_path_ = true;
            return {};
        }
        if ((*st >> 16) == 0 && WSTOPSIG(*st) == SIGSTOP) {
            task_.note_swallowed_stop();
            continue;
        }
        return make_error(EIO, strfmt("task {}: unexpected ptrace stop {:x}", pid, *st));
    }
    return make_error(EIO, strfmt("task {}: no interrupt stop", pid));
}

RemoteSyscall::~RemoteSyscall() {
    if (auto r = finish(); !r) log_error("checkpoint: %s", r.error().what.c_str());
}

}  // namespace crfs
