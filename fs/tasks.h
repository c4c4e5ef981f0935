// Finding and listing tasks: the thread-group leaders that get a directory.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "common/procfs.h"
#include "common/result.h"

namespace crfs::fs {

// A task named so that a reused pid is a different task.
struct TaskId {
    pid_t pid = 0;
    uint64_t starttime = 0;
    friend bool operator==(const TaskId&, const TaskId&) = default;
};

struct Task {
    TaskId id;
    uid_t uid = 0;  // owner of /proc/<pid>: the euid, or root while not dumpable
    gid_t gid = 0;
};

// The live thread-group leader `pid`: ESRCH if there is none (gone, or `pid`
// names a thread that is not a leader).
Result<Task> find_task(pid_t pid);

// Same, and the task must still be the one started at `start_low` (the
// inode's low start-time bits); otherwise ESRCH.
Result<Task> find_task(pid_t pid, uint64_t start_low);

// True while `id` names a live task (same pid, same start time).
bool task_alive(const TaskId& id);

// True once `id` has exited: gone, reused, or a zombie waiting to be reaped.
bool task_exited(const TaskId& id);

// The thread group of thread `tid` (FUSE reports callers by thread id).
Result<pid_t> tgid_of(pid_t tid);

// Every thread-group leader now, sorted by pid. Uses libproc2.
Result<std::vector<TaskId>> list_tasks();

}  // namespace crfs::fs
