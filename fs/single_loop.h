// crfsd -s: the single-threaded FUSE loop, on a thread of a fixed stack.
//
// A restore maps its blob area in the daemon where the image has room
// (state/memory_restore.h map_blob_area): a hostile image can put it right
// below the main thread's stack, which then cannot grow (the kernel keeps a
// guard gap below a growing stack), and the next deeper call kills the
// daemon. A thread's stack is mapped whole when the thread starts: nothing
// mapped below it takes any of it. The multi-threaded loop's workers are
// such threads already; this gives -s the same (docs/performance.md, "Trees:
// the cost per process").
#pragma once

struct fuse_session;

namespace crfs::fs {

// The stack of the loop thread: the multi-threaded loop's default (glibc's,
// from the usual RLIMIT_STACK of 8 MiB), enough for a tree of 128 processes.
inline constexpr unsigned long kLoopStackBytes = 8ul << 20;

// Runs fuse_session_loop(se) on a new thread of kLoopStackBytes and returns
// what it returned; the calling (main) thread waits, and passes a signal that
// ended the session (libfuse's handlers: SIGTERM, SIGINT, SIGHUP) on to the
// loop thread, whose read of /dev/fuse only a signal of its own interrupts.
// 1 (logged) when the thread cannot start.
int session_loop_on_fixed_stack(fuse_session* se);

}  // namespace crfs::fs
