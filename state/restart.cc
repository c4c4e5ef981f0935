#include "state/restart.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/procfs.h"
#include "common/ptrace_wait.h"
#include "common/strfmt.h"

namespace crfs {

namespace {

// Kernel-internal restart codes (include/linux/errno.h).
constexpr int64_t kErestartSys = -512, kErestartNoIntr = -513, kErestartNoHand = -514,
                  kErestartRestartBlock = -516;
constexpr uint64_t kNrRtSigreturn = 15, kNrRestartSyscall = 219, kNrLimit = 1024;
// The blob's last syscalls after the gate: read, close, munmap, futex wake,
// rt_sigreturn (two stops each); anything beyond is not the blob.
constexpr int kMaxStops = 64;
constexpr uint64_t kStopTimeoutNs = 10'000'000'000ull;
constexpr uint64_t kMainSliceNs = 100'000'000ull;  // RestartTracer::next_stop

Status bad(const std::string& what) {
    return make_error(EINVAL, "image: syscall restart: " + what);
}

Status trace_error(pid_t pid, const std::string& what) {
    return errno_error(strfmt("restore: handing back the syscall of task {}: {}", pid, what));
}

// At a syscall stop (PTRACE_O_TRACESYSGOOD): which syscall, entry or exit.
Result<__ptrace_syscall_info> syscall_info(pid_t pid) {
    __ptrace_syscall_info info{};
    if (ptrace(PTRACE_GET_SYSCALL_INFO, pid, sizeof info, &info) <= 0) {
        auto e = trace_error(pid, "syscall info");
        return std::unexpected(e.error());
    }
    return info;
}

bool is_event_stop(int st) {
    return (st >> 16) == PTRACE_EVENT_STOP;
}
int delivered(int st) {
    return (st >> 16) == 0 ? WSTOPSIG(st) : 0;
}

}  // namespace

// --- dump (checkpoint) -------------------------------------------------------

user_regs_struct restart_fixup(const user_regs_struct& in) {
    user_regs_struct r = in;
    if (int64_t(r.orig_rax) < 0) return r;
    switch (int64_t(r.rax)) {
        case kErestartSys:
        case kErestartNoIntr:
        case kErestartNoHand:
            r.rax = r.orig_rax;
            r.rip -= 2;  // back onto the `syscall` instruction
            break;
        case kErestartRestartBlock:
            r.rax = kNrRestartSyscall;
            r.rip -= 2;
            break;
        default:
            return r;
    }
    r.orig_rax = ~uint64_t(0);
    return r;
}

std::optional<image::SyscallRestartRecord> syscall_restart(const user_regs_struct& regs) {
    if (restart_fixup(regs).orig_rax == regs.orig_rax) return std::nullopt;
    return image::SyscallRestartRecord{int64_t(regs.orig_rax), int64_t(regs.rax)};
}

// --- check and restore ---------------------------------------------------------

namespace {

// One thread's restart record against its registers; `who`: "" for the main
// thread, else "thread T: ".
Status check_one(const image::SyscallRestartRecord& r, const image::RegsRecord& regs,
                 const std::string& who) {
    if (r.code != kErestartSys && r.code != kErestartNoIntr && r.code != kErestartNoHand &&
        r.code != kErestartRestartBlock)
        return bad(strfmt("{}code {} is no restart code", who, r.code));
    if (r.nr < 0 || uint64_t(r.nr) >= kNrLimit) return bad(strfmt("{}syscall {}", who, r.nr));
    // The registers hold the restart applied (checkpoint/remote_syscall.cc restart_fixup).
    uint64_t again = r.code == kErestartRestartBlock ? kNrRestartSyscall : uint64_t(r.nr);
    if (regs.orig_rax != ~uint64_t(0) || regs.rax != again || regs.rip < 2)
        return bad(strfmt("{}registers (rax 0x{:x}, orig_rax 0x{:x}) are not syscall {} restarted",
                          who, regs.rax, regs.orig_rax, r.nr));
    return {};
}

}  // namespace

Status check_restart(const DecodedImage& img) {
    if (img.restart)
        if (auto s = check_one(*img.restart, img.regs, ""); !s) return s;
    for (const ThreadImage& t : img.threads)
        if (t.restart)
            if (auto s = check_one(*t.restart, t.regs, strfmt("thread {}: ", t.rec.tid)); !s)
                return s;
    return {};
}

namespace {

// Whether a handler of the task may run before it is inside the syscall again:
// some signal has one (not SIG_DFL 0 or SIG_IGN 1) and is not blocked by the
// mask its frame restores (no user code runs in between to unblock one).
// Without one, a signal in that window kills, stops or is ignored, and a
// re-executed syscall is what the kernel's restart would have run: no
// hand-off is needed (perf: a tree of 64 processes in pause() with no
// handlers restored 17-24 ms slower with one per process, ~11 ptrace stops each).
bool handler_may_run(const DecodedImage& img, uint64_t blocked) {
    for (int sig = 1; sig <= 64; ++sig)
        if (img.sigactions.action[sig - 1].handler > 1 && !(blocked >> (sig - 1) & 1)) return true;
    return false;
}

// The restart code the hand-off puts back (state/restart.h: a restart block
// is not kept).
int64_t handed_back(const image::SyscallRestartRecord& r) {
    return r.code == kErestartRestartBlock ? kErestartNoHand : r.code;
}

}  // namespace

Result<RestartHandoff> RestartHandoff::plan(const DecodedImage& img, bool tree_member, int min_fd,
                                            crfs_restorer_args& a) {
    RestartHandoff h;
    std::vector<RestartTracer> threads;
    for (const ThreadImage& t : img.threads)
        if (t.restart && handler_may_run(img, t.sigstate.blocked))
            threads.emplace_back(t.regs.rip, handed_back(*t.restart), pid_t(t.rec.tid));
    if (img.restart && handler_may_run(img, img.sigstate.blocked))
        h.tracers_.emplace_back(img.regs.rip, handed_back(*img.restart));
    else if (!threads.empty())
        h.tracers_.emplace_back(img.regs.rip, 0);  // the main thread, traced only
    h.tracers_.insert(h.tracers_.end(), threads.begin(), threads.end());
    if (h.tracers_.empty() || tree_member) return h;  // a member's gate is the tree's (tree_gate)
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) return errno_error("restore: the syscall restart's gate");
    UniqueFd r(p[0]);
    h.go_w_.reset(p[1]);
    h.go_r_.reset(fcntl(r.get(), F_DUPFD_CLOEXEC, min_fd));
    if (!h.go_r_) return errno_error("restore: dup of the syscall restart's gate");
    a.go_fd = h.go_r_.get();
    a.has_go = 1;
    return h;
}

