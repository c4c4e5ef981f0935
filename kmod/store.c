// SPDX-License-Identifier: GPL-2.0
/*
 * The per-task mark store.
 *
 * Marks live in crfs_entry objects, one per marked task, in a hash table
 * keyed by the task_struct pointer. An entry exists only while at least one
 * source is set: clearing the last source frees it, so unmarked tasks cost
 * nothing but the crfs_nr_live test on the exit path.
 *
 * Locking:
 *  - crfs_lock (a spinlock, taken irqsave because the exported API may be
 *    called from any context) protects the table and every field of every
 *    entry. It is innermost: nothing is called with it held that takes
 *    another lock, sleeps or touches user memory.
 *  - Lookups that only test for a mark (crfs_task_nocr(), the exit fast
 *    path) walk the table under RCU and read ->bits with READ_ONCE; entries
 *    are freed after a grace period (call_rcu), so a reader never sees freed
 *    memory.
 *
 * Lifetime: the key is a task pointer without a reference. The entry is
 * removed at the task's exit (tracepoint sched_process_exit), which runs
 * before the task_struct can be freed and reused. Setting a mark on a task
 * with PF_EXITING fails, and the exit hook looks without crfs_lock first:
 *
 *	setter (crfs_lock held)			exiting task
 *	if (READ_ONCE(t->flags) & PF_EXITING)	t->flags |= PF_EXITING
 *		fail;				...
 *	nr_live++; hash_add_rcu(e)		smp_mb()
 *						nr_live? lookup under RCU
 *
 * The setter's stores depend on its load (control dependency) and the
 * exiting side has a full barrier between its store and its loads, so
 * either the setter sees PF_EXITING and inserts nothing, or the exit hook
 * sees the entry and frees it: no entry outlives its task.
 */
#include <linux/atomic.h>
#include <linux/hashtable.h>
#include <linux/rcupdate.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/tracepoint.h>

#include "crfs.h"

struct crfs_entry {
	struct hlist_node node;
	struct rcu_head rcu;
	struct task_struct *task;	/* key; no reference, see above */
	unsigned long bits;		/* BIT(enum crfs_src) */
	unsigned long overflow;		/* sources kept until exit */
	unsigned int nr_remap;
	unsigned int nr_pi;
	unsigned int nr_ring;
	struct crfs_remap remap[CRFS_MAX_REMAP];
	struct crfs_pi pi[CRFS_MAX_PI];
	struct file *ring[CRFS_MAX_RING];
	char reason[CRFS_REASON_MAX];	/* CRFS_SRC_MARK; "" when unset */
};

#define CRFS_HASH_BITS 8

static DEFINE_SPINLOCK(crfs_lock);
static DEFINE_HASHTABLE(crfs_table, CRFS_HASH_BITS);
static atomic_t crfs_nr_live = ATOMIC_INIT(0);
static atomic64_t crfs_nr_alloc = ATOMIC64_INIT(0);
static atomic64_t crfs_nr_freed = ATOMIC64_INIT(0);
static struct kmem_cache *crfs_entry_cache;
static struct tracepoint *crfs_tp_exit;

/* Caller holds crfs_lock or rcu_read_lock(). */
static struct crfs_entry *crfs_lookup(struct task_struct *t)
{
	struct crfs_entry *e;

	hash_for_each_possible_rcu(crfs_table, e, node, (unsigned long)t)
		if (e->task == t)
			return e;
	return NULL;
}

/* Caller holds crfs_lock. NULL if out of memory or @t is exiting. */
static struct crfs_entry *crfs_lookup_or_create(struct task_struct *t)
{
	struct crfs_entry *e = crfs_lookup(t);

	if (e)
		return e;
	if (READ_ONCE(t->flags) & PF_EXITING)
		return NULL;
	e = kmem_cache_zalloc(crfs_entry_cache, GFP_ATOMIC);
	if (!e)
		return NULL;
	e->task = t;
	atomic64_inc(&crfs_nr_alloc);
	atomic_inc(&crfs_nr_live);
	hash_add_rcu(crfs_table, &e->node, (unsigned long)t);
	return e;
}

