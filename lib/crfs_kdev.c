/* Client for /dev/crfs; see crfs_kdev.h. */
#define _POSIX_C_SOURCE 200809L
#include "crfs_kdev.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* The longest reason the module keeps, without its NUL. */
#define CRFS_KDEV_REASON_LEN 1024

static int kdev_ioctl(int fd, unsigned long request, void* arg) {
    int rc;
    do {
        rc = ioctl(fd, request, arg);
    } while (rc < 0 && errno == EINTR);
    return rc < 0 ? -errno : 0;
}

int crfs_kdev_open(void) {
    int fd;
    do {
        fd = open(CRFS_KDEV_PATH, O_RDWR | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    return fd < 0 ? -errno : fd;
}

int crfs_kdev_read(int fd, pid_t pid, unsigned int flags, struct crfs_kdev_query* out) {
    if (!out || pid < 0) return -EINVAL;
    memset(out, 0, sizeof *out);
    out->pid = pid;
    out->flags = flags;
    return kdev_ioctl(fd, CRFS_IOC_QUERY, out);
}

int crfs_kdev_set(int fd, pid_t pid, const char* reason) {
    struct crfs_kdev_set s;
    size_t len;
    if (!reason || pid < 0) return -EINVAL;
    len = strlen(reason);
    if (len == 0 || len > CRFS_KDEV_REASON_LEN) return -EINVAL;
    memset(&s, 0, sizeof s);
    s.pid = pid;
    memcpy(s.reason, reason, len);
    return kdev_ioctl(fd, CRFS_IOC_SET, &s);
}

int crfs_kdev_clear(int fd, pid_t pid) {
    struct crfs_kdev_set s;
    if (pid < 0) return -EINVAL;
    memset(&s, 0, sizeof s);
    s.pid = pid;
    return kdev_ioctl(fd, CRFS_IOC_CLEAR, &s);
}

int crfs_kdev_read_stats(int fd, struct crfs_kdev_stats* out) {
    if (!out) return -EINVAL;
    memset(out, 0, sizeof *out);
    return kdev_ioctl(fd, CRFS_IOC_STATS, out);
}
