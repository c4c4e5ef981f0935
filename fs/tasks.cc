#include "fs/tasks.h"

#include <libproc2/pids.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <string>

#include "fs/inode.h"

namespace crfs::fs {

Result<Task> find_task(pid_t pid) {
    std::string who = "task " + std::to_string(pid);
    if (pid <= 0) return sys_error(ESRCH, who);
    // pidfd_open() refuses a thread that is not a thread-group leader
    // (EINVAL): the cheapest leader test there is; /proc/<pid>/status would
    // tell too, but generating it costs more than the rest of a lookup.
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (pidfd < 0)
        return sys_error(ESRCH, errno == EINVAL ? who + " (a thread, not a process)" : who);
    ::close(pidfd);
    auto stat = read_stat(pid);
    if (!stat) return std::unexpected(stat.error());
    struct stat st;
    std::string dir = "/proc/" + std::to_string(pid);
    if (::stat(dir.c_str(), &st) < 0) return sys_error(ESRCH, "stat " + dir);
    return Task{TaskId{pid, stat->starttime}, st.st_uid, st.st_gid};
}

Result<Task> find_task(pid_t pid, uint64_t start_low_bits) {
    auto t = find_task(pid);
    if (t && start_low(t->id.starttime) != start_low_bits)
        return sys_error(ESRCH, "task " + std::to_string(pid) + " (pid reused)");
    return t;
}

bool task_alive(const TaskId& id) {
    auto st = read_stat(id.pid);
    return st && st->starttime == id.starttime;
}

bool task_exited(const TaskId& id) {
    auto st = read_stat(id.pid);
    return !st || st->starttime != id.starttime || st->state == 'Z' || st->state == 'X';
}

Result<pid_t> tgid_of(pid_t tid) {
    auto status = read_status(tid);
    if (!status) return std::unexpected(status.error());
    return status->tgid;
}

Result<std::vector<TaskId>> list_tasks() {
    // libproc2's pids_info caches state between reaps and is not thread-safe:
    // one per daemon, used under a lock.
    static std::mutex mu;
    static pids_info* info = nullptr;
    static pids_item items[] = {PIDS_ID_PID, PIDS_TICS_BEGAN};
    std::lock_guard lock(mu);
    if (!info) {
        int rc = procps_pids_new(&info, items, 2);
        if (rc < 0) return sys_error(-rc, "procps_pids_new");
    }
    pids_fetch* f = procps_pids_reap(info, PIDS_FETCH_TASKS_ONLY);
    if (!f) return errno_error("procps_pids_reap");
    std::vector<TaskId> out;
    out.reserve(static_cast<size_t>(f->counts->total));
    for (int i = 0; i < f->counts->total; ++i) {
        pids_stack* s = f->stacks[i];
        out.push_back(TaskId{PIDS_VAL(0, s_int, s, info), PIDS_VAL(1, ull_int, s, info)});
    }
    std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.pid < b.pid; });
    return out;
}

}  // namespace crfs::fs
