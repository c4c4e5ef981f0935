// Per-task settings restored exactly (image record `settings`, docs/state.md):
// scheduling policy, real-time priority and reset-on-fork, CPU affinity,
// oom_score_adj, timer slack, THP disable, child subreaper, dumpable and the
// membarrier registrations. The ones only the task itself can read (timer
// slack without CAP_SYS_NICE, subreaper, dumpable, membarrier, THP disable)
// are asked by remote syscalls while it is frozen; the others come from
// sched_get*(pid) and /proc.
#pragma once

#include <sys/types.h>

#include <string>

#include "checkpoint/remote_syscall.h"
#include "common/result.h"
#include "crfs/image_format.h"

namespace crfs {

struct TaskSettings {
    image::SettingsRecord rec{};
    std::string cpu_mask;  // sched_getaffinity bytes
};

Result<TaskSettings> read_task_settings(pid_t pid, RemoteSyscall& rs);

}  // namespace crfs
