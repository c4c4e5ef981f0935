/* SPDX-License-Identifier: GPL-2.0 */
/*
 * crfs.ko internals: the per-task mark store (store.c), the hooks that set
 * and clear marks (hooks.c) and the /dev/crfs device (dev.c).
 */
#ifndef CRFS_INTERNAL_H
#define CRFS_INTERNAL_H

#include <linux/fs.h>
#include <linux/mm_types.h>
#include <linux/sched.h>
#include <linux/types.h>

#include <crfs/kdev.h>
#include <linux/crfs_nocr.h>

#define CRFS_REASON_MAX CRFS_KDEV_REASON_MAX

/* Mark sources, also the bit numbers of crfs_entry.bits. */
enum crfs_src {
	CRFS_SRC_MARK = CRFS_KDEV_SRC_MARK,
	CRFS_SRC_REMAP = CRFS_KDEV_SRC_REMAP,
	CRFS_SRC_PI = CRFS_KDEV_SRC_PI_FUTEX,
	CRFS_SRC_RING = CRFS_KDEV_SRC_IO_URING,
	CRFS_NR_SRC
};

/* Per-source capacity. When full, the source is marked "overflowed" and
 * stays set until the task exits: we no longer know what to wait for.
 */
#define CRFS_MAX_REMAP 4
#define CRFS_MAX_PI 8
#define CRFS_MAX_RING 4

/* A range rearranged by remap_file_pages(). mm and file are identity
 * cookies only (no reference is held); they are compared, never followed.
 */
struct crfs_remap {
	struct mm_struct *mm;
	struct file *file;   /* NULL: unknown, any shared file mapping matches */
	unsigned long start; /* page aligned */
	unsigned long len;   /* page aligned, > 0 */
	unsigned long pgoff; /* file page that start maps */
};

/* A PI futex acquired through the kernel, identified by (mm, uaddr). */
struct crfs_pi {
	struct mm_struct *mm;
	unsigned long uaddr;
};

int crfs_store_init(void);
void crfs_store_exit(void);

/* The "mark" source: set by the exported API and CRFS_IOC_SET. */
int crfs_store_set_mark(struct task_struct *t, const char *reason);
void crfs_store_clear_mark(struct task_struct *t);

/* Hook sources; all may be called from atomic context. */
void crfs_store_add_remap(struct task_struct *t, const struct crfs_remap *r);
void crfs_store_add_pi(struct task_struct *t, const struct crfs_pi *p);
void crfs_store_del_pi(struct task_struct *t, const struct crfs_pi *p);
void crfs_store_add_ring(struct task_struct *t, struct file *ring);
void crfs_store_ring_released(struct file *ring);

/* Process context, may sleep: drop remap ranges that are no longer mapped
 * and PI futexes that @t no longer holds (see hooks.c).
 */
void crfs_store_revalidate(struct task_struct *t);

bool crfs_store_has(struct task_struct *t);

/* Appends @t's marks to @q (tid as seen from the caller). */
void crfs_store_report(struct task_struct *t, struct crfs_kdev_query *q);

void crfs_store_stats(struct crfs_kdev_stats *st);

/* hooks.c */
int crfs_hooks_init(void);
void crfs_hooks_exit(void);
u64 crfs_hooks_active(void);
u64 crfs_hooks_missed(void);
bool crfs_remap_still_mapped(struct mm_struct *mm, const struct crfs_remap *r);
bool crfs_pi_still_held(struct task_struct *t, const struct crfs_pi *p);
const char *crfs_hook_reason(enum crfs_src src);

/* dev.c */
int crfs_dev_init(void);
void crfs_dev_exit(void);

#endif /* CRFS_INTERNAL_H */
