/* The kernel floor of a tree's checkpoint (bench/mount_tree_bench.py
 * --kernel-floor): at least what a checkpoint asks the kernel for each process
 * of a tree, without moving its memory, on THREADS threads (each a share of
 * the processes, as crfs's tracers), and nothing of crfs itself: for each
 * process
 *   PTRACE_SEIZE, PTRACE_INTERRUPT and the wait for its stop;
 *   its /proc files read whole: stat, status, smaps, timers, personality,
 *   auxv, limits, its main thread's children; its task directory listed; its
 *   cwd and root links; for each fd its link, its stat and its fdinfo;
 *   its registers and xsave area (PTRACE_GETREGSET);
 *   INJECTED syscalls (getpid) each a stop of its own, as a parasite's steps
 *   are (crfs's parasite takes three: its area's mmap, its run, the munmap);
 *   its registers put back and PTRACE_DETACH.
 * crfs reads more than this (its tree's two listings, kcmp, the parasite's
 * own work, its page plan), so this is a lower bound, not a target.
 * A process not stopped right after a syscall instruction (bench/tree_holder's
 * members are in pause()) gets no injected syscall; their number goes to
 * stderr. Prints the wall time in ms on stdout.
 *
 *   tree_kernel_floor THREADS INJECTED PID...   (root: ptrace of any process) */
#define _GNU_SOURCE
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { kMaxPids = 4096, kMaxThreads = 16, kXsave = 16384 };

static int npids, pids[kMaxPids], nthreads, injected;
static int skipped[kMaxThreads], failed[kMaxThreads];

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void read_whole(const char* path, char* buf, size_t size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    while (read(fd, buf, size) > 0) {
    }
    close(fd);
}

static int stopped(pid_t pid) {
    int st;
    return waitpid(pid, &st, __WALL) == pid && WIFSTOPPED(st);
}

/* 0: done; -1: the process could not be traced (gone, or not ours). */
static int one(pid_t pid, char* buf, size_t size, int* skip) {
    static const char* const files[] = {"stat",        "status", "smaps",  "timers",
                                        "personality", "auxv",   "limits", "task/%d/children"};
    char path[512], name[64], link[4096];
    struct stat st;
    if (ptrace(PTRACE_SEIZE, pid, 0, 0) != 0) return -1;
    if (ptrace(PTRACE_INTERRUPT, pid, 0, 0) != 0 || !stopped(pid)) {
        (void)ptrace(PTRACE_DETACH, pid, 0, 0);
        return -1;
    }
    for (size_t i = 0; i < sizeof files / sizeof *files; ++i) {
        snprintf(name, sizeof name, files[i], pid);
        snprintf(path, sizeof path, "/proc/%d/%s", pid, name);
        read_whole(path, buf, size);
    }
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR* d = opendir(path);
    if (d) {
        while (readdir(d)) {
        }
        closedir(d);
    }
    snprintf(path, sizeof path, "/proc/%d/cwd", pid);
    (void)!readlink(path, link, sizeof link);
    snprintf(path, sizeof path, "/proc/%d/root", pid);
    (void)!readlink(path, link, sizeof link);
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    d = opendir(path);
    if (d) {
        struct dirent* e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            (void)!readlinkat(dirfd(d), e->d_name, link, sizeof link);
            (void)!fstatat(dirfd(d), e->d_name, &st, 0);
            snprintf(path, sizeof path, "/proc/%d/fdinfo/%s", pid, e->d_name);
            read_whole(path, buf, size);
        }
        closedir(d);
    }
    struct user_regs_struct regs, call;
    struct iovec gp = {&regs, sizeof regs};
    static __thread char xsave[kXsave];
    struct iovec xs = {xsave, sizeof xsave};
    if (ptrace(PTRACE_GETREGSET, pid, NT_PRSTATUS, &gp) != 0) {
        (void)ptrace(PTRACE_DETACH, pid, 0, 0);
        return -1;
    }
    (void)ptrace(PTRACE_GETREGSET, pid, NT_X86_XSTATE, &xs);
    errno = 0;
    long text = ptrace(PTRACE_PEEKTEXT, pid, regs.rip - 2, 0);
    if (errno == 0 && (text & 0xffff) == 0x050f) { /* syscall, right before rip */
        for (int k = 0; k < injected; ++k) {
            call = regs;
            call.rip = regs.rip - 2;
            call.rax = 39; /* getpid */
            call.orig_rax = (unsigned long long)-1;
            if (ptrace(PTRACE_SETREGS, pid, 0, &call) != 0 ||
                ptrace(PTRACE_SINGLESTEP, pid, 0, 0) != 0 || !stopped(pid)) {
                /* Its own registers back, not the call's, and let go (best effort). */
                (void)ptrace(PTRACE_SETREGS, pid, 0, &regs);
                (void)ptrace(PTRACE_DETACH, pid, 0, 0);
                return -1;
            }
        }
        if (ptrace(PTRACE_SETREGS, pid, 0, &regs) != 0) {
            (void)ptrace(PTRACE_DETACH, pid, 0, 0);
            return -1;
        }
    } else if (injected) {
        ++*skip;
    }
    return ptrace(PTRACE_DETACH, pid, 0, 0) == 0 ? 0 : -1;
}

static void* run(void* arg) {
    long t = (long)arg;
    size_t size = 1 << 20;
    char* buf = malloc(size);
    if (!buf) return NULL;
    for (int i = (int)t; i < npids; i += nthreads)
        if (one(pids[i], buf, size, &skipped[t]) != 0) ++failed[t];
    free(buf);
    return NULL;
}

int main(int argc, char** argv) {
    if (argc < 4) return 2;
    nthreads = atoi(argv[1]);
    injected = atoi(argv[2]);
    if (nthreads < 1 || nthreads > kMaxThreads || injected < 0 || argc - 3 > kMaxPids) return 2;
    for (int i = 3; i < argc; ++i) pids[npids++] = atoi(argv[i]);
    alarm(120); /* bounded: a process that never stops ends this one (its tracees are let go) */
    pthread_t th[kMaxThreads];
    double t = now_ms();
    for (long k = 0; k < nthreads; ++k)
        if (pthread_create(&th[k], NULL, run, (void*)k) != 0) return 3;
    for (int k = 0; k < nthreads; ++k) pthread_join(th[k], NULL);
    double ms = now_ms() - t;
    int skip = 0, fail = 0;
    for (int k = 0; k < nthreads; ++k) skip += skipped[k], fail += failed[k];
    if (skip) fprintf(stderr, "tree_kernel_floor: %d processes got no injected syscall\n", skip);
    if (fail) {
        fprintf(stderr, "tree_kernel_floor: %d processes could not be traced\n", fail);
        return 1;
    }
    printf("%.3f\n", ms);
    return 0;
}
