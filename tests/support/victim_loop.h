/* The loop of the restore attack tests' victims (tests/security/restore:
 * victim.c, kobj_victim.c): each sets its state up, then calls victim_loop,
 * which writes DIR/ready and idles until SIGTERM; each SIGUSR1 makes it call
 * `report`, which writes what the task sees through put_file. */
#ifndef CRFS_VICTIM_LOOP_H
#define CRFS_VICTIM_LOOP_H

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t g_victim_usr1, g_victim_term;

static void victim_on_usr1(int s) {
    (void)s;
    g_victim_usr1 = 1;
}

static void victim_on_term(int s) {
    (void)s;
    g_victim_term = 1;
}

/* DIR/name holding `len` bytes of `buf`, written under a temporary name and
 * renamed: a reader never sees it half written. */
static void put_file(const char* dir, const char* name, const void* buf, size_t len) {
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return;
    if (write(fd, buf, len) < 0) {
    }
    close(fd);
    rename(tmp, path);
}

static int victim_loop(const char* dir, void (*report)(const char* dir)) {
    signal(SIGUSR1, victim_on_usr1);
    signal(SIGTERM, victim_on_term);
    put_file(dir, "ready", "ready\n", 6);
    while (!g_victim_term) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (!g_victim_usr1) continue;
        g_victim_usr1 = 0;
        report(dir);
    }
    return 0;
}

#endif
