// Process attributes that /proc and plain syscalls give without entering the
// task: identity, credentials, fs context, rlimits, personality, mm layout.
// Parsers are split from readers so they are unit-tested on fixed text.
// (common/procfs.h on main parses stat/status for the daemon; the checkpoint
// needs more fields of both, so it parses them here.)
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "crfs/image_format.h"

namespace crfs {

// /proc/<pid>/stat, the fields the checkpoint needs (man 5 proc numbering).
struct TaskStat {
    std::string comm;
    char state = '?';
    int32_t ppid = 0, pgrp = 0, session = 0;
    int32_t nice = 0;                                                 // 19
    int64_t num_threads = 0;                                          // 20
    uint64_t starttime = 0;                                           // 22
    uint64_t start_code = 0, end_code = 0, start_stack = 0;           // 26 27 28
    uint64_t start_data = 0, end_data = 0, start_brk = 0;             // 45 46 47
    uint64_t arg_start = 0, arg_end = 0, env_start = 0, env_end = 0;  // 48..51
};
Result<TaskStat> parse_task_stat(std::string_view text);
Result<TaskStat> read_task_stat(pid_t pid);

// /proc/<pid>/status, the fields the checkpoint needs.
struct TaskStatus {
    int32_t tracer_pid = 0;
    uint32_t uid[4] = {}, gid[4] = {};
    std::vector<uint32_t> groups;
    uint64_t cap_inh = 0, cap_prm = 0, cap_eff = 0, cap_bnd = 0, cap_amb = 0;
    uint32_t no_new_privs = 0;
    uint32_t seccomp = 0;  // 0 none, 1 strict, 2 filter
    uint32_t umask = 022;
    bool has_umask = false;
    uint64_t rss_bytes = 0;  // RssAnon + RssShmem + VmSwap: a size hint for the page buffer
};
Result<TaskStatus> parse_task_status(std::string_view text);
Result<TaskStatus> read_task_status(pid_t pid);

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
