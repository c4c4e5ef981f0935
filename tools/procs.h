// Processes as `crfs ps` and `crfs dump` see them, through libproc2.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"

namespace crfs::tool {

struct ProcInfo {
    pid_t pid = 0;
    pid_t ppid = 0;
    std::string user;     // effective user name (or number)
    std::string command;  // the command line, or [comm] for kernel threads
    uint64_t rss_bytes = 0;
};

// Every process (thread-group leader), sorted by pid.
Result<std::vector<ProcInfo>> list_processes();

// One process, or ESRCH.
Result<ProcInfo> process_info(pid_t pid);

// pid and its descendants, in list order (`all` sorted by pid).
std::vector<ProcInfo> process_tree(const std::vector<ProcInfo>& all, pid_t pid);

}  // namespace crfs::tool
