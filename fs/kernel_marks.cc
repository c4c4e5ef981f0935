#include "fs/kernel_marks.h"

#include <algorithm>
#include <cstring>

#include "common/log.h"
#include "crfs_kdev.h"

namespace crfs::fs {
namespace {

// Set once by init_kernel_marks() before the FUSE loop starts, then only read.
int g_kdev = -1;

}  // namespace

void init_kernel_marks() {
    int fd = crfs_kdev_open();
    if (fd < 0) {
        // The module is optional: its absence is the common case, not a fault.
        if (fd == -ENOENT)
            log_info("kernel marks: off (crfs.ko not loaded)");
        else
            log_error("kernel marks: %s: %s", CRFS_KDEV_PATH, std::strerror(-fd));
        return;
    }
    g_kdev = fd;
    log_info("kernel marks: merging marks from %s", CRFS_KDEV_PATH);
}

bool kernel_marks_present() {
    return g_kdev >= 0;
}

std::vector<std::string> kernel_reasons(pid_t pid) {
    std::vector<std::string> out;
    if (g_kdev < 0) return out;
    crfs_kdev_query q;
    if (int rc = crfs_kdev_read(g_kdev, pid, CRFS_KDEV_QUERY_THREAD_GROUP, &q); rc < 0) {
        if (rc != -ESRCH) log_error("kernel marks of %d: %s", pid, std::strerror(-rc));
        return out;
    }
    for (unsigned i = 0; i < q.nr; ++i) {
        const crfs_kdev_mark& m = q.marks[i];
        std::string line = m.source == CRFS_KDEV_SRC_MARK ? "nocr: " : "kernel: ";
        line.append(m.reason, strnlen(m.reason, sizeof m.reason));
        if (std::find(out.begin(), out.end(), line) == out.end()) out.push_back(std::move(line));
    }
    if (q.total > q.nr) out.push_back("kernel: " + std::to_string(q.total - q.nr) + " more marks");
    return out;
}

void kernel_clear_mark(pid_t pid) {
    if (g_kdev < 0) return;
    if (int rc = crfs_kdev_clear(g_kdev, pid); rc < 0 && rc != -ESRCH)
        log_error("clear kernel mark of %d: %s", pid, std::strerror(-rc));
}

}  // namespace crfs::fs
