// SPDX-License-Identifier: GPL-2.0
/*
 * Self-test of crfs.ko's exported API, run at load: insmod fails with
 * -EINVAL if any check fails (the reason is in dmesg).
 */
#include <linux/crfs_nocr.h>
#include <linux/delay.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/sched/task.h>

bool crfs_api_test_off(void);

static int crfs_api_failed;

static void crfs_api_check(bool ok, int line, const char *what)
{
	if (!ok) {
		pr_err("crfs_api_test: line %d: %s\n", line, what);
		crfs_api_failed = 1;
	}
}

#define CHECK(cond) crfs_api_check(cond, __LINE__, #cond)

static int crfs_api_test_idle(void *unused)
{
	while (!kthread_should_stop())
		schedule_timeout_interruptible(HZ / 10);
	return 0;
}

static int __init crfs_api_test_init(void)
{
	struct task_struct *other;
	int i;

	CHECK(!crfs_task_nocr(current));
	CHECK(crfs_set_current_nocr("CR: api test.") == 0);
	CHECK(crfs_task_nocr(current));
	CHECK(crfs_set_current_nocr("CR: api test, replaced.") == 0);
	CHECK(crfs_task_nocr(current));
	crfs_set_current_cr();
	CHECK(!crfs_task_nocr(current));
	CHECK(crfs_set_current_nocr("") == -EINVAL);
	CHECK(crfs_set_current_nocr(NULL) == -EINVAL);
	CHECK(!crfs_task_nocr(current));

	/* A proxy mark on another task shows there and not here. */
	other = kthread_run(crfs_api_test_idle, NULL, "crfs_api_test");
	if (IS_ERR(other))
		return PTR_ERR(other);
	get_task_struct(other);
	CHECK(crfs_set_task_nocr(other, "CR: marked by proxy.") == 0);
	CHECK(crfs_task_nocr(other));
	CHECK(!crfs_task_nocr(current));
	crfs_set_task_cr(other);
	CHECK(!crfs_task_nocr(other));
	/* Left marked on purpose: its exit must free the mark. kthread_stop()
	 * returns before do_exit() reaches the exit hook, so poll (1 s).
	 */
	CHECK(crfs_set_task_nocr(other, "CR: freed at exit.") == 0);
	kthread_stop(other);
	for (i = 0; i < 50 && crfs_task_nocr(other); i++)
		msleep(20);
	CHECK(!crfs_task_nocr(other));
	put_task_struct(other);

	CHECK(crfs_api_test_off());
	if (crfs_api_failed)
		return -EINVAL;
	pr_info("crfs_api_test: all checks passed\n");
	return 0;
}

static void __exit crfs_api_test_exit(void)
{
}

module_init(crfs_api_test_init);
module_exit(crfs_api_test_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("self-test of the crfs nocr kernel API");
