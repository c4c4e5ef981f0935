// Who may do what to a task. crfs mounts without default_permissions and
// decides every request itself, on every call (the kernel's mode bits on the
// FUSE files are not trusted). It never re-implements the kernel's ptrace
// rule: a caller without CAP_SYS_PTRACE is checked by the kernel itself, in a
// worker process that holds exactly the caller's credentials
// (checkpoint/worker.h).
#pragma once

#include <sys/types.h>

#include "checkpoint/creds.h"
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

// The fast path, where no kernel check is needed to know the answer: the
// caller is a thread of `task` itself, or holds CAP_SYS_PTRACE in the daemon's
// user namespace (root). Everyone else goes through a worker.
bool trusted_for(const Caller& caller, const TaskId& task);

// The caller's full credentials as the kernel shows them in
// /proc/<tid>/status; capabilities only if it lives in the daemon's user
// namespace. EACCES if the thread is gone or no longer matches the request.
Result<Creds> caller_creds(const Caller& caller);

}  // namespace crfs::fs
