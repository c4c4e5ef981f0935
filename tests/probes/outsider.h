/* A process outside the probe's tree holding what the probe holds now: forked
 * through a middle process that exits, so it is reparented away from the
 * probe; it ends when the probe ends (also when a test fails before the
 * check kills it). Returns its pid. */
#ifndef CRFS_PROBE_OUTSIDER_H
#define CRFS_PROBE_OUTSIDER_H

#include "probe.h" /* first: it defines _GNU_SOURCE */

#include <poll.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static pid_t spawn_outsider(void) {
    int p[2];
    if (pipe(p) != 0) die("pipe");
    pid_t mid = fork();
    if (mid < 0) die("fork");
    if (mid == 0) {
        pid_t root = getppid();
        pid_t away = fork();
        if (away == 0) {
            close(p[0]);
            close(p[1]);
            int pfd = (int)syscall(SYS_pidfd_open, root, 0);
            struct pollfd w = {.fd = pfd, .events = POLLIN};
            if (pfd >= 0) (void)poll(&w, 1, -1);
            _exit(0);
        }
        (void)!write(p[1], &away, sizeof away);
        _exit(0);
    }
    pid_t out = 0;
    if (read(p[0], &out, sizeof out) != sizeof out) die("read");
    waitpid(mid, NULL, 0);
    close(p[0]);
    close(p[1]);
    return out;
}

#endif
