// A victim for the checkpoint attack tests: holds a secret in its memory and
// waits for SIGTERM.
//
//   secret_holder DIR READY SECRET_FILE [--nondumpable] [--dumpable] [--seccomp]
//                 [--shared] [--exec-on-usr1 PROGRAM ARG...]
//
// Reads SECRET_FILE (with its current credentials: the file is only readable
// by whoever the test means to hold the secret), keeps several copies of it on
// the heap, applies the options, then writes DIR/READY (atomically) holding its
// pid. --nondumpable: PR_SET_DUMPABLE 0, as ssh-agent does. --dumpable:
// PR_SET_DUMPABLE 1 (a file-capability binary starts non-dumpable; the test of
// the capability rule wants only that rule in the way). --seccomp: an allow-all
// seccomp filter (with no_new_privs). --shared: one more copy in a page of
// shared anonymous memory. --exec-on-usr1: on SIGUSR1, execv
// PROGRAM with the ARGs (the rest of the command line). Exits 0 on SIGTERM.
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

static volatile sig_atomic_t g_term, g_usr1;

static void on_term(int sig) {
    (void)sig;
    g_term = 1;
}
static void on_usr1(int sig) {
    (void)sig;
    g_usr1 = 1;
}

static void die(const char* what) {
    perror(what);
    exit(2);
}

int main(int argc, char** argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: secret_holder DIR READY SECRET_FILE [options]\n");
        return 2;
    }
    const char* dir = argv[1];
    const char* ready = argv[2];
    char** exec_argv = NULL;
    int nondumpable = 0, dumpable = 0, seccomp = 0, shared = 0;
    for (int i = 4; i < argc; ++i) {
        if (strcmp(argv[i], "--nondumpable") == 0)
            nondumpable = 1;
        else if (strcmp(argv[i], "--dumpable") == 0)
            dumpable = 1;
        else if (strcmp(argv[i], "--seccomp") == 0)
            seccomp = 1;
        else if (strcmp(argv[i], "--shared") == 0)
            shared = 1;
        else if (strcmp(argv[i], "--exec-on-usr1") == 0 && i + 1 < argc) {
            exec_argv = &argv[i + 1];
            break;
        } else {
            fprintf(stderr, "secret_holder: unknown option %s\n", argv[i]);
            return 2;
        }
    }

    int fd = open(argv[3], O_RDONLY);
    if (fd < 0) die("open secret");
    char secret[256];
    ssize_t n = read(fd, secret, sizeof secret - 1);
    if (n <= 0) die("read secret");
    close(fd);
    secret[n] = 0;
    // Copies on the heap and the stack: any memory capture carries them.
    enum { kCopies = 8 };
    static char* copies[kCopies];
    for (int i = 0; i < kCopies; ++i) {
        copies[i] = malloc(4096);
        if (!copies[i]) die("malloc");
        memset(copies[i], 0, 4096);
        memcpy(copies[i], secret, (size_t)n);
    }

    // Blocked except inside sigsuspend: a signal between the check and the
    // wait cannot be lost.
    sigset_t block, waitmask;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, &waitmask);
    if (shared) {
        char* page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (page == MAP_FAILED) die("mmap shared");
        memcpy(page, secret, (size_t)n);
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);

    if (nondumpable && prctl(PR_SET_DUMPABLE, 0) != 0) die("PR_SET_DUMPABLE 0");
    if (dumpable && prctl(PR_SET_DUMPABLE, 1) != 0) die("PR_SET_DUMPABLE 1");
    if (seccomp) {
        struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
        struct sock_fprog prog = {1, &allow};
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die("no_new_privs");
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) die("seccomp");
    }

    char path[4096], tmp[4200], text[32];
    snprintf(path, sizeof path, "%s/%s", dir, ready);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int len = snprintf(text, sizeof text, "%d\n", getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, text, (size_t)len) != len || close(fd) != 0) die("write ready");
    if (rename(tmp, path) != 0) die("rename ready");

    while (!g_term) {
        if (g_usr1 && exec_argv) {
            sigprocmask(SIG_SETMASK, &waitmask, NULL);
            execv(exec_argv[0], exec_argv);
            die("execv");
        }
        sigsuspend(&waitmask);
    }
    for (int i = 0; i < kCopies; ++i)
        if (memcmp(copies[i], secret, (size_t)n) != 0) return 1;
    return 0;
}
