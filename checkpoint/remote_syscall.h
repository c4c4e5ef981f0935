// Running syscalls inside a frozen task (as CRIU's compel does), for the state
// that /proc does not show: sigactions, the alternate signal stack, itimers, brk.
//
// How: save the registers and the signal mask; block every signal
// (PTRACE_SETSIGMASK) so nothing is delivered meanwhile; point rip at a
// `syscall` instruction that already exists in the vdso (so no text is
// written; if there is no vdso, two bytes at rip are patched and put back);
// set orig_rax = -1 so the kernel does not restart the syscall the task was
// stopped in; step through syscall-enter and syscall-exit stops with
// PTRACE_SYSCALL (or, where the task's SIGTRAP allows it, single-step over
// the instruction: one stop, step_calls); read rax. finish() puts back the mask, the scratch bytes,
// any patched text and the registers.
//
// Syscall restart: a task interrupted in pause/nanosleep/read sits in the
// kernel with rax = -ERESTART*; the kernel turns that into a restart (or, for a
// signal with a handler, into EINTR) on its way out of get_signal. After our
// injections the task is in a syscall-exit stop instead, which does not look
// at rax again, so finish() takes it back into a stop inside get_signal
// (PTRACE_INTERRUPT + PTRACE_CONT) and puts the registers back there: the
// kernel decides, as if there had been no injection. (compel instead moves
// rip back onto the `syscall` itself, which turns a handled signal arriving
// before the task is back inside into a re-entered syscall.) The image holds
// restart_fixup of the registers (rip on the `syscall`, rax = the syscall
// number or restart_syscall, orig_rax = -1) and, apart, what the kernel knew
// (image::SyscallRestartRecord): both are the syscall-restart kind's, state/restart.h.
//
// Output buffers live in a scratch area below the red zone of the task's
// stack; its bytes are saved first and written back in finish().
#pragma once

#include <sys/types.h>
#include <sys/user.h>

#include <cstdint>
#include <optional>
#include <string>

#include "checkpoint/freeze.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "crfs/image_format.h"
#include "state/restart.h"  // restart_fixup

namespace crfs {

class RemoteSyscall {
  public:
    static constexpr size_t kScratchSize = 512;

    // `vdso_start/end`: the [vdso] mapping, or 0/0 if the task has none.
    static Result<std::unique_ptr<RemoteSyscall>> prepare(FrozenTask& task, uint64_t vdso_start,
                                                          uint64_t vdso_end);
    RemoteSyscall(const RemoteSyscall&) = delete;
    RemoteSyscall& operator=(const RemoteSyscall&) = delete;
    ~RemoteSyscall();  // finish() if not done; failure logged

    // From now on each call single-steps over the `syscall` instruction: one
    // stop (the SIGTRAP the kernel forces at the syscall's exit for a
    // single-stepped task) instead of two (its entry and its exit). Only for
    // a thread whose SIGTRAP the task neither catches nor ignores nor has
    // pending, as the parasite's int3 needs (parasite.h sigtrap_in_use; the
    // parasite turns it on where it runs): blocked, a forced SIGTRAP resets a
    // caught or ignored one to SIG_DFL. One sent to the thread meanwhile
    // merges into the step's and is handed back to the task, as at the
    // int3. CRFS_REMOTE_SYSCALL_TWO_STOPS=1 in crfsd's environment: never
    // (the old path).
    void step_calls();
    bool steps_calls() const { return step_; }

    // Runs syscall `nr`; returns its raw result (negative errno on failure).
    Result<int64_t> call(long nr, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0,
                         uint64_t a4 = 0, uint64_t a5 = 0, uint64_t a6 = 0);

    // Runs code already written at `entry` in the task with rdi = `arg` until it
    // stops at the int3 whose next address is `int3_end`. Every signal but
    // SIGKILL/SIGSTOP stays blocked meanwhile.
    Status run_code(uint64_t entry, uint64_t int3_end, uint64_t arg);

    // The task's memory through /proc/<pid>/mem (any protection).
    Status read_memory(uint64_t addr, void* buf, size_t len) const {
        return mem_io(addr, buf, len, false);
    }
    Status write_memory(uint64_t addr, const void* buf, size_t len) const {
        return mem_io(addr, const_cast<void*>(buf), len, true);
    }
    pid_t pid() const { return task_.pid(); }
    // How many syscalls and code runs were injected so far (tests, traces).
    int calls() const { return calls_; }
    // How many ptrace stops the calls and code runs took (tests, traces).
    int stops() const { return stops_; }

    // Address in the task of kScratchSize bytes usable as syscall output.
    uint64_t scratch() const { return scratch_; }
    Status read_scratch(void* out, size_t len) const;

    // The registers and blocked-signal mask as they were before any injection.
    const user_regs_struct& saved_regs() const { return saved_regs_; }
    uint64_t saved_sigmask() const { return saved_mask_; }

    Status finish();

  private:
    explicit RemoteSyscall(FrozenTask& t) : task_(t) {}
    Status mem_io(uint64_t addr, void* buf, size_t len, bool write) const;
    Status back_to_signal_stop(int sig = 0);
    // At a stop of a forced SIGTRAP whose si_code is `ours`: one sent to the
    // thread that merged into it handed back to the task.
    Status keep_sigtrap_unless(int ours);
    Result<int64_t> step_call(long nr);
    Result<int> wait_stop();
    FrozenTask& task_;
    user_regs_struct saved_regs_{};
    uint64_t saved_mask_ = 0;
    uint64_t syscall_addr_ = 0;
    bool patched_ = false;
    long saved_text_ = 0;
    uint64_t scratch_ = 0;
    char saved_scratch_[kScratchSize];
    bool active_ = false;
    bool step_ = false;
    // The last stop is in the kernel's signal path (the freeze's, an int3's or
    // a step's SIGTRAP, back_to_signal_stop's), not at a syscall's exit.
    bool in_signal_path_ = true;
    int calls_ = 0;
    int stops_ = 0;
    // /proc/<pid>/mem, read-write, opened at first use and kept (perf: a
    // parasite's run read and wrote it ~5 times, an open each).
    mutable UniqueFd mem_;
};

}  // namespace crfs
