// SPDX-License-Identifier: GPL-2.0
/*
 * crfs.ko: kernel-side nocr marks for crfs (docs/kernel-module.md).
 *
 * Bring-up order: store (with its exit hook) first, so that every mark set
 * later is freed at exit; then the hooks; then the device. Teardown is the
 * reverse, and the store frees whatever marks are still live.
 */
#include <linux/module.h>

#include "crfs.h"

static int __init crfs_init(void)
{
	int ret;

	ret = crfs_store_init();
	if (ret)
		return ret;
	ret = crfs_hooks_init();
	if (ret)
		goto err_store;
	ret = crfs_dev_init();
	if (ret)
		goto err_hooks;
	pr_info("crfs: loaded, hooks 0x%llx\n", crfs_hooks_active());
	return 0;
err_hooks:
	crfs_hooks_exit();
err_store:
	crfs_store_exit();
	return ret;
}

static void __exit crfs_exit(void)
{
	crfs_dev_exit();
	crfs_hooks_exit();
	crfs_store_exit();
}

module_init(crfs_init);
module_exit(crfs_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("crfs: kernel-side nocr marks for checkpoint/restart");
MODULE_AUTHOR("crfs developers");