static void crfs_entry_free_rcu(struct rcu_head *rcu)
{
	kmem_cache_free(crfs_entry_cache,
			container_of(rcu, struct crfs_entry, rcu));
	atomic64_inc(&crfs_nr_freed);
}

/* Caller holds crfs_lock. */
static void crfs_entry_del(struct crfs_entry *e)
{
	hash_del_rcu(&e->node);
	atomic_dec(&crfs_nr_live);
	call_rcu(&e->rcu, crfs_entry_free_rcu);
}

/* Recomputes ->bits from the per-source state; frees an empty entry.
 * Caller holds crfs_lock.
 */
static void crfs_entry_update(struct crfs_entry *e)
{
	unsigned long bits = e->overflow;

	if (e->reason[0])
		bits |= BIT(CRFS_SRC_MARK);
	if (e->nr_remap)
		bits |= BIT(CRFS_SRC_REMAP);
	if (e->nr_pi)
		bits |= BIT(CRFS_SRC_PI);
	if (e->nr_ring)
		bits |= BIT(CRFS_SRC_RING);
	WRITE_ONCE(e->bits, bits);
	if (!bits)
		crfs_entry_del(e);
}

int crfs_store_set_mark(struct task_struct *t, const char *reason)
{
	struct crfs_entry *e;
	unsigned long flags;
	int ret = 0;

	if (!reason || !reason[0])
		return -EINVAL;
	spin_lock_irqsave(&crfs_lock, flags);
	e = crfs_lookup_or_create(t);
	if (e) {
		strscpy(e->reason, reason, sizeof(e->reason));
		crfs_entry_update(e);
	} else {
		ret = (t->flags & PF_EXITING) ? -ESRCH : -ENOMEM;
	}
	spin_unlock_irqrestore(&crfs_lock, flags);
	return ret;
}

void crfs_store_clear_mark(struct task_struct *t)
{
	struct crfs_entry *e;
	unsigned long flags;

	spin_lock_irqsave(&crfs_lock, flags);
	e = crfs_lookup(t);
	if (e) {
		e->reason[0] = '\0';
		crfs_entry_update(e);
	}
	spin_unlock_irqrestore(&crfs_lock, flags);
}

void crfs_store_add_remap(struct task_struct *t, const struct crfs_remap *r)
{
	struct crfs_entry *e;
	unsigned long flags;

	spin_lock_irqsave(&crfs_lock, flags);
	e = crfs_lookup_or_create(t);
	if (e) {
		if (e->nr_remap < CRFS_MAX_REMAP)
			e->remap[e->nr_remap++] = *r;
		else
			e->overflow |= BIT(CRFS_SRC_REMAP);
		crfs_entry_update(e);
	}
	spin_unlock_irqrestore(&crfs_lock, flags);
}

void crfs_store_add_pi(struct task_struct *t, const struct crfs_pi *p)
{
	struct crfs_entry *e;
	unsigned long flags;
	unsigned int i;

	spin_lock_irqsave(&crfs_lock, flags);
	e = crfs_lookup_or_create(t);
	if (e) {
		for (i = 0; i < e->nr_pi; i++)
			if (e->pi[i].mm == p->mm && e->pi[i].uaddr == p->uaddr)
				break;
		if (i == e->nr_pi) {
			if (e->nr_pi < CRFS_MAX_PI)
				e->pi[e->nr_pi++] = *p;
			else
				e->overflow |= BIT(CRFS_SRC_PI);
		}
		crfs_entry_update(e);
	}
	spin_unlock_irqrestore(&crfs_lock, flags);
}

/* Caller holds crfs_lock. */
static void crfs_entry_del_pi(struct crfs_entry *e, const struct crfs_pi *p)
{
	unsigned int i;

	for (i = 0; i < e->nr_pi; i++) {
		if (e->pi[i].mm == p->mm && e->pi[i].uaddr == p->uaddr) {
			e->pi[i] = e->pi[--e->nr_pi];
			return;
		}
	}
}

void crfs_store_del_pi(struct task_struct *t, const struct crfs_pi *p)
{
	struct crfs_entry *e;
	unsigned long flags;

	if (!atomic_read(&crfs_nr_live))
		return;
	spin_lock_irqsave(&crfs_lock, flags);
	e = crfs_lookup(t);
	if (e) {
		crfs_entry_del_pi(e, p);
		crfs_entry_update(e);
	}
	spin_unlock_irqrestore(&crfs_lock, flags);
}

