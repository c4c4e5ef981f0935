/*
 * crfs/nocr.h - mark a task uncheckpointable, and clear the mark again
 *
 * SYNOPSIS
 *     #include <crfs/nocr.h>
 *     link with -lcrfs
 *
 *     int crfs_set_current_nocr(const char *reason);
 *     int crfs_set_current_cr(void);
 *     int crfs_set_task_nocr(pid_t pid, const char *reason);
 *     int crfs_set_task_cr(pid_t pid);
 *     int crfs_task_nocr(pid_t pid);
 *
 * DESCRIPTION
 *     A task that enters a state crfs cannot checkpoint (a PI futex, a
 *     device it drives by hand, a transaction in flight) marks itself
 *     uncheckpointable with a human-readable reason; while the mark is set,
 *     reading /crfs/<pid>/image fails with EBUSY and /crfs/<pid>/reason
 *     shows "nocr: <reason>". Being uncheckpointable is transient: the task
 *     clears the mark again when it leaves that state, so that no task can
 *     deny checkpoint forever.
 *
 *     crfs_set_current_nocr() marks the calling process (its thread group)
 *     with `reason`. Setting a mark on a task that has one replaces the
 *     reason. crfs_set_current_cr() clears the calling process's mark.
 *
 *     crfs_set_task_nocr() and crfs_set_task_cr() do the same for process
 *     `pid` on its behalf (a proxy). The caller needs ptrace rights over it:
 *     be the task, have CAP_SYS_PTRACE, or have the same uid and gid as a
 *     dumpable task.
 *
 *     crfs_task_nocr() tells whether process `pid` has a mark. Anyone may ask.
 *
 *     `reason` is printable text (UTF-8, no control characters) of 1 to
 *     1024 bytes; one trailing newline is ignored. The reason "1" sets the
 *     generic reason "CR: marked uncheckpointable".
 *
 *     Marks are kept per task (pid and start time): a new process that
 *     reuses the pid does not inherit one, and a mark ends when its task
 *     exits. They survive a restart of the crfs daemon.
 *
 *     The functions talk to the crfs daemon through its mount: the
 *     directory named by the environment variable CRFS_ROOT, else /crfs.
 *     Where the crfs kernel module is loaded (/dev/crfs), marks are set in
 *     the kernel instead (crfsd shows them too), clearing clears both, and
 *     crfs_task_nocr() also counts the marks the kernel sets by itself
 *     (docs/kernel-module.md).
 *     They are thread-safe and async-signal-safe (open, write, read, close).
 *
 * RETURN VALUE
 *     crfs_task_nocr() returns 1 if the task is marked, 0 if not. The other
 *     functions return 0 on success. On error all return a negative errno:
 *
 *     -EINVAL  `reason` is NULL, empty, "0", longer than 1024 bytes, or not
 *              printable text.
 *     -EACCES  the caller has no ptrace rights over `pid`.
 *     -ENOENT  no such process, or crfs is not mounted at $CRFS_ROOT or /crfs.
 *     -ESRCH   the process exited during the call.
 *     -EIO     the daemon could not persist the mark, or an unexpected reply.
 *
 * EXAMPLE
 *     if (crfs_set_current_nocr("CR: PI futexes not supported yet.") < 0)
 *         perror("crfs_set_current_nocr");
 *     pthread_mutex_lock(&pi_mutex);
 *     ...
 *     pthread_mutex_unlock(&pi_mutex);
 *     crfs_set_current_cr();
 *
 * SEE ALSO
 *     /crfs/<pid>/nocr, /crfs/<pid>/reason in README.md.
 */
#ifndef CRFS_NOCR_H
#define CRFS_NOCR_H

#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

int crfs_set_current_nocr(const char *reason);
int crfs_set_current_cr(void);
int crfs_set_task_nocr(pid_t pid, const char *reason);
int crfs_set_task_cr(pid_t pid);
int crfs_task_nocr(pid_t pid);

#ifdef __cplusplus
}
#endif

#endif /* CRFS_NOCR_H */