void RestartHandoff::abandon(std::vector<RestartTracer>& tracers, pid_t pid) {
    ::kill(pid, SIGKILL);
    for (RestartTracer& t : tracers) t.reap_killed();
}

Status RestartHandoff::attach_all(std::vector<RestartTracer>& tracers, pid_t pid) {
    for (RestartTracer& t : tracers)
        if (auto r = t.attach(pid); !r) {
            abandon(tracers, pid);
            return r;
        }
    return {};
}

Status RestartHandoff::follow_all(std::vector<RestartTracer>& tracers, pid_t pid, bool stopped) {
    for (RestartTracer& t : tracers)
        if (auto r = t.follow(stopped); !r) {
            abandon(tracers, pid);
            return r;
        }
    return {};
}

Status RestartHandoff::run(pid_t pid, bool stopped) {
    if (auto r = attach_all(tracers_, pid); !r) return r;
    char go = 'g';
    if (::write(go_w_.get(), &go, 1) != 1) {
        auto e = trace_error(pid, "open the gate");
        abandon(tracers_, pid);
        return e;
    }
    go_w_.reset();
    return follow_all(tracers_, pid, stopped);
}

Result<int> RestartTracer::next_stop() {
    // The main thread's end is not reported while its process has other
    // threads, and the threads this driver traces wait for it to reap them:
    // a main thread killed with its process (exit_group by an untraced
    // thread) would look like one that does not stop. Its waits are sliced,
    // and between them a zombie main thread is an end (reaped with its
    // process, by the caller).
    const uint64_t slice = tid_ ? kStopTimeoutNs : kMainSliceNs;
    for (uint64_t waited = 0;; waited += slice) {
        auto st = wait_ptrace_stop(pid_, slice, &ended_);
        if (ended_) traced_ = false;  // reaped
        if (!st && !ended_ && st.error().code == ETIMEDOUT && waited + slice < kStopTimeoutNs) {
            auto stat = read_stat(pid_);
            if (!stat || stat->state != 'Z') continue;
            ended_ = true;
            traced_ = false;
            return make_error(ESRCH, strfmt("restore: syscall hand-off: task {} exited", pid_));
        }
        if (!st) return std::unexpected(st.error().context("restore: syscall hand-off"));
        return st;
    }
}

