#include "checkpoint/freeze.h"

#include <sched.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <utility>

#include "checkpoint/task_attrs.h"
#include "common/ptrace_wait.h"
#include "common/log.h"
#include "common/strfmt.h"

namespace crfs {

namespace {

// How long a task may take to reach a ptrace stop. A task that is not in
// uninterruptible sleep stops in microseconds.
constexpr uint64_t kStopTimeoutNs = 10'000'000'000ull;

// Signals delivered at freeze time before the interrupt stop wins; beyond this
// the task is taking a flood of signals and we give up (EBUSY).
constexpr int kMaxDeliveriesAtFreeze = 256;

// release(): stops followed to a restarted syscall's entry, at most (the
// signals delivered on the way end it at the first).
constexpr int kMaxFollowStops = 64;

bool is_stop_signal(int sig) {
    return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}

}  // namespace

Result<int> FrozenTask::wait_stop() {
    bool gone = false;
    auto st = wait_ptrace_stop(pid_, kStopTimeoutNs, &gone);
    if (gone) attached_ = false;
    if (!st && gone) return make_error(ESRCH, strfmt("task {} exited during the checkpoint", pid_));
    return st;
}

Result<std::unique_ptr<FrozenTask>> FrozenTask::freeze(pid_t pid, bool suspend_seccomp) {
    std::unique_ptr<FrozenTask> t(new FrozenTask(pid));
    long options = PTRACE_O_TRACESYSGOOD | (suspend_seccomp ? PTRACE_O_SUSPEND_SECCOMP : 0);
    if (ptrace(PTRACE_SEIZE, pid, nullptr, options) != 0) {
        int err = errno;
        if (suspend_seccomp && err == EINVAL)
            return make_error(EBUSY, strfmt("task {} uses seccomp and this kernel cannot suspend "
                                            "it (CONFIG_CHECKPOINT_RESTORE)",
                                            pid));
        if (err == ESRCH) return sys_error(ESRCH, strfmt("seize task {}", pid));
        if (err == EPERM) {
            // ptrace refuses an exiting task with EPERM too.
            auto st = read_task_stat(pid);
            if (!st || st->state == 'Z' || st->state == 'X')
                return make_error(ESRCH, strfmt("task {} exited", pid));
            auto tracer = read_tracer_pid(pid);
            if (tracer && *tracer != 0)
                return make_error(EBUSY, strfmt("task {} is being traced by pid {}", pid, *tracer));
            // A task between PF_EXITING and zombie still shows 'R': look once more.
            usleep(10000);
            st = read_task_stat(pid);
            if (!st || st->state == 'Z' || st->state == 'X')
                return make_error(ESRCH, strfmt("task {} exited", pid));
            if (suspend_seccomp)
                return make_error(EBUSY, strfmt("task {} uses seccomp: suspending it needs "
                                                "CAP_SYS_ADMIN",
                                                pid));
            return make_error(EACCES, strfmt("seize task {}: no right to ptrace it", pid));
        }
        return sys_error(err, strfmt("seize task {}", pid));
    }
    t->attached_ = true;
    t->frozen_at_ns_ = monotonic_ns();
    if (ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr) != 0)
        return errno_error(strfmt("interrupt task {}", pid));

    for (int delivered = 0;; ++delivered) {
        auto st = t->wait_stop();
        if (!st) return std::unexpected(st.error());
        int sig = WSTOPSIG(*st);
        int event = *st >> 16;
        if (event == PTRACE_EVENT_STOP) {
            // SIGTRAP: our interrupt. A stop signal: the task is (or just went) in group-stop.
            t->was_stopped_ = is_stop_signal(sig);
            return t;
        }
        if (event != 0 || sig == (SIGTRAP | 0x80))
            return make_error(EIO, strfmt("task {}: unexpected ptrace stop {:x}", pid, *st));
        // Signal-delivery-stop: let the signal go through now; the interrupt is still
        // pending and stops the task right after.
        if (delivered >= kMaxDeliveriesAtFreeze)
            return make_error(EBUSY, strfmt("task {} keeps taking signals; cannot freeze it", pid));
        if (ptrace(PTRACE_CONT, pid, nullptr, reinterpret_cast<void*>(uintptr_t(sig))) != 0)
            return errno_error(strfmt("deliver signal {} to task {}", sig, pid));
    }
}

