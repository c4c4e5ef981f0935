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

Status may_ptrace(const Caller& caller, const TaskId& task) {
    std::string who = "task " + std::to_string(task.pid);
    if (caller.tid == task.pid) return {};  // the task's main thread
    // capget() reads another thread's capabilities without making the kernel
    // format all of /proc/<tid>/status.
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, caller.tid};
    __user_cap_data_struct caps[2]{};
    if (caller.tid <= 0 || ::syscall(SYS_capget, &hdr, caps) < 0)
        return sys_error(EACCES, who + ": caller's credentials unknown");
    if (caps[kCapSysPtrace / 32].effective & (1u << (kCapSysPtrace % 32))) return {};
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
