// SPDX-License-Identifier: GPL-2.0
/*
 * Built-in hooks: kprobes that set kernel marks, and the points where each
 * mark is cleared again. Set points are the successful returns of:
 *
 *  remap_file_pages()  -> CRFS_SRC_REMAP, remembers (mm, file, range, pgoff).
 *	Cleared when no VMA of the range still maps that file at the remapped
 *	offset (munmap, mmap over it, mremap away, exec), checked by
 *	crfs_store_revalidate() whenever marks are read from process context.
 *  futex_lock_pi(), futex_wait_requeue_pi() (FUTEX_LOCK_PI, LOCK_PI2,
 *	TRYLOCK_PI, WAIT_REQUEUE_PI) -> CRFS_SRC_PI, remembers (mm, uaddr).
 *	Cleared by a successful futex_unlock_pi() of that uaddr, and on
 *	revalidation once the futex word no longer holds the task's TID
 *	(userspace unlocks an uncontended PI futex without a syscall).
 *  io_uring_setup() -> CRFS_SRC_RING, remembers the ring's struct file.
 *	Cleared when that file is released (io_uring_release(), the last
 *	reference is gone: closed in every process and unregistered).
 *
 * Every mark also goes when its task exits (store.c). A source whose
 * bookkeeping overflows stays set until exit.
 *
 * Handlers run with preemption disabled: they never sleep and only take
 * crfs_lock and (trylock) mmap_lock.
 */
#include <linux/file.h>
#include <linux/fdtable.h>
#include <linux/futex.h>
#include <linux/kprobes.h>
#include <linux/mm.h>
#include <linux/pid_namespace.h>
#include <linux/ptrace.h>
#include <linux/sched/mm.h>

#include "crfs.h"

static const char *const crfs_reasons[CRFS_NR_SRC] = {
	[CRFS_SRC_MARK] = "nocr",
	[CRFS_SRC_REMAP] = "CR: sys_remap_file_pages not supported yet.",
	[CRFS_SRC_PI] = "CR: PI futexes not supported yet.",
	[CRFS_SRC_RING] = "CR: io_uring not supported yet.",
};

const char *crfs_hook_reason(enum crfs_src src)
{
	return crfs_reasons[src];
}

/* remap_file_pages */

struct crfs_remap_args {
	unsigned long start;
	unsigned long size;
	unsigned long pgoff;
};

/* __x64_sys_remap_file_pages(const struct pt_regs *regs): the user's
 * arguments are in the saved registers (start, size, prot, pgoff, flags).
 */
static int crfs_remap_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	const struct pt_regs *u = (const struct pt_regs *)regs->di;
	struct crfs_remap_args *a = (struct crfs_remap_args *)ri->data;

	a->start = u->di;
	a->size = u->si;
	a->pgoff = u->r10;
	return 0;
}

static int crfs_remap_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	const struct crfs_remap_args *a = (const struct crfs_remap_args *)ri->data;
	struct mm_struct *mm = current->mm;
	struct vm_area_struct *vma;
	struct crfs_remap r = {
		.mm = mm,
		.start = a->start & PAGE_MASK,
		.len = a->size & PAGE_MASK,
		.pgoff = a->pgoff,
	};

	if (regs_return_value(regs) != 0 || !mm || !r.len)
		return 0;
	/* The file only sharpens the clear test; without it any shared
	 * mapping at the remapped offsets keeps the mark.
	 */
	if (mmap_read_trylock(mm)) {
		vma = find_vma(mm, r.start);
		if (vma && vma->vm_start <= r.start)
			r.file = vma->vm_file;
		mmap_read_unlock(mm);
	}
	crfs_store_add_remap(current, &r);
	return 0;
}

bool crfs_remap_still_mapped(struct mm_struct *mm, const struct crfs_remap *r)
{
	unsigned long addr = r->start, end = r->start + r->len;
	unsigned long delta = r->pgoff - (r->start >> PAGE_SHIFT);
	struct vm_area_struct *vma;
	bool found = false;

	mmap_read_lock(mm);
	while (addr < end) {
		vma = find_vma(mm, addr);
		if (!vma || vma->vm_start >= end)
			break;
		if ((vma->vm_flags & VM_SHARED) && vma->vm_file &&
		    (!r->file || vma->vm_file == r->file) &&
		    vma->vm_pgoff - (vma->vm_start >> PAGE_SHIFT) == delta) {
			found = true;
			break;
		}
		addr = vma->vm_end;
	}
	mmap_read_unlock(mm);
	return found;
}

/* PI futexes */

/* futex_lock_pi(uaddr, flags, time, trylock) */
static int crfs_pi_lock_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	*(unsigned long *)ri->data = regs->di;
	return 0;
}

/* futex_wait_requeue_pi(uaddr, flags, val, abs_time, bitset, uaddr2):
 * on success the task owns the PI futex at uaddr2.
 */
static int crfs_pi_requeue_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	*(unsigned long *)ri->data = regs->r9;
	return 0;
}

static int crfs_pi_lock_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct crfs_pi p = {
		.mm = current->mm,
		.uaddr = *(unsigned long *)ri->data,
	};

	if (regs_return_value(regs) == 0 && p.mm)
		crfs_store_add_pi(current, &p);
	return 0;
}

/* futex_unlock_pi(uaddr, flags). Tasks without marks skip the return probe. */
static int crfs_pi_unlock_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	if (!crfs_task_nocr(current))
		return 1;
	*(unsigned long *)ri->data = regs->di;
	return 0;
}

