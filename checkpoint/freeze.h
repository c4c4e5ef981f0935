// Freezing a task for a checkpoint: PTRACE_SEIZE + PTRACE_INTERRUPT, and a
// guard whose destructor always lets the task go exactly as it was found:
// running if it ran, still in group-stop if it was SIGSTOPped.
//
// A signal the task was taking at the moment of the freeze (a
// signal-delivery-stop instead of the interrupt stop) is handed back to the
// task at once (PTRACE_CONT with that signal): it is delivered just before the
// checkpoint instead of just after, and the pending interrupt stops the task
// right behind it. Nothing is lost, nothing injected.
//
// ptrace belongs to a thread: every call on a FrozenTask, and its destruction,
// must happen on the thread that froze it. checkpoint_task runs each checkpoint
// on a thread of its own, so that should a task never stop (stuck in D state)
// the exit of that thread detaches it for us.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>

#include "common/ptrace_wait.h"  // monotonic_ns
#include "common/result.h"

namespace crfs {

class FrozenTask {
  public:
    // Seizes and interrupts `pid`. Errors: ESRCH (gone, or exited meanwhile),
    // EBUSY (already traced), EACCES (no right to ptrace it), ETIMEDOUT (did not
    // stop within the bound).
    //
    // `suspend_seccomp`: the task has a seccomp filter, which could kill it for
    // the syscalls we inject; PTRACE_O_SUSPEND_SECCOMP turns it off while we
    // hold the task (needs CAP_SYS_ADMIN; EBUSY without).
    static Result<std::unique_ptr<FrozenTask>> freeze(pid_t pid, bool suspend_seccomp = false);

    FrozenTask(const FrozenTask&) = delete;
    FrozenTask& operator=(const FrozenTask&) = delete;
    ~FrozenTask();  // release() unless done; a failure is logged

    pid_t pid() const { return pid_; }
    // The task was in group-stop (SIGSTOP/SIGTSTP...) when seized; it stays stopped.
    bool was_stopped() const { return was_stopped_; }

    // Waits (bounded) for the next ptrace stop and returns the wait status.
    // The task exiting is ESRCH.
    Result<int> wait_stop();

    // A SIGSTOP that arrived while remote syscalls ran with every other signal
    // blocked; it is sent again after detach.
    void note_swallowed_stop() { swallowed_stop_ = true; }

    // The task was left in a stop inside the kernel's signal path with the
    // registers of a syscall the kernel restarts as it goes on (syscall `nr`,
    // rax the -ERESTART* `code`; it enters syscall `again_nr`, restart_syscall
    // for a restart block, at the `syscall` instruction at `syscall_rip`:
    // state/restart.h restart_fixup; RemoteSyscall::finish). release() then
    // follows it back inside that syscall before letting it go: a signal the
    // kernel delivered between its restart and its entry would run a handler
    // on the restarted registers, and the handler's return would enter the
    // syscall again (a pause() that never ends in EINTR). On the way a signal
    // is delivered with the registers of a task still inside the syscall, as
    // it would have been had it come a moment earlier.
    void note_restart(uint64_t nr, int64_t code, uint64_t again_nr, uint64_t syscall_rip) {
        restart_ = Restart{nr, code, again_nr, syscall_rip};
    }

    // Detaches: the task runs again, or stays in group-stop if it was stopped.
    Status release();
    // The first step of release(), for a task it follows to a restarted
    // syscall (note_restart): resumes it towards that syscall's entry and
    // returns without waiting. release() then collects the stop. Lets a
    // process's threads make their trips back into the kernel together
    // (FrozenThreads::release) instead of one after another. Does nothing
    // for a task release() does not follow.
    void start_release();

    uint64_t frozen_ns() const;

  private:
    struct Restart {
        uint64_t nr;
        int64_t code;
        uint64_t again_nr;
        uint64_t syscall_rip;
    };
    explicit FrozenTask(pid_t pid) : pid_(pid) {}
    // release(): to the restarted syscall's entry; the signal to detach with.
    Result<int> follow_restart();
    bool follows_restart() const { return restart_ && !was_stopped_ && !swallowed_stop_; }
    pid_t pid_;
    std::optional<Restart> restart_;
    bool attached_ = false;
    bool resumed_ = false;  // start_release() made the first PTRACE_SYSCALL
    bool was_stopped_ = false;
    bool swallowed_stop_ = false;
    uint64_t frozen_at_ns_ = 0;
    uint64_t released_at_ns_ = 0;
};

}  // namespace crfs
