// Process attributes that /proc and plain syscalls give without entering the
// task: identity, credentials, fs context, rlimits, personality, mm layout.
// Parsers are split from readers so they are unit-tested on fixed text; stat
// and status are parsed by common/procfs.h, for everyone.
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

// Everything of this file that goes into the image.
struct TaskAttrs {
    TaskStat stat;
    TaskStatus status;
    uint32_t personality = 0;
    std::string cwd, root, exe;
    std::vector<uint64_t> auxv;
    image::RlimitsRecord rlimits{};
};
// Reads them for a frozen task.
Result<TaskAttrs> read_task_attrs(pid_t pid);

// The 16 soft and hard limits of /proc/<pid>/limits, in the kernel's RLIMIT_*
// order. Read there, not with prlimit(2): prlimit on another user's task needs
// CAP_SYS_RESOURCE, which root lacks on some machines.
struct Limits {
    uint64_t cur[16], max[16];
};
Result<Limits> parse_limits(std::string_view text);

// "/proc/<pid>/<name>" and readlink of it; the task being gone is ESRCH.
std::string proc_path(pid_t pid, std::string_view name);
Result<std::string> read_link(const std::string& path);
Result<std::string> read_proc(pid_t pid, std::string_view name, size_t max = 16 << 20);

}  // namespace crfs
