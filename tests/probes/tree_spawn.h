/* Children of the tree probes (tree.c, tree_life.c). */
#ifndef CRFS_TREE_SPAWN_H
#define CRFS_TREE_SPAWN_H

#include "probe.h"

/* A child that runs `first` (if any) and `body` and pauses; returns once body
 * is done (or the child exited), so the tree is complete when the probe says
 * ready. */
static pid_t spawn_child(void (*first)(void), void (*body)(void)) {
    int done[2];
    if (pipe2(done, O_CLOEXEC) != 0) die("pipe");
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        if (first) first();
        close(100); /* a parent's own `done` (nested spawns), not ours to hold */
        int w = fcntl(done[1], F_DUPFD_CLOEXEC, 100);
        close(done[0]);
        close(done[1]);
        body();
        close(w);
        for (;;) pause();
    }
    close(done[1]);
    char x;
    (void)!read(done[0], &x, 1); /* end of file: body done */
    close(done[0]);
    return pid;
}

#endif
