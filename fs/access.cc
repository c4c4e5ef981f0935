#include "fs/access.h"

#include <linux/capability.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>

namespace crfs::fs {

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

bool trusted_for(const Caller& caller, const TaskId& task) {
    if (caller.tid <= 0) return false;
    if (caller.tid == task.pid) return true;
    if (has_cap(caller.tid, kCapSysPtrace)) return true;
    auto tgid = tgid_of(caller.tid);
    return tgid && *tgid == task.pid;
}

Result<Creds> caller_creds(const Caller& caller) {
    return creds_of_thread(caller.tid, caller.uid, caller.gid, in_daemon_userns(caller.tid));
}

}  // namespace crfs::fs
