// The process tree (docs/trees.md): who the children of a task are, read the
// one way both `reason` and the checkpoint's freeze use.
#pragma once

#include <sys/types.h>

#include <vector>

#include "common/result.h"

namespace crfs::state {

// The children of every thread of `pid` (/proc/<pid>/task/<tid>/children), in
// the order listed. The task being gone is ESRCH. Complete only while the
// task is frozen (a running task may fork or reap meanwhile).
Result<std::vector<pid_t>> list_children(pid_t pid);

// `pid` and its descendants, parents first (processes that exit meanwhile are
// left out; a listing the caller may not read ends that branch).
std::vector<pid_t> tree_pids(pid_t pid);

}  // namespace crfs::state