void RestartTracer::reap_killed() {
    if (!traced_ || !tid_) return;  // the main thread: the caller's reap of the process
    for (int n = 0; n < kMaxStops && traced_; ++n)
        if (auto st = next_stop(); !st && !ended_) break;  // no end within the timeout
    traced_ = false;
}

Status RestartTracer::attach(pid_t pid) {
    const pid_t proc = pid;
    pid = pid_ = tid_ ? tid_ : pid;
    if (ptrace(PTRACE_SEIZE, pid, nullptr, PTRACE_O_TRACESYSGOOD) != 0)
        return trace_error(pid, "seize");
    traced_ = true;
    // The image's tid, taken by the blob (clone3 set_tid) before 'K': still
    // this process's thread, unless it was killed from outside since and its
    // tid reused (then seized with the daemon's rights: given up at once).
    if (tid_ && access(strfmt("/proc/{}/task/{}", proc, tid_).c_str(), F_OK) != 0) {
        auto e = make_error(ESRCH, strfmt("restore: thread {} of task {} is gone", tid_, proc));
        if (ptrace(PTRACE_DETACH, pid, nullptr, nullptr) == 0) traced_ = false;
        return e;
    }
    if (ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr) != 0) return trace_error(pid, "interrupt");
    // The blob waits at the gate with every signal blocked: only SIGSTOP
    // gets through, and it is the task's to keep.
    for (int n = 0;; ++n) {
        auto st = next_stop();
        if (!st) return std::unexpected(st.error());
        if (is_event_stop(*st)) return {};
        if (delivered(*st) != SIGSTOP || n >= kMaxStops)
            return make_error(
                EIO, strfmt("restore: task {}: unexpected stop {:x} at the gate", pid, *st));
        stop_after_ = true;
        if (ptrace(PTRACE_CONT, pid, nullptr, nullptr) != 0) return trace_error(pid, "resume");
    }
}

Status RestartTracer::follow(bool stopped) {
    auto r = follow_traced(stopped);
    if (r) {
        traced_ = false;  // detached
        return r;
    }
    if (fault_ && ended_)
        return make_error(
            EIO, strfmt("restore: task {} died of signal {} in its restorer blob", pid_, fault_));
    if (!ended_with_process(r.error())) return r;
    log_info("restore: thread %d ended with its process during the syscall hand-off", pid_);
    return {};
}

// After an error of the follow: whether the thread ended (reaped now) on its
// own, not of the blob's fault. A ptrace request refused with ESRCH means the
// thread left its stop: a SIGKILL (its process's end, or an execve's) ends it.
bool RestartTracer::ended_with_process(const Error& e) {
    if (fault_) return false;
    if (!ended_ && e.code == ESRCH && traced_) (void)next_stop();
    return ended_;
}