Result<int> FrozenTask::follow_restart() {
    const Restart& r = *restart_;
    const uint64_t nr = r.again_nr;
    for (int n = 0; n < kMaxFollowStops; ++n) {
        if (!std::exchange(resumed_, false) && ptrace(PTRACE_SYSCALL, pid_, nullptr, nullptr) != 0)
            return errno_error(strfmt("resume task {} into its syscall", pid_));
        auto st = wait_stop();
        if (!st) return std::unexpected(st.error());
        const int sig = WSTOPSIG(*st), event = *st >> 16;
        if (sig == (SIGTRAP | 0x80)) {
            __ptrace_syscall_info info{};
            if (ptrace(PTRACE_GET_SYSCALL_INFO, pid_, sizeof info, &info) <= 0)
                return errno_error(strfmt("syscall info of task {}", pid_));
            if (info.op != PTRACE_SYSCALL_INFO_ENTRY || info.entry.nr != nr)
                return make_error(
                    EIO, strfmt("task {} made syscall {}, not {} again", pid_, info.entry.nr, nr));
            return 0;  // inside again: the syscall goes on from its entry
        }
        if (event == PTRACE_EVENT_STOP) {
            if (is_stop_signal(sig)) return 0;  // group-stop: the detach keeps it
            continue;
        }
        if (event != 0) return make_error(EIO, strfmt("task {}: unexpected stop {:x}", pid_, *st));
        // A signal before the entry: restarted already (at the `syscall`
        // instruction again), it is delivered as to a task still inside.
        user_regs_struct regs{};
        if (ptrace(PTRACE_GETREGS, pid_, nullptr, &regs) != 0)
            return errno_error(strfmt("get registers of task {}", pid_));
        if (regs.rip == r.syscall_rip) {
            regs.orig_rax = r.nr;
            regs.rax = uint64_t(r.code);
            regs.rip += 2;
            if (ptrace(PTRACE_SETREGS, pid_, nullptr, &regs) != 0)
                return errno_error(strfmt("set registers of task {}", pid_));
        }
        return sig;
    }
    return make_error(EIO, strfmt("task {} did not enter syscall {} again", pid_, nr));
}

void FrozenTask::start_release() {
    if (!attached_ || resumed_ || !follows_restart()) return;
    released_at_ns_ = monotonic_ns();
    // A failure here is met again, and reported, by release()'s own resume.
    resumed_ = ptrace(PTRACE_SYSCALL, pid_, nullptr, nullptr) == 0;
}

Status FrozenTask::release() {
    if (!attached_) return {};
    if (!resumed_) released_at_ns_ = monotonic_ns();
    int sig = 0;
    if (follows_restart()) {
        auto s = follow_restart();
        if (!attached_) return {};  // it exited meanwhile
        if (s)
            sig = *s;
        else  // let go as before: the kernel restarts it
            log_error("checkpoint: %s", s.error().what.c_str());
    }
    attached_ = false;
    // PTRACE_DETACH leaves a task whose group-stop is in effect stopped (the
    // kernel re-arms JOBCTL_STOP_PENDING in __ptrace_unlink), else it runs.
    if (ptrace(PTRACE_DETACH, pid_, nullptr, reinterpret_cast<void*>(uintptr_t(sig))) != 0) {
        if (errno == ESRCH) return make_error(ESRCH, strfmt("detach task {}: gone", pid_));
        return errno_error(strfmt("detach task {}", pid_));
    }
    if (swallowed_stop_) kill(pid_, SIGSTOP);
    return {};
}

FrozenTask::~FrozenTask() {
    if (auto r = release(); !r) log_error("checkpoint: %s", r.error().what.c_str());
}

uint64_t FrozenTask::frozen_ns() const {
    return (released_at_ns_ ? released_at_ns_ : monotonic_ns()) - frozen_at_ns_;
}

}  // namespace crfs
