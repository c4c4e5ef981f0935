// The parasite: a few dozen instructions run inside the frozen task that make
// every syscall the checkpoint needs from the inside (rt_sigaction of all 64
// signals, sigaltstack, getitimer x3, brk) in one go and stop on an int3.
// Injecting them one by one costs two ptrace stops each (~136 stops); the
// parasite costs five (mmap, run, munmap).
//
// It is mapped into the task with a remote mmap (an 8 KiB anonymous RWX area:
// code page, then output page), written through /proc/<pid>/mem, run with
// PTRACE_CONT, read back and unmapped; the VMA layout is as before. The code
// lives in .rodata of crfs, is never executed in crfs itself, uses only
// relative jumps and no stack.
#pragma once

#include <cstdint>

#include "checkpoint/remote_syscall.h"
#include "common/result.h"
#include "crfs/image_format.h"

namespace crfs {

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
};
static_assert(sizeof(ParasiteOutput) == 2720);

// Runs the parasite. Falls back to one remote syscall at a time where the task
// may not map executable memory.
Result<ParasiteOutput> run_parasite(RemoteSyscall& rs);

// The same results gathered with single remote syscalls (the fallback; also
// what the parasite is tested against).
Result<ParasiteOutput> run_single_syscalls(RemoteSyscall& rs);

}  // namespace crfs
