// Kernel marks: where the crfs kernel module is loaded (/dev/crfs), the marks
// it keeps join `reason` and `nocr` (docs/kernel-module.md). The device is
// looked for once, at start; without it every function here is a no-op.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace crfs::fs {

// Opens /dev/crfs if the module is loaded; logs which way it went.
void init_kernel_marks();

// True when init_kernel_marks() found the device.
bool kernel_marks_present();

// The kernel's marks on process `pid` (every thread), one line each,
// deduplicated: "nocr: <reason>" for the nocr mark (set through the device or
// crfs_set_task_nocr() in the kernel), "kernel: <reason>" for the module's
// hooks. Empty without the module or when the process is gone.
std::vector<std::string> kernel_reasons(pid_t pid);

// Clears the nocr mark of process `pid` in the kernel (writing "0" to nocr
// clears every mark the caller could have set). The caller's rights are
// checked by the daemon before.
void kernel_clear_mark(pid_t pid);

}  // namespace crfs::fs
