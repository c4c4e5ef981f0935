// Stage 1 runs in the new task right after clone3, before the blob. The task
// is a copy of one thread of a multi-threaded daemon: another thread may have
// held the malloc lock (or any other) at the clone, so code here makes plain
// syscalls on data prepared by the parent and never allocates, formats,
// throws or takes a lock. Failures go back through the status pipe as a
// crfs_ra_report, exactly like the blob's.
#pragma once

#include <cstdint>

#include "crfs/restorer_args.h"

namespace crfs {

[[noreturn]] void child_fail(int status_fd, int step, int err, uint64_t arg);

// A tree's member holds on after its failure: child_fail closes every fd but
// `go` (its copy of the go pipe, by which the daemon knows it: whoever waits
// on one of its channels reads end of file) and waits for the daemon's
// SIGKILL, so that its children are never orphans: the daemon kills and reaps
// the whole tree (state/tree_restore.cc kill_tree). -1: it ends (a single
// process, a zombie, a placeholder). Inherited by the process's clones.
void child_hold_on_fail(int go);

}  // namespace crfs
