/* The nocr C API (include/crfs/nocr.h) over the crfs mount. Plain C with
 * only async-signal-safe calls, so it links into any program. */
#include "crfs/nocr.h"

#include "nocr_kdev.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CRFS_PATH_MAX 4096

/* "$CRFS_ROOT/<who>/nocr" into buf; who is "self" or a pid. */
static int nocr_path(char* buf, size_t len, pid_t pid) {
    const char* root = getenv("CRFS_ROOT");
    int n;
    if (!root || !*root) root = "/crfs";
    if (pid == 0)
        n = snprintf(buf, len, "%s/self/nocr", root);
    else
        n = snprintf(buf, len, "%s/%d/nocr", root, (int)pid);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int write_value(pid_t pid, const char* value, size_t len) {
    char path[CRFS_PATH_MAX];
    int rc = nocr_path(path, sizeof path, pid);
    int fd;
    ssize_t n;
    if (rc < 0) return rc;
    do {
        fd = open(path, O_WRONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return -errno;
    /* One write is one whole value: never split it. */
    do {
        n = write(fd, value, len);
    } while (n < 0 && errno == EINTR);
    rc = n < 0 ? -errno : (size_t)n != len ? -EIO : 0;
    close(fd);
    return rc;
}

/* Clearing goes to both: a mark may have been set through either. With the
 * device present, a missing mount is no error. */
static int kdev_then_mount_clear(int kdev_rc, int mount_rc) {
    if (kdev_rc == -ENODEV) return mount_rc;
    if (kdev_rc < 0) return kdev_rc;
    return mount_rc == -ENOENT ? 0 : mount_rc;
}

static int check_reason(const char* reason) {
    if (!reason || !*reason) return -EINVAL;
    if (strcmp(reason, "0") == 0 || strcmp(reason, "0\n") == 0) return -EINVAL;
    return 0;
}

int crfs_set_task_nocr(pid_t pid, const char* reason) {
    int rc = check_reason(reason);
    if (rc < 0) return rc;
    if (pid <= 0) return -ENOENT;
    if ((rc = crfs_nocr_kdev_set(pid, reason)) != -ENODEV) return rc;
    return write_value(pid, reason, strlen(reason));
}

int crfs_set_task_cr(pid_t pid) {
    if (pid <= 0) return -ENOENT;
    return kdev_then_mount_clear(crfs_nocr_kdev_clear(pid), write_value(pid, "0", 1));
}

int crfs_set_current_nocr(const char* reason) {
    int rc = check_reason(reason);
    if (rc < 0) return rc;
    if ((rc = crfs_nocr_kdev_set(getpid(), reason)) != -ENODEV) return rc;
    return write_value(0, reason, strlen(reason));
}

int crfs_set_current_cr(void) {
    return kdev_then_mount_clear(crfs_nocr_kdev_clear(getpid()), write_value(0, "0", 1));
}

int crfs_task_nocr(pid_t pid) {
    char path[CRFS_PATH_MAX];
    char buf[4];
    ssize_t n;
    int fd, rc, kdev_rc;
    if (pid <= 0) return -ENOENT;
    /* The device knows kernel and device marks; the mount knows its own too. */
    if ((rc = crfs_nocr_kdev_query(pid)) == 1 || (rc < 0 && rc != -ENODEV)) return rc;
    kdev_rc = rc;
    rc = nocr_path(path, sizeof path, pid);
    if (rc < 0) return rc;
    do {
        fd = open(path, O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return kdev_rc == 0 && errno == ENOENT ? 0 : -errno;
    do {
        n = read(fd, buf, sizeof buf);
    } while (n < 0 && errno == EINTR);
    rc = n < 0                                                            ? -errno
         : (n == 2 && buf[1] == '\n' && (buf[0] == '0' || buf[0] == '1')) ? buf[0] - '0'
                                                                          : -EIO;
    close(fd);
    return rc;
}
