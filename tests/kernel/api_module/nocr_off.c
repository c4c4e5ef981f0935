// SPDX-License-Identifier: GPL-2.0
/* The API with CONFIG_CRFS_NOCR off: every call is an inline no-op. */
#include <linux/crfs_nocr.h>

bool crfs_api_test_off(void);

bool crfs_api_test_off(void)
{
	return crfs_set_current_nocr("CR: off.") == 0 &&
	       !crfs_task_nocr(current) &&
	       crfs_set_task_nocr(current, "CR: off.") == 0;
}
