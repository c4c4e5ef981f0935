// PAGEMAP_SCAN (Linux 6.7, include/uapi/linux/fs.h): the kernel walks a task's
// page tables and returns only the ranges of the asked categories. Declared
// here because the distribution's kernel headers predate it.
#pragma once

#include <sys/ioctl.h>

#include <cstdint>

namespace crfs {

struct PmPageRegion {
    uint64_t start, end, categories;
};
struct PmScanArg {
    uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages, category_inverted,
        category_mask, category_anyof_mask, return_mask;
};
inline constexpr unsigned long kPagemapScan = _IOWR('f', 16, PmScanArg);
inline constexpr uint64_t kPageIsFile = 1u << 2, kPageIsPresent = 1u << 3, kPageIsSwapped = 1u << 4;
inline constexpr uint64_t kPageIsGuard = 1u << 8;  // Linux 6.14
// madvise(2)'s guard regions (Linux 6.13; not in Debian 12's headers): they
// zap the pages of their range with no userfaultfd event.
inline constexpr int kMadvGuardInstall = 102;
inline constexpr uint64_t kPageIsWpAllowed = 1u << 0, kPageIsWritten = 1u << 1;
inline constexpr uint64_t kPmScanWpMatching = 1u << 0;  // PM_SCAN_WP_MATCHING

}  // namespace crfs
