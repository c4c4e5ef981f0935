// pdeathsig (PR_SET_PDEATHSIG), state/pdeathsig.cc.
#pragma once

#include <sys/types.h>

#include "common/result.h"
#include "state/timers.h"  // InTask

namespace crfs::state {

// Checkpoint: the task's parent-death signal, asked in the frozen task
// (prctl(PR_GET_PDEATHSIG) as a remote syscall: it shows nowhere in /proc).
// A non-zero one is EBUSY: the image root's parent is outside the image.
Status check_pdeathsig(pid_t pid, const InTask& in);

}  // namespace crfs::state
