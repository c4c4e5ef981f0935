/*
 * crfs_kdev.h - a tiny C client for /dev/crfs, the crfs kernel module's
 * device (ABI: include/crfs/kdev.h, docs/kernel-module.md).
 *
 * Used by crfsd (C++) and by libcrfs (C). Plain C, no allocation, only
 * open/ioctl/close; every function returns 0 (or an fd) on success and a
 * negative errno on failure:
 *
 *     -ENOENT  the module is not loaded (no /dev/crfs)
 *     -ESRCH   no such task
 *     -EACCES  no ptrace rights over the task (set/clear)
 *     -EINVAL  bad reason (empty, control characters, too long) or flags
 */
#ifndef CRFS_LIB_KDEV_H
#define CRFS_LIB_KDEV_H

#include <sys/types.h>

#include "crfs/kdev.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Opens /dev/crfs read-write, close-on-exec. Returns the fd or -errno. */
int crfs_kdev_open(void);

/* Marks of task `pid` (0: the caller); with CRFS_KDEV_QUERY_THREAD_GROUP,
 * of every thread of its thread group. Fills *out. */
int crfs_kdev_read(int fd, pid_t pid, unsigned int flags, struct crfs_kdev_query* out);

/* Sets the mark of task `pid` (0: the calling thread) to `reason`
 * (1..CRFS_KDEV_REASON_MAX-4 bytes of printable text). */
int crfs_kdev_set(int fd, pid_t pid, const char* reason);

/* Clears the mark of task `pid` (0: the calling thread). */
int crfs_kdev_clear(int fd, pid_t pid);

/* Counters of the module's mark store. */
int crfs_kdev_read_stats(int fd, struct crfs_kdev_stats* out);

#ifdef __cplusplus
}
#endif

#endif /* CRFS_LIB_KDEV_H */
