/* Children of the tree probes that verify what they hold (tree_share.c,
 * unix_tree.c): the children live until the check, which has them verify
 * (SIGUSR1: exit 0 when right) and reaps them. */
#ifndef CRFS_TREE_KIDS_H
#define CRFS_TREE_KIDS_H

#include "probe.h"

#include <sys/wait.h>

static pid_t g_kids[2];

/* A child that runs `body` (with SIGUSR1 blocked), says so on a pipe, waits
 * for SIGUSR1 and exits with `verify`'s answer. */
static pid_t spawn(void (*body)(void), int (*verify)(void)) {
    int done[2];
    if (pipe2(done, O_CLOEXEC) != 0) die("pipe");
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        sigset_t s;
        sigemptyset(&s);
        sigaddset(&s, SIGUSR1);
        sigprocmask(SIG_BLOCK, &s, NULL);
        close(done[0]);
        if (body) body();
        close(done[1]);
        int sig = 0;
        while (sigwait(&s, &sig) != 0) {
        }
        _exit(verify ? verify() : 0);
    }
    close(done[1]);
    char x;
    (void)!read(done[0], &x, 1); /* end of file: body done */
    close(done[0]);
    return pid;
}

/* Each child verifies itself; then it is reaped. */
static void kids_check(void) {
    for (int i = 0; i < 2; ++i) {
        if (g_kids[i] <= 0) continue;
        kill(g_kids[i], SIGUSR1);
        int st = 0;
        if (waitpid(g_kids[i], &st, 0) != g_kids[i])
            fail("child %d is not ours", g_kids[i]);
        else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            fail("child %d: what it holds is not what it was (status 0x%x)", g_kids[i], st);
    }
}

#endif
