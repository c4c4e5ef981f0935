// Waiting for a tracee's next ptrace stop, bounded: the checkpointer's frozen
// tasks (checkpoint/freeze.cc) and the restore's hand-off of a restarted
// syscall (state/restart.cc) share it.
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "common/result.h"

namespace crfs {

// The wait status of `pid`'s next stop (waitpid __WALL). The task exiting (or
// no longer being our child or tracee) is ESRCH with `gone` set; no stop within
// `timeout_ns` is ETIMEDOUT (checked every 20 ms: it may run over by that).
// It blocks in waitpid, woken by the stop or by a per-thread POSIX timer's
// signal (SIGRTMIN + 6, a handler that does nothing, installed at the first
// wait; unblocked in the thread for the wait only): a process using it must
// not use that signal. CRFS_PTRACE_WAIT_POLL=1 in the environment: the
// polling wait of before (benches).
Result<int> wait_ptrace_stop(pid_t pid, uint64_t timeout_ns, bool* gone = nullptr);

uint64_t monotonic_ns();

// Whether this thread's waits yield the CPU in a loop before they sleep
// (the default: the stop usually comes within microseconds). A tree's
// tracer threads (common/tracers.h) sleep at once: several of them spinning
// would take the CPU from the tracees they wait for.
void set_ptrace_wait_spins(bool spin);

}  // namespace crfs
