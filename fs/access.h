// Who may do what to a task. crfs mounts without default_permissions and
// decides every request itself from the caller's credentials in the FUSE
// request, checked on every call (the kernel's mode bits are not trusted).
#pragma once

#include <sys/types.h>

#include "common/result.h"
#include "fs/tasks.h"

namespace crfs::fs {

// The credentials FUSE reports for a request: fsuid, fsgid, and the calling
// thread's id in the daemon's pid namespace.
struct Caller {
    uid_t uid = 0;
    gid_t gid = 0;
    pid_t tid = 0;
};

inline constexpr int kCapSetgid = 6;
inline constexpr int kCapSetuid = 7;
inline constexpr int kCapSysPtrace = 19;
inline constexpr int kCapSysAdmin = 21;

// Whether thread `tid` has capability `cap` in its effective set (capget(2):
// no need to have the kernel format /proc/<tid>/status) and lives in the
// daemon's user namespace, where that capability means something for the
// daemon's objects. False if it is gone.
bool has_cap(pid_t tid, int cap);

// The ptrace access rule, as the kernel's __ptrace_may_access() applies it
// with PTRACE_MODE_FSCREDS (what /proc uses):
//   - the task itself, or
//   - a caller with CAP_SYS_PTRACE in its effective set, or
//   - a caller whose fsuid equals the task's real, effective and saved uid,
//     whose fsgid equals its real, effective and saved gid, and the task is
//     dumpable.
// Dumpable is read from the owner of /proc/<pid>, which the kernel sets to
// root for a non-dumpable task (task_dump_owner()); a task with euid 0 looks
// dumpable this way, but only a caller with uid 0 matches such a task.
// EACCES when denied; ESRCH when the task or the caller is gone.
Status may_ptrace(const Caller& caller, const TaskId& task);

// Pure part of the rule, unit-tested: the uid/gid/dumpable comparison.
bool creds_match(uid_t caller_uid, gid_t caller_gid, const uid_t task_uid[4],
                 const gid_t task_gid[4], bool dumpable);

}  // namespace crfs::fs
