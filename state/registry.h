// The registry of state kinds: `reason` is the union of their detect results,
// and the checkpointer refuses through the same call, so the two cannot drift
// apart (docs/state.md lists every kind: captured and restored, or refused).
#pragma once

#include <sys/types.h>

#include <span>

#include "state/kind.h"

namespace crfs::state {

std::span<const StateKind> state_kinds();

// Every detected reason of task `pid`, in registry order. ESRCH if it is gone.
Result<Reasons> detect_reasons(pid_t pid, pid_t self_tgid);
// The same, through a view the caller keeps: the checkpoint reuses what the
// detectors read while the task is frozen (smaps is the costly one).
Result<Reasons> detect_reasons(TaskView& view);

}  // namespace crfs::state