void crfs_store_add_ring(struct task_struct *t, struct file *ring)
{
	struct crfs_entry *e;
	unsigned long flags;

	spin_lock_irqsave(&crfs_lock, flags);
	e = crfs_lookup_or_create(t);
	if (e) {
		if (e->nr_ring < CRFS_MAX_RING)
			e->ring[e->nr_ring++] = ring;
		else
			e->overflow |= BIT(CRFS_SRC_RING);
		crfs_entry_update(e);
	}
	spin_unlock_irqrestore(&crfs_lock, flags);
}

/* The ring's file is being released: whoever created it loses the mark.
 * The creator may be another task than the releaser (fork, SCM_RIGHTS),
 * so the whole table is searched; this runs once per ring.
 */
void crfs_store_ring_released(struct file *ring)
{
	struct crfs_entry *e;
	struct hlist_node *tmp;
	unsigned long flags;
	unsigned int bkt, i;

	if (!atomic_read(&crfs_nr_live))
		return;
	spin_lock_irqsave(&crfs_lock, flags);
	hash_for_each_safe(crfs_table, bkt, tmp, e, node) {
		for (i = 0; i < e->nr_ring; i++) {
			if (e->ring[i] == ring) {
				e->ring[i] = e->ring[--e->nr_ring];
				crfs_entry_update(e);
				break;
			}
		}
	}
	spin_unlock_irqrestore(&crfs_lock, flags);
}

void crfs_store_revalidate(struct task_struct *t)
{
	struct crfs_remap remap[CRFS_MAX_REMAP];
	struct crfs_pi pi[CRFS_MAX_PI];
	bool keep_remap[CRFS_MAX_REMAP];
	bool keep_pi[CRFS_MAX_PI];
	unsigned int nr_remap, nr_pi, i, j;
	struct mm_struct *mm;
	struct crfs_entry *e;
	unsigned long flags;

	spin_lock_irqsave(&crfs_lock, flags);
	e = crfs_lookup(t);
	nr_remap = e ? e->nr_remap : 0;
	nr_pi = e ? e->nr_pi : 0;
	if (nr_remap)
		memcpy(remap, e->remap, nr_remap * sizeof(remap[0]));
	if (nr_pi)
		memcpy(pi, e->pi, nr_pi * sizeof(pi[0]));
	spin_unlock_irqrestore(&crfs_lock, flags);
	if (!nr_remap && !nr_pi)
		return;

	/* No mm: the task is exiting (its marks go with it) or a kernel
	 * thread; nothing of this mm can be mapped or held any more.
	 */
	mm = get_task_mm(t);
	for (i = 0; i < nr_remap; i++)
		keep_remap[i] = mm && remap[i].mm == mm &&
				crfs_remap_still_mapped(mm, &remap[i]);
	for (i = 0; i < nr_pi; i++)
		keep_pi[i] = mm && pi[i].mm == mm && crfs_pi_still_held(t, &pi[i]);
	if (mm)
		mmput(mm);

	spin_lock_irqsave(&crfs_lock, flags);
	e = crfs_lookup(t);
	if (e) {
		for (i = 0; i < nr_remap; i++) {
			if (keep_remap[i])
				continue;
			for (j = 0; j < e->nr_remap; j++) {
				if (!memcmp(&e->remap[j], &remap[i], sizeof(remap[i]))) {
					e->remap[j] = e->remap[--e->nr_remap];
					break;
				}
			}
		}
		for (i = 0; i < nr_pi; i++)
			if (!keep_pi[i])
				crfs_entry_del_pi(e, &pi[i]);
		crfs_entry_update(e);
	}
	spin_unlock_irqrestore(&crfs_lock, flags);
}

bool crfs_store_has(struct task_struct *t)
{
	return crfs_task_nocr(t);
}

static void crfs_report_one(struct crfs_kdev_query *q, pid_t tid,
			    enum crfs_src src, const char *reason)
{
	struct crfs_kdev_mark *m;

	q->total++;
	if (q->nr >= CRFS_KDEV_MAX_MARKS)
		return;
	m = &q->marks[q->nr++];
	m->tid = tid;
	m->source = src;
	strscpy(m->reason, reason, sizeof(m->reason));
}

