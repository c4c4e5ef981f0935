// /proc helpers of the checkpointer: a file or link of /proc/<pid>, the
// task being gone as ESRCH. stat and status are parsed by common/procfs.h, for
// everyone. The task kind's attributes (identity, credentials, fs context,
// rlimits, personality, mm layout) are read in state/task_attrs.cc.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/procfs.h"
#include "common/result.h"
#include "crfs/image_format.h"

namespace crfs {

// /proc/<pid>/stat and status: one parser, in common/procfs. The old names
// stay for the checkpoint's callers.
using TaskStat = ProcStat;
using TaskStatus = ProcStatus;
inline Result<TaskStat> read_task_stat(pid_t pid) {
    return read_stat(pid);
}
inline Result<TaskStatus> read_task_status(pid_t pid) {
    return read_status(pid);
}

// TracerPid of /proc/<pid>/status (0: not traced).
Result<int32_t> read_tracer_pid(pid_t pid);

// "/proc/<pid>/<name>" and readlink of it; the task being gone is ESRCH.
std::string proc_path(pid_t pid, std::string_view name);
Result<std::string> read_link(const std::string& path);
Result<std::string> read_proc(pid_t pid, std::string_view name, size_t max = 16 << 20);

}  // namespace crfs
