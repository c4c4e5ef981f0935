/* What the self-checking workloads share: a file of their directory written
 * whole (a reader sees all of it or none: written under a temporary name,
 * then renamed), and death with the failing call's errno. */
#ifndef CRFS_TESTS_WORKLOADS_WL_FILES_H
#define CRFS_TESTS_WORKLOADS_WL_FILES_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* DIR/NAME holds `text`; exits 2 when it cannot (no workload goes on without
 * reporting). */
static inline void wl_put(const char* dir, const char* name, const char* text) {
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    size_t n = strlen(text);
    if (fd < 0 || write(fd, text, n) != (ssize_t)n || close(fd) != 0 || rename(tmp, path) != 0)
        _exit(2);
}

static inline void wl_die(const char* what) {
    perror(what);
    exit(2);
}

#endif
