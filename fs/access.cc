#include "fs/access.h"

#include <linux/capability.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>

#include "common/procfs.h"

namespace crfs::fs {

bool creds_match(uid_t caller_uid, gid_t caller_gid, const uid_t task_uid[4],
                 const gid_t task_gid[4], bool dumpable) {
    for (int i = 0; i < 3; ++i)
        if (task_uid[i] != caller_uid || task_gid[i] != caller_gid) return false;
    return dumpable;
}

namespace {

// Whether thread `tid` lives in the daemon's user namespace. A capability
// counts for the daemon's objects only there: root inside `unshare -Ur`
// holds every capability of its own namespace and none over the daemon's.
bool in_daemon_userns(pid_t tid) {
    struct stat mine, theirs;
    std::string path = "/proc/" + std::to_string(tid) + "/ns/user";
    if (::stat("/proc/self/ns/user", &mine) < 0 || ::stat(path.c_str(), &theirs) < 0) return false;
    return mine.st_dev == theirs.st_dev && mine.st_ino == theirs.st_ino;
}

}  // namespace

bool has_cap(pid_t tid, int cap) {
    if (tid <= 0 || !in_daemon_userns(tid)) return false;
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, tid};
    __user_cap_data_struct caps[2]{};
    if (::syscall(SYS_capget, &hdr, caps) < 0) return false;
    return caps[cap / 32].effective & (1u << (cap % 32));
}

Status may_ptrace(const Caller& caller, const TaskId& task) {
    std::string who = "task " + std::to_string(task.pid);
    if (caller.tid == task.pid) return {};  // the task's main thread
    if (has_cap(caller.tid, kCapSysPtrace)) return {};
    auto caller_status = read_status(caller.tid);
    if (!caller_status) return sys_error(EACCES, who + ": caller's credentials unknown");
    if (caller_status->tgid == task.pid) return {};  // another thread of the task

    auto status = read_status(task.pid);
    if (!status) return std::unexpected(status.error());
    struct stat st;
    std::string dir = "/proc/" + std::to_string(task.pid);
    if (::stat(dir.c_str(), &st) < 0) return sys_error(ESRCH, who);
    bool dumpable = st.st_uid == status->uid[1] && st.st_gid == status->gid[1];
    if (!task_alive(task)) return sys_error(ESRCH, who);
    if (!creds_match(caller.uid, caller.gid, status->uid, status->gid, dumpable))
        return sys_error(EACCES,
                         who + ": caller uid " + std::to_string(caller.uid) + " may not ptrace it");
    return {};
}

}  // namespace crfs::fs
