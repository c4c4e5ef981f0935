/* libcrfs's way through /dev/crfs (the crfs kernel module), used before the
 * mount when the device is present. Internal to libcrfs.
 *
 * Each function returns -ENODEV when the device is absent (the caller then
 * uses the mount), else the result of the nocr C API (include/crfs/nocr.h):
 * 0, 1 (marked), or a negative errno. Marks are set on the process (its
 * thread-group leader), as the mount does. */
#ifndef CRFS_LIB_NOCR_KDEV_H
#define CRFS_LIB_NOCR_KDEV_H

#include <sys/types.h>

int crfs_nocr_kdev_set(pid_t pid, const char* reason);
int crfs_nocr_kdev_clear(pid_t pid);
int crfs_nocr_kdev_query(pid_t pid);

#endif /* CRFS_LIB_NOCR_KDEV_H */
