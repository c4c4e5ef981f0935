// Registers (the "registers" half of the threads kind, docs/state.md): both halves.
//
// Dump: general purpose with fs/gs base (NT_PRSTATUS) and the full xsave area
// (NT_X86_XSTATE) of a frozen task, so FPU/SSE/AVX state survives.
//
// Restore: the signal frame the blob returns through (restorer/blob/blob.c,
// rt_sigreturn): an x86-64 rt_sigframe whose ucontext holds the saved general
// registers, blocked mask and alternate stack, followed by the saved xsave
// area marked (FP_XSTATE_MAGIC1/2) so the kernel restores every xsave
// component, not only the legacy FXSAVE part.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "common/image_reader.h"
#include "common/result.h"
#include "crfs/image_format.h"

namespace crfs {

// A task frozen in a syscall that restarts through restart_syscall (nanosleep,
// clock_nanosleep, poll, futex wait) has rax = restart_syscall: in a new task
// that returns EINTR, as the restart block is gone. Where the instructions
// before rip are `mov $NR, %eax; syscall` (glibc's wrappers) and NR is one of
// those, rax becomes NR, so the call runs again with its original arguments
// (a relative timeout starts over). Reads the code bytes from the image's
// pages or the mapped file. Every thread's registers.
void fix_restart_block(DecodedImage& img, int image_fd);

// The main thread's registers, xstate and sigstate as a ThreadImage (copied).
ThreadImage main_thread_image(const DecodedImage& img);

// The same for one thread's frame (threads: state/threads.cc `fill_threads`).
size_t sigframe_size(const ThreadImage& t);
Status build_sigframe(const ThreadImage& t, void* mem, uint64_t at);
uint64_t sigframe_on_stack(const DecodedImage& img, const ThreadImage& t);

// Bytes build_sigframe writes (frame, alignment, xsave area, end marker).
size_t sigframe_size(const DecodedImage& img);

// Writes the frame at `mem` (64-byte aligned) for use at address `at` (the
// blob copies it there; `at` == mem when it stays). The blob sets rsp to
// at + 8 and calls rt_sigreturn.
Status build_sigframe(const DecodedImage& img, void* mem, uint64_t at);

// Where a signal delivery would put the frame on the task's own stack (below
// the red zone), or 0 when the stack mapping has no room for it.
uint64_t sigframe_on_stack(const DecodedImage& img);

// --- dump (checkpoint) -------------------------------------------------------

struct TaskRegs {
    image::RegsRecord gp{};
    std::string xstate;  // raw xsave area as the kernel reports it
    // fid: the syscall the task was inside and its restart code; `gp` holds
    // the restart applied (checkpoint/remote_syscall.h).
    std::optional<image::SyscallRestartRecord> restart;
};

Result<TaskRegs> read_regs(pid_t pid);

// --- check (hostile images) --------------------------------------------------

// The main thread's registers: rip in an executable mapping of the image, rsp
// in a writable private one; check_thread_regs for any thread (`who` prefixes
// the error).
Status check_regs(const DecodedImage& img);
Status check_thread_regs(const DecodedImage& img, const image::RegsRecord& r,
                         const std::string& who);

}  // namespace crfs