void crfs_store_report(struct task_struct *t, struct crfs_kdev_query *q)
{
	pid_t tid = task_pid_vnr(t);
	struct crfs_entry *e;
	unsigned long flags;
	int src;

	spin_lock_irqsave(&crfs_lock, flags);
	e = crfs_lookup(t);
	for (src = 0; e && src < CRFS_NR_SRC; src++) {
		if (!(e->bits & BIT(src)))
			continue;
		crfs_report_one(q, tid, src, src == CRFS_SRC_MARK ?
				e->reason : crfs_hook_reason(src));
	}
	spin_unlock_irqrestore(&crfs_lock, flags);
}

void crfs_store_stats(struct crfs_kdev_stats *st)
{
	st->live = atomic_read(&crfs_nr_live);
	st->allocated = atomic64_read(&crfs_nr_alloc);
	st->freed = atomic64_read(&crfs_nr_freed);
}

/* Exported API, see include/linux/crfs_nocr.h. */

int crfs_set_task_nocr(struct task_struct *t, const char *reason)
{
	return crfs_store_set_mark(t, reason);
}
EXPORT_SYMBOL_GPL(crfs_set_task_nocr);

void crfs_set_task_cr(struct task_struct *t)
{
	if (atomic_read(&crfs_nr_live))
		crfs_store_clear_mark(t);
}
EXPORT_SYMBOL_GPL(crfs_set_task_cr);

/* The hot-path test: one atomic read when no task is marked, else an RCU
 * hash lookup without taking crfs_lock.
 */
bool crfs_task_nocr(struct task_struct *t)
{
	struct crfs_entry *e;
	bool ret;

	if (!atomic_read(&crfs_nr_live))
		return false;
	rcu_read_lock();
	e = crfs_lookup(t);
	ret = e && READ_ONCE(e->bits);
	rcu_read_unlock();
	return ret;
}
EXPORT_SYMBOL_GPL(crfs_task_nocr);

/* sched_process_exit: runs in do_exit() for every exiting task. */
static void crfs_on_exit(void *data, struct task_struct *p)
{
	struct crfs_entry *e;
	unsigned long flags;

	smp_mb(); /* PF_EXITING before the lookup, see the top of this file */
	if (!crfs_task_nocr(p))
		return;
	spin_lock_irqsave(&crfs_lock, flags);
	e = crfs_lookup(p);
	if (e)
		crfs_entry_del(e);
	spin_unlock_irqrestore(&crfs_lock, flags);
}

static void crfs_find_tp(struct tracepoint *tp, void *priv)
{
	if (!strcmp(tp->name, "sched_process_exit"))
		*(struct tracepoint **)priv = tp;
}

int crfs_store_init(void)
{
	int ret;

	crfs_entry_cache = KMEM_CACHE(crfs_entry, 0);
	if (!crfs_entry_cache)
		return -ENOMEM;
	for_each_kernel_tracepoint(crfs_find_tp, &crfs_tp_exit);
	if (!crfs_tp_exit) {
		pr_err("crfs: tracepoint sched_process_exit not found\n");
		ret = -ENOENT;
		goto err;
	}
	ret = tracepoint_probe_register(crfs_tp_exit, crfs_on_exit, NULL);
	if (ret)
		goto err;
	return 0;
err:
	kmem_cache_destroy(crfs_entry_cache);
	return ret;
}

/* Called after the hooks and the device are gone: nothing adds marks any
 * more. Marks still live are freed here, so unloading with marked tasks
 * leaves nothing behind.
 */
void crfs_store_exit(void)
{
	struct crfs_entry *e;
	struct hlist_node *tmp;
	unsigned long flags;
	unsigned int bkt;

	tracepoint_probe_unregister(crfs_tp_exit, crfs_on_exit, NULL);
	tracepoint_synchronize_unregister();
	spin_lock_irqsave(&crfs_lock, flags);
	hash_for_each_safe(crfs_table, bkt, tmp, e, node)
		crfs_entry_del(e);
	spin_unlock_irqrestore(&crfs_lock, flags);
	rcu_barrier();
	kmem_cache_destroy(crfs_entry_cache);
}