Status RestartTracer::follow_traced(bool stopped) {
    const pid_t pid = pid_;
    bool stop_after = stopped || stop_after_;
    auto fail = [&](const std::string& what) { return trace_error(pid, what); };

    // To the exit stop of rt_sigreturn: the frame's registers are in place.
    bool in_sigreturn = false;
    int deliver = 0;
    for (int n = 0;; ++n) {
        if (n >= kMaxStops)
            return make_error(EIO, strfmt("restore: task {} did not reach rt_sigreturn", pid));
        if (ptrace(PTRACE_SYSCALL, pid, nullptr, reinterpret_cast<void*>(uintptr_t(deliver))) != 0)
            return fail("resume");
        deliver = 0;
        auto st = next_stop();
        if (!st) return std::unexpected(st.error());
        if (WSTOPSIG(*st) == (SIGTRAP | 0x80)) {
            auto info = syscall_info(pid);
            if (!info) return std::unexpected(info.error());
            if (info->op == PTRACE_SYSCALL_INFO_ENTRY)
                in_sigreturn = info->entry.nr == kNrRtSigreturn;
            if (info->op == PTRACE_SYSCALL_INFO_EXIT && in_sigreturn) break;
            continue;
        }
        if (is_event_stop(*st)) continue;
        if (delivered(*st) == SIGSTOP)
            stop_after = true;  // kept for the end, where it stops the task in the right place
        else
            fault_ = deliver = delivered(*st);  // a fault of the blob: the task's to die of
    }
    user_regs_struct regs{};
    if (ptrace(PTRACE_GETREGS, pid, nullptr, &regs) != 0) return fail("get registers");
    if (regs.rip != rip_)
        return make_error(EIO, strfmt("restore: task {} left rt_sigreturn at 0x{:x}, not at its "
                                      "frame's 0x{:x}",
                                      pid, regs.rip, rip_));

    // Into get_signal: a signal that arrived since is still pending, and is
    // handled there with the registers below.
    if (ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr) != 0) return fail("interrupt");
    if (ptrace(PTRACE_CONT, pid, nullptr, nullptr) != 0) return fail("resume");
    auto st = next_stop();
    if (!st) return std::unexpected(st.error());
    int sig = delivered(*st);  // a signal-delivery-stop is inside get_signal too
    if (!is_event_stop(*st) && sig == 0)
        return make_error(EIO, strfmt("restore: task {}: unexpected stop {:x}", pid, *st));
    if (ptrace(PTRACE_GETREGS, pid, nullptr, &regs) != 0) return fail("get registers");
    const uint64_t nr = regs.rax;  // the syscall the frame runs again
    // The registers of a task still inside syscall `nr`, as the kernel had them.
    auto as_if_inside = [&]() -> Status {
        regs.orig_rax = nr;
        regs.rax = uint64_t(code_);
        regs.rip += 2;
        if (ptrace(PTRACE_SETREGS, pid, nullptr, &regs) != 0) return fail("set registers");
        return {};
    };
    if (code_ != 0)  // else a main thread traced for its threads: its frame as it is
        if (auto r = as_if_inside(); !r) return r;
    auto detach = [&](int with) -> Status {
        if (ptrace(PTRACE_DETACH, pid, nullptr, reinterpret_cast<void*>(uintptr_t(with))) != 0)
            return fail("detach");
        return {};
    };
    if (sig != 0 || stop_after || code_ == 0) {
        if (stop_after && sig != SIGSTOP) ::kill(pid, SIGSTOP);
        return detach(sig);
    }
    // No signal now: the kernel restarts the syscall (rip back on the
    // `syscall`, rax = nr) and the task goes back to user space to enter it
    // again. A signal arriving between that restart and the entry would be
    // handled with the restarted registers, and the handler's return would
    // enter the syscall again: a pause() that never ends in EINTR (seen once,
    // a SCHED_IDLE task under load, probe restart/sched_idle). So the task is
    // followed to the entry: a signal before it is delivered with the
    // registers of a task still inside the syscall (the kernel's restart
    // rules then apply, as they would have had it come a moment later); at
    // the entry the task is inside again, and let go.
    for (int n = 0;; ++n) {
        if (n >= kMaxStops)
            return make_error(EIO,
                              strfmt("restore: task {} did not enter syscall {} again", pid, nr));
        if (ptrace(PTRACE_SYSCALL, pid, nullptr, nullptr) != 0) return fail("resume");
        auto at = next_stop();
        if (!at) return std::unexpected(at.error());
        if (WSTOPSIG(*at) == (SIGTRAP | 0x80)) {
            auto info = syscall_info(pid);
            if (!info) return std::unexpected(info.error());
            if (info->op != PTRACE_SYSCALL_INFO_ENTRY || info->entry.nr != nr)
                return make_error(EIO, strfmt("restore: task {} made syscall {}, not {} again", pid,
                                              info->entry.nr, nr));
            return detach(0);  // inside again: the syscall goes on from its entry
        }
        if (is_event_stop(*at)) continue;
        int late = delivered(*at);
        if (ptrace(PTRACE_GETREGS, pid, nullptr, &regs) != 0) return fail("get registers");
        if (regs.rip == rip_)  // restarted, not entered yet: as if still inside
            if (auto r = as_if_inside(); !r) return r;
        return detach(late);
    }
}

}  // namespace crfs
