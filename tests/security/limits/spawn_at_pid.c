// spawn_at_pid PID COMMAND [ARG...]: runs COMMAND as a child with exactly pid
// PID (clone3 set_tid, which needs CAP_CHECKPOINT_RESTORE: run it as root),
// waits for it and exits with its status. Tests use it to make a task appear
// at a pid named by a restore slot.
#define _GNU_SOURCE
#include <errno.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: spawn_at_pid PID COMMAND [ARG...]\n");
        return 2;
    }
    pid_t want = (pid_t)atoi(argv[1]);
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.exit_signal = SIGCHLD;
    args.set_tid = (uint64_t)(uintptr_t)&want;
    args.set_tid_size = 1;
    long pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid < 0) {
        fprintf(stderr, "spawn_at_pid: clone3 with pid %d: %s\n", want, strerror(errno));
        return 3;
    }
    if (pid == 0) {
        execvp(argv[2], argv + 2);
        fprintf(stderr, "spawn_at_pid: exec %s: %s\n", argv[2], strerror(errno));
        _exit(127);
    }
    int status;
    while (waitpid((pid_t)pid, &status, 0) < 0)
        if (errno != EINTR) return 4;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
