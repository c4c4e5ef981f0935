/* The program of share_clone_mount_test.py: a parent and its child made with
 * clone(CLONE_FILES | CLONE_FS) (no CLONE_VM, no CLONE_THREAD) keep working
 * across a checkpoint, kill -9 and restore, and keep sharing:
 *
 *   share_clone_prog DIR
 *
 * Both write DIR/<who>.ready and wait for SIGUSR1. Then (each round, driven
 * by the test through DIR/go.N files) the child opens DIR/child.N at fd 50+N
 * and chdirs to DIR/c.N; the parent checks that the fd is in its table (the
 * same file, written through it), that its cwd is DIR/c.N and writes DIR/ok.N,
 * or DIR/bad.N with what differed. Then the parent opens DIR/parent.N at fd
 * 70+N and sets umask 0N7; the child checks both and writes DIR/child_ok.N.
 * Every wait is bounded by the test (it reads the files). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char* g_dir;

static const char* path(const char* fmt, int n) {
    static char buf[4][1200], name[64];
    static int i;
    i = (i + 1) % 4;
    snprintf(name, sizeof name, fmt, n);
    snprintf(buf[i], sizeof buf[i], "%s/%s", g_dir, name);
    return buf[i];
}

static void put(const char* p, const char* text) {
    char tmp[1300];
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, text, strlen(text)) < 0 || close(fd) != 0 || rename(tmp, p) != 0)
        exit(3);
}

/* Until `p` exists (the other process, or the test, made it); 10 ms steps,
   no limit: the test bounds every wait and kills us. */
static void await(const char* p) {
    struct timespec ts = {0, 10 * 1000 * 1000};
    while (access(p, F_OK) != 0) nanosleep(&ts, NULL);
}

static int same_file(int fd, const char* p) {
    struct stat a, b;
    return fstat(fd, &a) == 0 && stat(p, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev;
}

static int cwd_is(const char* p) {
    struct stat a, b;
    return stat(".", &a) == 0 && stat(p, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev;
}

static void child(void) {
    put(path("child.ready", 0), "ready\n");
    for (int n = 0;; ++n) {
        await(path("go.%d", n));
        int fd = open(path("child.%d", n), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || dup2(fd, 50 + n) != 50 + n) exit(4);
        close(fd);
        if (mkdir(path("c.%d", n), 0700) != 0 || chdir(path("c.%d", n)) != 0) exit(5);
        put(path("child_did.%d", n), "done\n");
        await(path("parent_did.%d", n));
        char why[256] = "";
        if (!same_file(70 + n, path("parent.%d", n)))
            snprintf(why, sizeof why, "fd %d the parent opened is not in the child's table",
                     70 + n);
        mode_t m = umask(0);
        umask(m);
        if (m != (mode_t)(007 | (n % 8) << 3))
            snprintf(why, sizeof why, "umask 0%o, not the parent's 0%o", m, 007 | (n % 8) << 3);
        put(path(why[0] ? "child_bad.%d" : "child_ok.%d", n), why[0] ? why : "ok\n");
    }
}

static void parent(pid_t kid) {
    put(path("parent.ready", 0), "ready\n");
    for (int n = 0;; ++n) {
        await(path("child_did.%d", n));
        char why[256] = "";
        if (!same_file(50 + n, path("child.%d", n)))
            snprintf(why, sizeof why, "fd %d the child opened is not in the parent's table",
                     50 + n);
        else if (write(50 + n, "from the parent\n", 16) != 16)
            snprintf(why, sizeof why, "write to the child's fd: %s", strerror(errno));
        if (!cwd_is(path("c.%d", n)))
            snprintf(why, sizeof why, "the child's chdir to c.%d is not the parent's cwd", n);
        if (syscall(SYS_kcmp, getpid(), kid, 2 /* KCMP_FILES */, 0, 0) != 0 ||
            syscall(SYS_kcmp, getpid(), kid, 3 /* KCMP_FS */, 0, 0) != 0)
            snprintf(why, sizeof why, "kcmp: the child shares no fd table or fs with us");
        put(path(why[0] ? "bad.%d" : "ok.%d", n), why[0] ? why : "ok\n");
        int fd = open(path("parent.%d", n), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || dup2(fd, 70 + n) != 70 + n) exit(4);
        close(fd);
        umask(007 | (n % 8) << 3);
        put(path("parent_did.%d", n), "done\n");
    }
}

int main(int argc, char** argv) {
    if (argc != 2) return 2;
    g_dir = argv[1];
    long pid = syscall(SYS_clone, CLONE_FILES | CLONE_FS | SIGCHLD, NULL, NULL, NULL, 0);
    if (pid < 0) return 2;
    if (pid == 0) child();
    parent((pid_t)pid);
    return 0;
}
