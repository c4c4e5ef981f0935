// Detected reasons: the state the checkpointer cannot save yet, computed fresh
// on every read, so a reason disappears as soon as its cause does.
//
// The rule: `reason` is empty exactly when a checkpoint would succeed. Each
// issue that teaches the checkpointer a new kind of state removes the matching
// detector here.
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/procfs.h"
#include "common/result.h"

namespace crfs::fs {

// Why file descriptor whose /proc/<pid>/fd link reads `target` and whose
// file has type `mode` cannot be checkpointed, or nullopt when it can
// (regular files and character devices). `socket_info` describes a socket
// inode ("TCP socket in state ESTABLISHED"), or nullopt when unknown.
std::optional<std::string> fd_reason(
    std::string_view target, mode_t mode,
    const std::function<std::optional<std::string>(uint64_t inode)>& socket_info);

// Reasons about the task as a whole, from its stat and status.
// `tracer_tgid` is the process of status.tracer_pid (a thread id); the
// daemon's own ptrace (`self_tgid`, a checkpoint in progress) is not a reason.
std::vector<std::string> task_reasons(const ProcStat& stat, const ProcStatus& status,
                                      pid_t tracer_tgid, pid_t self_tgid);

// Every detected reason of task `pid`, each "source: text". ESRCH if it is gone.
Result<std::vector<std::string>> detect_reasons(pid_t pid, pid_t self_tgid);

}  // namespace crfs::fs
