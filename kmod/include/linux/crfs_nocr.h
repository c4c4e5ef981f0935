/* SPDX-License-Identifier: GPL-2.0 */
/*
 * crfs nocr marks: kernel code marks a task uncheckpointable with a reason,
 * and clears the mark again once the state that prevents checkpoint is gone
 * (being uncheckpointable is transient; no task may deny checkpoint forever).
 *
 *	crfs_set_current_nocr("CR: sys_remap_file_pages not supported yet.");
 *	...
 *	crfs_set_current_cr();
 *
 * The functions live in crfs.ko. A caller is built against them when
 * CONFIG_CRFS_NOCR is y or m (out of tree: define CONFIG_CRFS_NOCR_MODULE=1
 * in its ccflags); otherwise every call compiles to nothing.
 *
 * Each task has one "mark" reason (a second set replaces the first); the
 * module's own hooks (remap_file_pages, PI futexes, io_uring) keep separate
 * reasons that crfs_set_task_cr() does not touch.
 *
 * Context: any context; setting allocates with GFP_ATOMIC and may fail with
 * -ENOMEM. The caller holds a reference on @t. Setting a mark on a task that
 * is already exiting fails with -ESRCH: its marks are freed at exit.
 */
#ifndef _LINUX_CRFS_NOCR_H
#define _LINUX_CRFS_NOCR_H

#include <linux/errno.h>
#include <linux/sched.h>
#include <linux/types.h>

#if IS_ENABLED(CONFIG_CRFS_NOCR)

int crfs_set_task_nocr(struct task_struct *t, const char *reason);
void crfs_set_task_cr(struct task_struct *t);
bool crfs_task_nocr(struct task_struct *t);

#else

static inline int crfs_set_task_nocr(struct task_struct *t, const char *reason)
{
	return 0;
}

static inline void crfs_set_task_cr(struct task_struct *t)
{
}

static inline bool crfs_task_nocr(struct task_struct *t)
{
	return false;
}

#endif

static inline int crfs_set_current_nocr(const char *reason)
{
	return crfs_set_task_nocr(current, reason);
}

static inline void crfs_set_current_cr(void)
{
	crfs_set_task_cr(current);
}

#endif /* _LINUX_CRFS_NOCR_H */
