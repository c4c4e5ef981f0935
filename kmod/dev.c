// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/crfs: the user interface of the mark store (ABI in
 * include/crfs/kdev.h). Reading marks is open to everyone; setting or
 * clearing the mark of a task needs the kernel's own ptrace access check,
 * ptrace_may_access(PTRACE_MODE_ATTACH_REALCREDS), the right that
 * PTRACE_ATTACH needs.
 */
#include <linux/fs.h>
#include <linux/kprobes.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/pid.h>
#include <linux/ptrace.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "crfs.h"

/* ptrace_may_access() is not exported to modules. Its address is taken
 * from the kprobe machinery (which resolves any kallsyms name) once at
 * load; the kernel is built without IBT/CFI, which would forbid the call.
 */
static bool (*crfs_ptrace_may_access)(struct task_struct *task, unsigned int mode);

static int crfs_resolve_ptrace_check(void)
{
	struct kprobe kp = { .symbol_name = "ptrace_may_access" };
	int ret = register_kprobe(&kp);

	if (ret)
		return ret;
	crfs_ptrace_may_access = (void *)kp.addr;
	unregister_kprobe(&kp);
	return 0;
}

/* The task with thread id @nr in the caller's pid namespace, referenced. */
static struct task_struct *crfs_get_task(pid_t nr)
{
	struct task_struct *t;
	struct pid *pid;

	if (nr < 0)
		return ERR_PTR(-EINVAL);
	if (!nr) {
		get_task_struct(current);
		return current;
	}
	pid = find_get_pid(nr);
	if (!pid)
		return ERR_PTR(-ESRCH);
	t = get_pid_task(pid, PIDTYPE_PID);
	put_pid(pid);
	return t ? t : ERR_PTR(-ESRCH);
}

/* Most threads whose marks one query revalidates and reports. */
#define CRFS_QUERY_MAX_THREADS 64

static long crfs_ioc_query(struct crfs_kdev_query __user *uq)
{
	struct task_struct **threads, *task, *t;
	struct crfs_kdev_query *q;
	unsigned int nr = 0, i;
	long ret;

	q = kzalloc(sizeof(*q), GFP_KERNEL);
	threads = kcalloc(CRFS_QUERY_MAX_THREADS, sizeof(*threads), GFP_KERNEL);
	ret = -ENOMEM;
	if (!q || !threads)
		goto out;
	ret = -EFAULT;
	if (copy_from_user(q, uq, offsetof(struct crfs_kdev_query, nr)))
		goto out;
	ret = -EINVAL;
	if (q->flags & ~CRFS_KDEV_QUERY_THREAD_GROUP)
		goto out;
	task = crfs_get_task(q->pid);
	ret = PTR_ERR(task);
	if (IS_ERR(task))
		goto out;

	if (q->flags & CRFS_KDEV_QUERY_THREAD_GROUP) {
		rcu_read_lock();
		for_each_thread(task, t) {
			if (nr < CRFS_QUERY_MAX_THREADS && crfs_store_has(t)) {
				get_task_struct(t);
				threads[nr++] = t;
			}
		}
		rcu_read_unlock();
		put_task_struct(task);
	} else {
		threads[nr++] = task;
	}
	q->nr = 0;
	q->total = 0;
	for (i = 0; i < nr; i++) {
		crfs_store_revalidate(threads[i]);
		crfs_store_report(threads[i], q);
		put_task_struct(threads[i]);
	}
	ret = copy_to_user(uq, q, sizeof(*q)) ? -EFAULT : 0;
out:
	kfree(threads);
	kfree(q);
	return ret;
}

static bool crfs_reason_valid(const char *r)
{
	if (!r[0])
		return false;
	for (; *r; r++)
		if ((unsigned char)*r < 0x20 || *r == 0x7f)
			return false;
	return true;
}

static long crfs_ioc_set(struct crfs_kdev_set __user *us, bool set)
{
	struct task_struct *t;
	struct crfs_kdev_set *s;
	long ret;

	s = kmalloc(sizeof(*s), GFP_KERNEL);
	if (!s)
		return -ENOMEM;
	ret = -EFAULT;
	if (copy_from_user(s, us, sizeof(*s)))
		goto out;
	s->reason[sizeof(s->reason) - 1] = '\0';
	ret = -EINVAL;
	if (s->flags || (set && !crfs_reason_valid(s->reason)))
		goto out;
	t = crfs_get_task(s->pid);
	ret = PTR_ERR(t);
	if (IS_ERR(t))
		goto out;
	if (t != current &&
	    !crfs_ptrace_may_access(t, PTRACE_MODE_ATTACH_REALCREDS)) {
		ret = -EACCES;
	} else if (set) {
		ret = crfs_store_set_mark(t, s->reason);
	} else {
		crfs_store_clear_mark(t);
		ret = 0;
	}
	put_task_struct(t);
out:
	kfree(s);
	return ret;
}

static long crfs_ioc_stats(struct crfs_kdev_stats __user *ust)
{
	struct crfs_kdev_stats st = {};

	crfs_store_stats(&st);
	st.missed = crfs_hooks_missed();
	st.hooks = crfs_hooks_active();
	return copy_to_user(ust, &st, sizeof(st)) ? -EFAULT : 0;
}

static long crfs_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	void __user *p = (void __user *)arg;

	switch (cmd) {
	case CRFS_IOC_QUERY:
		return crfs_ioc_query(p);
	case CRFS_IOC_SET:
		return crfs_ioc_set(p, true);
	case CRFS_IOC_CLEAR:
		return crfs_ioc_set(p, false);
	case CRFS_IOC_STATS:
		return crfs_ioc_stats(p);
	default:
		return -ENOTTY;
	}
}

static const struct file_operations crfs_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = crfs_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice crfs_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "crfs",
	.fops = &crfs_fops,
	.mode = 0666,
};

int crfs_dev_init(void)
{
	int ret;

	BUILD_BUG_ON(sizeof(struct crfs_kdev_query) >= (1 << _IOC_SIZEBITS));
	ret = crfs_resolve_ptrace_check();

	if (ret) {
		pr_err("crfs: cannot find ptrace_may_access: %d\n", ret);
		return ret;
	}
	return misc_register(&crfs_misc);
}

void crfs_dev_exit(void)
{
	misc_deregister(&crfs_misc);
}