static int crfs_pi_unlock_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct crfs_pi p = {
		.mm = current->mm,
		.uaddr = *(unsigned long *)ri->data,
	};

	if (regs_return_value(regs) == 0)
		crfs_store_del_pi(current, &p);
	return 0;
}

bool crfs_pi_still_held(struct task_struct *t, const struct crfs_pi *p)
{
	u32 val;

	if (access_process_vm(t, p->uaddr, &val, sizeof(val), 0) != sizeof(val))
		return false;
	return (val & FUTEX_TID_MASK) ==
	       (u32)task_pid_nr_ns(t, task_active_pid_ns(t));
}

/* io_uring */

static int crfs_ring_setup_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	long fd = regs_return_value(regs);
	struct file *ring;

	if (fd < 0)
		return 0;
	/* Identity only: if another thread closed the fd already, the ring
	 * was released before we saw it and the mark stays until exit.
	 */
	rcu_read_lock();
	ring = files_lookup_fd_rcu(current->files, fd);
	rcu_read_unlock();
	if (ring)
		crfs_store_add_ring(current, ring);
	return 0;
}

/* io_uring_release(inode, file): the ring's last file reference is gone. */
static int crfs_ring_release_pre(struct kprobe *kp, struct pt_regs *regs)
{
	crfs_store_ring_released((struct file *)regs->si);
	return 0;
}

static struct kretprobe crfs_krps[] = {
	{
		.kp.symbol_name = "__x64_sys_remap_file_pages",
		.entry_handler = crfs_remap_entry,
		.handler = crfs_remap_ret,
		.data_size = sizeof(struct crfs_remap_args),
		.maxactive = 64,
	},
	{
		.kp.symbol_name = "futex_lock_pi",
		.entry_handler = crfs_pi_lock_entry,
		.handler = crfs_pi_lock_ret,
		.data_size = sizeof(unsigned long),
		.maxactive = 512,	/* callers block until they get the lock */
	},
	{
		.kp.symbol_name = "futex_wait_requeue_pi",
		.entry_handler = crfs_pi_requeue_entry,
		.handler = crfs_pi_lock_ret,
		.data_size = sizeof(unsigned long),
		.maxactive = 512,
	},
	{
		.kp.symbol_name = "futex_unlock_pi",
		.entry_handler = crfs_pi_unlock_entry,
		.handler = crfs_pi_unlock_ret,
		.data_size = sizeof(unsigned long),
		.maxactive = 128,
	},
	{
		.kp.symbol_name = "__x64_sys_io_uring_setup",
		.handler = crfs_ring_setup_ret,
		.maxactive = 64,
	},
};

/* Which bit of crfs_kdev_stats.hooks each kretprobe stands for. */
static const u64 crfs_krp_bits[ARRAY_SIZE(crfs_krps)] = {
	BIT_ULL(CRFS_SRC_REMAP),
	BIT_ULL(CRFS_SRC_PI),
	BIT_ULL(CRFS_SRC_PI),
	BIT_ULL(CRFS_KDEV_HOOK_CLEAR_SHIFT + CRFS_SRC_PI),
	BIT_ULL(CRFS_SRC_RING),
};

static bool crfs_krp_on[ARRAY_SIZE(crfs_krps)];

static struct kprobe crfs_ring_release_kp = {
	.symbol_name = "io_uring_release",
	.pre_handler = crfs_ring_release_pre,
};

static bool crfs_ring_release_on;

u64 crfs_hooks_active(void)
{
	u64 bits = 0;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(crfs_krps); i++)
		if (crfs_krp_on[i])
			bits |= crfs_krp_bits[i];
	if (crfs_krp_on[0])	/* remap is cleared by revalidation */
		bits |= BIT_ULL(CRFS_KDEV_HOOK_CLEAR_SHIFT + CRFS_SRC_REMAP);
	if (crfs_ring_release_on)
		bits |= BIT_ULL(CRFS_KDEV_HOOK_CLEAR_SHIFT + CRFS_SRC_RING);
	return bits;
}

u64 crfs_hooks_missed(void)
{
	u64 missed = 0;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(crfs_krps); i++)
		if (crfs_krp_on[i])
			missed += crfs_krps[i].nmissed + crfs_krps[i].kp.nmissed;
	if (crfs_ring_release_on)
		missed += crfs_ring_release_kp.nmissed;
	return missed;
}

/* A hook that cannot be placed (symbol renamed or inlined in this kernel)
 * is reported and left out; its source is then never set, which
 * crfs_kdev_stats.hooks shows.
 */
int crfs_hooks_init(void)
{
	size_t i;
	int ret;

	for (i = 0; i < ARRAY_SIZE(crfs_krps); i++) {
		ret = register_kretprobe(&crfs_krps[i]);
		if (ret)
			pr_warn("crfs: no hook on %s: %d\n",
				crfs_krps[i].kp.symbol_name, ret);
		crfs_krp_on[i] = !ret;
	}
	ret = register_kprobe(&crfs_ring_release_kp);
	if (ret)
		pr_warn("crfs: no hook on io_uring_release: %d; io_uring marks stay until exit\n",
			ret);
	crfs_ring_release_on = !ret;
	return 0;
}

void crfs_hooks_exit(void)
{
	size_t i;

	if (crfs_ring_release_on)
		unregister_kprobe(&crfs_ring_release_kp);
	for (i = 0; i < ARRAY_SIZE(crfs_krps); i++)
		if (crfs_krp_on[i])
			unregister_kretprobe(&crfs_krps[i]);
}
