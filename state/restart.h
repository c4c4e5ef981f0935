// Syscall restart (docs/state.md "syscall restart"; detect: nothing is
// refused), its dump, check and restore halves; the mechanisms they ride on
// stay where they are: the injection of syscalls into the frozen task
// (checkpoint/remote_syscall.h, which hands the task back in get_signal) and
// the blob's rt_sigreturn.
//
// Dump: restart_fixup and syscall_restart below: the registers as the image
// keeps them and the `syscall-restart` record.
//
// Restore: a task checkpointed inside a syscall the kernel restarts (pause, sigsuspend,
// read, nanosleep, ...): its frame re-executes the syscall, and right after
// the blob's rt_sigreturn the driver puts the task back where the kernel had
// it, so that a signal with a handler arriving before the task is inside again
// ends the syscall as the kernel would (EINTR for pause, sigsuspend, a
// nanosleep; a restart for -ERESTARTSYS under SA_RESTART) instead of running
// the handler and re-entering the syscall.
//
//   driver                                  task (blob, after 'K')
//   read 'K', EOF of the status pipe        read(go_fd) ... waits
//   PTRACE_SEIZE, PTRACE_INTERRUPT  ------> stop
//   write go, PTRACE_SYSCALL ...            close, munmap, rt_sigreturn
//   exit stop of rt_sigreturn: the frame's registers (rip on the `syscall`)
//   PTRACE_INTERRUPT, PTRACE_CONT   ------> stop inside get_signal
//   rip += 2, orig_rax = nr, rax = -ERESTART*; (SIGSTOP if it was stopped)
//   PTRACE_DETACH                   ------> get_signal goes on: a pending signal
//                                           is handled with the kernel's restart
//                                           rules, none restarts the syscall
//   (no signal pending: PTRACE_SYSCALL instead, to the syscall's entry, where
//   it detaches; a signal before that entry gets the registers above again)
//
// A -ERESTART_RESTARTBLOCK syscall (nanosleep) is handed back as -ERESTARTNOHAND
// of the syscall the frame re-executes: EINTR with a handler, as the kernel
// does, and a restart of the same call without (its restart block is not kept).
//
// A daemon killed during the hand-off detaches the task: it resumes with its
// frame's registers (the syscall re-executed), as before this hand-off existed.
// A member of a process tree takes the same hand-off at the tree's gate: every
// such member is attached before the go pipe is written, each followed after
// it (state/tree_restore.cc). A thread other than the main one (session 31,
// its own `syscall-restart` record after its registers) is attached by its
// tid while it waits on the sync page's go, and followed after the main
// thread, which is then traced too (without a syscall of its own to hand
// back, only so that it goes on, or stops, after its threads are attached).
#pragma once

#include <sys/types.h>
#include <sys/user.h>

#include <optional>

#include "common/image_reader.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "crfs/restorer_args.h"

namespace crfs {

// --- dump (checkpoint) -------------------------------------------------------

// The registers of a task stopped in a syscall that the kernel would restart,
// rewritten so that returning to user space re-executes it
// (checkpoint/remote_syscall.h).
user_regs_struct restart_fixup(const user_regs_struct& regs);

// What the image keeps besides the fixed-up registers: the syscall and its
// restart code, if `regs` (as saved before any injection) are inside one.
std::optional<image::SyscallRestartRecord> syscall_restart(const user_regs_struct& regs);

// --- check and restore -------------------------------------------------------

// The image's restart record against its registers (hostile images).
Status check_restart(const DecodedImage& img);

// The hand-off's ptrace half for one thread (the steps above from
// PTRACE_SEIZE): `attach` while its blob waits at a gate (the main thread) or
// on the sync page's go (another thread), `follow` once the gate is open. A
// single process's gate is its own (RestartHandoff); a tree's members wait at
// the tree's go pipe, which restore_tree opens once every member with a
// hand-off is attached (state/tree_restore.cc). A process's threads are
// followed after its main thread, which wakes them. Runs on one thread: the
// tracer's. The caller kills the task on an error.
class RestartTracer {
  public:
    // `rip`: the frame's, on the `syscall` it re-executes; `code`: the restart
    // code handed back, 0 for none (a main thread traced only so that it does
    // not run, or stop, before its threads are handed theirs); `tid`: a
    // thread other than the main one, 0 for the main thread.
    RestartTracer(uint64_t rip, int64_t code, pid_t tid = 0) : rip_(rip), code_(code), tid_(tid) {}
    Status attach(pid_t pid);  // the process's pid
    // `stopped`: the task was in group-stop and goes back into it. A thread
    // that ends during its follow, without a fault of the blob, ended with
    // its process (another thread, already running, did exit_group or
    // execve, or a signal killed the process): the restore did its part, and
    // that is no error.
    Status follow(bool stopped);
    // After an error, the process killed: reaps this thread if it is still
    // traced and not the main thread. A traced thread's end waits for its
    // tracer, and its process's end for its threads: without this the
    // caller's reap of the process would wait for good.
    void reap_killed();

  private:
    Status follow_traced(bool stopped);
    Result<int> next_stop();
    bool ended_with_process(const Error& e);

    pid_t pid_ = 0;  // the thread traced
    uint64_t rip_ = 0;
    int64_t code_ = 0;
    pid_t tid_ = 0;
    bool stop_after_ = false;
    bool traced_ = false;  // seized, not yet detached or reaped
    bool ended_ = false;   // its end was waited for (reaped)
    int fault_ = 0;        // a signal of the blob's, delivered (it dies of it)
};

class RestartHandoff {
  public:
    // Whether the restored task takes the hand-off: a thread inside a syscall
    // the kernel restarts, with a handler for a signal its mask lets through
    // (without one a re-executed syscall is the kernel's restart). A single
    // process: opens the gate (its read end as an fd >= min_fd, to keep in
    // stage 1) and makes the blob wait on it. A tree member: no gate of its
    // own (it waits at the tree's). Either way the blob must then not stop
    // itself.
    static Result<RestartHandoff> plan(const DecodedImage& img, bool tree_member, int min_fd,
                                       crfs_restorer_args& a);
    bool active() const { return !tracers_.empty(); }
    bool has_gate() const { return bool(go_w_); }
    int task_fd() const { return go_r_.get(); }
    // The main thread's (first, if any) and the other threads', for restore_tree.
    const std::vector<RestartTracer>& tracers() const { return tracers_; }
    // A single process, in the driver, once the blob reported 'K': attach,
    // open the gate, follow.
    Status run(pid_t pid, bool stopped);
    // The driver's copy of the task's end, once the task holds it.
    void close_task_fd() { go_r_.reset(); }

    // Each of a process's tracers, in order; the first error, after which
    // the process is killed and its traced threads reaped (abandon).
    static Status attach_all(std::vector<RestartTracer>& tracers, pid_t pid);
    static Status follow_all(std::vector<RestartTracer>& tracers, pid_t pid, bool stopped);
    // Kills the process and reaps its threads still traced (reap_killed).
    static void abandon(std::vector<RestartTracer>& tracers, pid_t pid);

  private:
    UniqueFd go_r_, go_w_;
    std::vector<RestartTracer> tracers_;
};

}  // namespace crfs
