/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * User ABI of /dev/crfs, the misc device of the crfs kernel module.
 *
 * Pure C, shared by the module (kmod/), the userspace client
 * (lib/crfs_kdev.c), crfsd and the guest tests. Every struct has a fixed
 * layout with explicit padding so that 32- and 64-bit callers agree.
 *
 * Protocol: open("/dev/crfs", O_RDWR | O_CLOEXEC), then ioctl():
 *
 *   CRFS_IOC_QUERY  read the marks of a task (or of its whole thread group).
 *                   Any process may query any task, like /proc/<pid>/stat.
 *   CRFS_IOC_SET    set the "mark" reason of a task: the caller itself, or
 *                   another task if the kernel's ptrace access check
 *                   (PTRACE_MODE_ATTACH_REALCREDS) allows it; else EACCES.
 *   CRFS_IOC_CLEAR  clear that mark again (same rights).
 *   CRFS_IOC_STATS  counters of the mark store, for tests.
 *
 * Pids are interpreted in the caller's pid namespace; 0 means the caller.
 * Only the "mark" source can be set or cleared from userspace; the hook
 * sources follow kernel state and clear themselves (docs/kernel-module.md).
 */
#ifndef CRFS_KDEV_H
#define CRFS_KDEV_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define CRFS_KDEV_PATH "/dev/crfs"

/* Room for a reason: up to 1024 bytes of text, a NUL, padding. */
#define CRFS_KDEV_REASON_MAX 1028

/* Marks returned by one CRFS_IOC_QUERY; `total` tells if more existed. */
#define CRFS_KDEV_MAX_MARKS 8

/* Where a mark comes from. */
enum crfs_kdev_source {
	CRFS_KDEV_SRC_MARK = 0,     /* crfs_set_task_nocr() or CRFS_IOC_SET */
	CRFS_KDEV_SRC_REMAP = 1,    /* remap_file_pages() range still mapped */
	CRFS_KDEV_SRC_PI_FUTEX = 2, /* holds a PI futex taken in the kernel */
	CRFS_KDEV_SRC_IO_URING = 3, /* created an io_uring that still exists */
};

struct crfs_kdev_mark {
	__s32 tid;    /* thread carrying the mark, caller's pid namespace */
	__u32 source; /* enum crfs_kdev_source */
	char reason[CRFS_KDEV_REASON_MAX]; /* NUL-terminated */
};

/* CRFS_IOC_QUERY flags */
#define CRFS_KDEV_QUERY_THREAD_GROUP 0x1u /* marks of every thread of pid */

struct crfs_kdev_query {
	__s32 pid;   /* in: task (thread) id; 0 = caller */
	__u32 flags; /* in: CRFS_KDEV_QUERY_* */
	__u32 nr;    /* out: entries filled in marks[] */
	__u32 total; /* out: marks found; > nr if marks[] was too small */
	struct crfs_kdev_mark marks[CRFS_KDEV_MAX_MARKS];
};

struct crfs_kdev_set {
	__s32 pid;   /* task (thread) id; 0 = caller */
	__u32 flags; /* must be 0 */
	char reason[CRFS_KDEV_REASON_MAX]; /* SET: non-empty, printable; CLEAR: ignored */
};

struct crfs_kdev_stats {
	__u64 live;     /* tasks that carry at least one mark now */
	__u64 allocated; /* mark entries ever allocated */
	__u64 freed;    /* mark entries ever freed (after the RCU grace period) */
	__u64 missed;   /* hook hits lost (kretprobe instances exhausted) */
	__u64 hooks;    /* active hooks, see CRFS_KDEV_HOOK_* */
};

/* crfs_kdev_stats.hooks: bit (1 << source) when the set point of a hook
 * source is in place, bit (1 << (CRFS_KDEV_HOOK_CLEAR_SHIFT + source)) when
 * its clear point is (without it the source stays set until exit).
 */
#define CRFS_KDEV_HOOK_CLEAR_SHIFT 16

#define CRFS_KDEV_IOC_MAGIC 0xCF
#define CRFS_IOC_QUERY _IOWR(CRFS_KDEV_IOC_MAGIC, 1, struct crfs_kdev_query)
#define CRFS_IOC_SET _IOW(CRFS_KDEV_IOC_MAGIC, 2, struct crfs_kdev_set)
#define CRFS_IOC_CLEAR _IOW(CRFS_KDEV_IOC_MAGIC, 3, struct crfs_kdev_set)
#define CRFS_IOC_STATS _IOR(CRFS_KDEV_IOC_MAGIC, 4, struct crfs_kdev_stats)

#endif /* CRFS_KDEV_H */
