/* The terminal of the tty probes (tty.c, tty_nofd.c): a new session on a
 * new pseudo-terminal, whose master a "terminal" process outside the probe's
 * tree holds, keeping what is written to it in DIR/screen. */
#ifndef CRFS_TTY_TERM_H
#define CRFS_TTY_TERM_H

#include "probe.h" /* first: it defines _GNU_SOURCE */

#include <sys/wait.h>

static const char* g_input;   /* "input": typed on the terminal, never read */
static int g_keep_slave;      /* the terminal holds a slave too: the job may hold none */
static char g_term_pids[128]; /* DIR/term.pid: every terminal process, a line each */

/* The terminal: holds the master, appends its output to DIR/screen, ends at EIO.
 * Its pid reaches the probe through a pipe from the middle process, and the
 * probe alone writes DIR/term.pid, before it is ready (for the harness's
 * cleanup). The terminal writes no file of the probe's: two terminals
 * (not_ctty) each writing term.pid through the one term.pid.tmp raced, and
 * the one whose rename came second died of ENOENT, hanging its terminal up
 * under the probe (SIGHUP to its session leader) before the checkpoint. */
static void terminal(int master) {
    int p[2];
    if (pipe(p) < 0) die("pipe");
    pid_t c = fork();
    if (c < 0) die("fork");
    if (c > 0) {
        close(p[1]);
        pid_t term = 0;
        ssize_t n;
        while ((n = read(p[0], &term, sizeof term)) < 0 && errno == EINTR) {
        }
        close(p[0]);
        while (waitpid(c, NULL, 0) < 0 && errno == EINTR) {
        }
        if (n != (ssize_t)sizeof term) die("the terminal's pid");
        size_t len = strlen(g_term_pids);
        snprintf(g_term_pids + len, sizeof g_term_pids - len, "%d\n", term);
        write_file(at("term.pid"), g_term_pids);
        return;
    }
    /* The probe's fds, its stderr too, are its own: closed before the probe
     * goes on (it waits for this middle process). */
    for (int fd = 0; fd < 1024; ++fd)
        if (fd != master && fd != p[1]) close(fd);
    pid_t term = fork(); /* the grandchild: reparented, outside the tree */
    if (term != 0) {
        _exit(term < 0 || write(p[1], &term, sizeof term) != (ssize_t)sizeof term);
    }
    close(p[1]);
    setsid();
    if (g_input && write(master, g_input, strlen(g_input)) < 0) _exit(1);
    if (g_keep_slave && open(ptsname(master), O_RDWR | O_NOCTTY) < 0) _exit(1); /* no EIO */
    int out = open(at("screen"), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    char buf[4096];
    for (;;) {
        ssize_t n = read(master, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) _exit(0);
        if (write(out, buf, (size_t)n) < 0) _exit(1);
    }
}

/* A new session on a new terminal, as its fds 0 and 1. */
static void session_on_pty(void) {
    if (setsid() < 0) die("setsid");
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0) die("posix_openpt");
    int s = open(ptsname(m), O_RDWR); /* the session's controlling terminal */
    if (s < 0) die("open the slave");
    terminal(m);
    close(m);
    if (dup2(s, 0) < 0 || dup2(s, 1) < 0) die("dup2");
    close(s);
}

static void write_pid(void) {
    char pid[32];
    snprintf(pid, sizeof pid, "%d\n", getpid());
    write_file(at("pid"), pid);
}

/* The shell: a child in a group of its own is the probe, which makes its
 * `settings` (a foreground job takes the terminal first); the shell waits
 * for it (killed, it is restored elsewhere) and then for its own end. */
static void job_of_shell(int foreground, void (*settings)(void)) {
    session_on_pty();
    pid_t j = fork();
    if (j < 0) die("fork");
    if (j == 0) {
        if (setpgid(0, 0) < 0) die("setpgid");
        /* its own stderr, as a job's redirection would be (not the shell's description) */
        int err = open(at("stderr.job"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (err < 0 || dup2(err, 2) != 2) die("stderr.job");
        close(err);
        sigset_t ttou, old; /* a background job's tcsetattr would stop it */
        sigemptyset(&ttou);
        sigaddset(&ttou, SIGTTOU);
        sigprocmask(SIG_BLOCK, &ttou, &old);
        if (foreground && tcsetpgrp(0, getpgrp()) < 0) die("tcsetpgrp");
        settings();
        sigprocmask(SIG_SETMASK, &old, NULL);
        return;
    }
    signal(SIGTERM, SIG_IGN);
    while (waitpid(j, NULL, 0) < 0 && errno == EINTR) {
    }
    for (;;) pause();
}

#endif
