/* The nocr C API over /dev/crfs; see nocr_kdev.h. Only open, ioctl, close:
 * thread-safe and async-signal-safe like the mount path. */
#define _POSIX_C_SOURCE 200809L
#include "nocr_kdev.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "crfs_kdev.h"

/* What the mount does with "1" (fs/marks.h kDefaultReason). */
#define NOCR_DEFAULT_REASON "CR: marked uncheckpointable"

/* The device fd, or -ENODEV when the module is not loaded. */
static int kdev_open(void) {
    int fd = crfs_kdev_open();
    return fd == -ENOENT || fd == -ENXIO || fd == -ENODEV ? -ENODEV : fd;
}

/* The API reports a missing process as ENOENT, like the mount. */
static int api_errno(int rc) {
    return rc == -ESRCH ? -ENOENT : rc;
}

int crfs_nocr_kdev_set(pid_t pid, const char* reason) {
    char text[CRFS_KDEV_REASON_MAX];
    size_t len = strlen(reason);
    int fd, rc;
    /* One trailing newline is ignored, "1" is the generic reason. */
    if (len > 0 && reason[len - 1] == '\n') len--;
    if (len == 0 || len >= sizeof text) return -EINVAL;
    memcpy(text, reason, len);
    text[len] = '\0';
    if (strcmp(text, "1") == 0) strcpy(text, NOCR_DEFAULT_REASON);
    fd = kdev_open();
    if (fd < 0) return fd;
    rc = api_errno(crfs_kdev_set(fd, pid, text));
    close(fd);
    return rc;
}

int crfs_nocr_kdev_clear(pid_t pid) {
    int fd = kdev_open(), rc;
    if (fd < 0) return fd;
    rc = api_errno(crfs_kdev_clear(fd, pid));
    close(fd);
    return rc;
}

int crfs_nocr_kdev_query(pid_t pid) {
    struct crfs_kdev_query q;
    int fd = kdev_open(), rc;
    if (fd < 0) return fd;
    rc = api_errno(crfs_kdev_read(fd, pid, CRFS_KDEV_QUERY_THREAD_GROUP, &q));
    close(fd);
    return rc < 0 ? rc : q.total > 0;
}
