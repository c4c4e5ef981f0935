/* Probes of the threads kind (state/threads.cc): threads are saved and
 * restored with their tids; clones that share memory or the fd table with
 * another process without being its threads, and threads with settings of
 * their own that the image does not hold, are refused. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/kcmp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "probe.h"

#define NT 4
static pthread_t g_t[NT];
static pid_t g_tid[NT];
static __thread int t_val;
static atomic_int g_up, g_stop;
static int g_checked[NT];

static void* thread_main(void* arg) {
    int i = (int)(intptr_t)arg;
    g_tid[i] = (pid_t)syscall(SYS_gettid);
    t_val = 100 + i;
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGRTMIN + i);
    sigaddset(&m, SIGTERM); /* the main thread's */
    pthread_sigmask(SIG_SETMASK, &m, NULL);
    stack_t ss = {.ss_sp = malloc(1 << 16), .ss_size = 1 << 16}, old;
    if (!ss.ss_sp || sigaltstack(&ss, &old) != 0) die("sigaltstack");
    atomic_fetch_add(&g_up, 1);
    while (!atomic_load(&g_stop)) usleep(1000);
    stack_t now;
    sigaltstack(NULL, &now);
    pthread_sigmask(SIG_BLOCK, NULL, &m);
    g_checked[i] = t_val == 100 + i && (pid_t)syscall(SYS_gettid) == g_tid[i] &&
                   now.ss_sp == ss.ss_sp && now.ss_size == ss.ss_size &&
                   sigismember(&m, SIGRTMIN + i) && !sigismember(&m, SIGRTMIN + (i + 1) % NT);
    sigaltstack(&old, NULL); /* the one it had (ASan unmaps it at thread exit) */
    return NULL;
}

/* SIGTERM stays blocked but in sigsuspend: a restored task re-executes the
 * syscall it was frozen in, and a SIGTERM handled just before a re-executed
 * pause() would be lost (probe.h's wait_pause jumps out of its handler for that). */
static void block_term(void) {
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &term, NULL);
}
static void wait_term(void) {
    sigset_t m;
    pthread_sigmask(SIG_BLOCK, NULL, &m);
    sigdelset(&m, SIGTERM);
    while (!g_term) sigsuspend(&m);
}

static void threads_setup(void) {
    block_term();
    for (int i = 0; i < NT; ++i)
        if (pthread_create(&g_t[i], NULL, thread_main, (void*)(intptr_t)i) != 0) die("thread");
    while (atomic_load(&g_up) < NT) usleep(1000);
}
static void threads_check(void) {
    atomic_store(&g_stop, 1);
    for (int i = 0; i < NT; ++i) {
        pthread_join(g_t[i], NULL);
        if (!g_checked[i]) fail("thread %d: tid, TLS, altstack or mask differ", i);
    }
}

/* Threads created and joined all the time, also while the checkpoint freezes
 * the task: the freeze lists the threads until no new one shows up. At most
 * one a millisecond: unpaced, it made 15,000-20,000 threads a second here, so
 * it went round all 32768 pids (pid_max) every two seconds, and other tests'
 * new processes could take the probe's own tids between its kill and its
 * restore: the restore failed with "File exists" in full suites on a busy
 * machine (seen by four helpers this session). */
static atomic_long g_churned, g_wrong;
static void* short_lived(void* arg) {
    long n = (long)(intptr_t)arg;
    return (void*)(intptr_t)(n * 3 + 1);
}
static void* churner(void* arg) {
    (void)arg;
    for (long n = 0; !atomic_load(&g_stop); ++n) {
        pthread_t t;
        void* r;
        if (pthread_create(&t, NULL, short_lived, (void*)(intptr_t)n) != 0) continue;
        pthread_join(t, &r);
        if ((long)(intptr_t)r != n * 3 + 1) atomic_fetch_add(&g_wrong, 1);
        atomic_fetch_add(&g_churned, 1);
        usleep(1000);
    }
    return NULL;
}
static pthread_t g_churner;
static long g_churn_at_ready;
static void churn_setup(void) {
    block_term();
    if (pthread_create(&g_churner, NULL, churner, NULL) != 0) die("churner");
    while (atomic_load(&g_churned) < 100) usleep(1000);
}
static void churn_wait(void) {
    wait_term();
    g_churn_at_ready = atomic_load(&g_churned);
    /* It goes on after the restore (bounded by the harness's timeout). */
    while (atomic_load(&g_churned) < g_churn_at_ready + 100) usleep(1000);
}
static void churn_check(void) {
    atomic_store(&g_stop, 1);
    pthread_join(g_churner, NULL);
    if (atomic_load(&g_wrong)) fail("%ld short-lived threads returned wrong values", g_wrong);
}

/* A thread of its own nice value: not saved per thread. */
static void nice_setup(void) {
    threads_setup();
    if (setpriority(PRIO_PROCESS, (id_t)g_tid[1], 5) != 0) die("setpriority");
}
static void nice_check(void) {
    if (getpriority(PRIO_PROCESS, (id_t)g_tid[1]) != 5) fail("thread nice lost");
    threads_check();
}

/* A sibling (CLONE_PARENT) sharing this process's memory or fd table. */
static pid_t g_clone;
static char g_stack[1 << 16] __attribute__((aligned(16)));
static int clone_child(void* arg) {
    (void)arg;
    for (;;) pause();
    return 0;
}
static void share(int flags) {
    g_clone = clone(clone_child, g_stack + sizeof g_stack, flags | CLONE_PARENT | SIGCHLD, NULL);
    if (g_clone < 0) die("clone");
}
static void clone_vm_setup(void) {
    block_term();
    share(CLONE_VM);
}
static void clone_files_setup(void) {
    block_term();
    share(CLONE_FILES);
}
static void clone_check(void) {
    if (kill(g_clone, 0) != 0) fail("the clone is gone");
    kill(g_clone, SIGKILL);
}

/* thpidfd: PIDFD_THREAD pidfds (Linux 6.9) of its threads, made by the
 * restore's blob once the threads exist (state/pidfd.h): one of thread 1,
 * one PIDFD_NONBLOCK of thread 2 (both close-on-exec, as pidfd_open makes
 * them) and a dup of it without close-on-exec. After the restore each names its thread (fdinfo
 * Pid:, the flags), pidfd_send_signal through the first reaches thread 1 alone, and poll says
 * readable once that thread has exited. */
static int g_pfd[3];
static atomic_int g_usr1_tid;
static void on_usr1(int sig) {
    (void)sig;
    atomic_store(&g_usr1_tid, (int)syscall(SYS_gettid));
}
static long fdinfo_num(int fd, const char* key, int base) {
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    int f = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = f < 0 ? -1 : read(f, buf, sizeof buf - 1);
    if (f >= 0) close(f);
    if (n <= 0) return -2;
    buf[n] = 0;
    char* p = strstr(buf, key);
    return p ? strtol(p + strlen(key), NULL, base) : -2;
}
static void pidfd_thread_setup(void) {
    struct sigaction sa = {.sa_handler = on_usr1};
    sigaction(SIGUSR1, &sa, NULL);
    threads_setup();
    g_pfd[0] = (int)syscall(SYS_pidfd_open, g_tid[1], O_EXCL /* PIDFD_THREAD */);
    g_pfd[1] = (int)syscall(SYS_pidfd_open, g_tid[2], O_EXCL | O_NONBLOCK);
    g_pfd[2] = g_pfd[1] < 0 ? -1 : fcntl(g_pfd[1], F_DUPFD, 10);
    if (g_pfd[0] < 0 || g_pfd[1] < 0 || g_pfd[2] < 0) die("pidfd_open PIDFD_THREAD");
}
static void pidfd_thread_check(void) {
    const int tid[3] = {g_tid[1], g_tid[2], g_tid[2]};
    const int nonblock[3] = {0, O_NONBLOCK, O_NONBLOCK}, cloexec[3] = {FD_CLOEXEC, FD_CLOEXEC, 0};
    for (int i = 0; i < 3; ++i) {
        long pid = fdinfo_num(g_pfd[i], "Pid:", 10), flags = fdinfo_num(g_pfd[i], "flags:", 8);
        if (pid != tid[i]) fail("fd %d: pidfd of %ld, not of thread %d", g_pfd[i], pid, tid[i]);
        if (flags < 0 || !(flags & O_EXCL) || (flags & O_NONBLOCK) != nonblock[i])
            fail("fd %d: flags 0%lo", g_pfd[i], flags);
        if (fcntl(g_pfd[i], F_GETFD) != cloexec[i]) fail("fd %d: close-on-exec", g_pfd[i]);
    }
    struct pollfd p = {.fd = g_pfd[0], .events = POLLIN};
    if (poll(&p, 1, 0) != 0) fail("pidfd of thread 1 readable while it runs");
    if (syscall(SYS_pidfd_send_signal, g_pfd[0], SIGUSR1, NULL, 0) != 0)
        fail("pidfd_send_signal: %s", strerror(errno));
    for (int i = 0; i < 60000 && !atomic_load(&g_usr1_tid); ++i) usleep(1000); /* bounded */
    if (atomic_load(&g_usr1_tid) != g_tid[1])
        fail("SIGUSR1 through the pidfd reached tid %d, not thread 1 (%d)",
             atomic_load(&g_usr1_tid), g_tid[1]);
    threads_check();
    if (poll(&p, 1, 60000) != 1 || !(p.revents & POLLIN)) /* bounded: it has exited */
        fail("pidfd of thread 1 not readable after it exited");
}

/* thpidfd2: an event loop that waits for its workers' exit: an epoll
 * watching the pidfd of thread 1 (EPOLLIN|EPOLLEXCLUSIVE, a 64-bit data),
 * the dup of thread 2's (EPOLLET) and an eventfd already readable. The blob
 * adds the pidfds' watches once it made them (stage 1 leaves them out).
 * After the restore: the epoll's watches as fdinfo showed them before,
 * epoll_wait sees the eventfd alone while the threads run, then both
 * pidfds with their data once the threads have exited. */
static int g_ep;
static char g_watches[1024];
static void epoll_watches(int ep, char* out, size_t len) { /* "tfd events data" lines */
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", ep);
    int f = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = f < 0 ? -1 : read(f, buf, sizeof buf - 1);
    if (f >= 0) close(f);
    buf[n > 0 ? n : 0] = 0;
    out[0] = 0;
    for (int tfd = 0; tfd < 64; ++tfd) /* in fd order: fdinfo's is the kernel's tree's */
        for (char* p = strstr(buf, "tfd:"); p; p = strstr(p + 1, "tfd:")) {
            int t;
            unsigned ev;
            unsigned long long data;
            if (sscanf(p, "tfd: %d events: %x data: %llx", &t, &ev, &data) == 3 && t == tfd)
                snprintf(out + strlen(out), len - strlen(out), "%d %x %llx;", t, ev, data);
        }
}
static void pidfd_thread_epoll_setup(void) {
    pidfd_thread_setup();
    g_ep = epoll_create1(EPOLL_CLOEXEC);
    int efd = eventfd(1, EFD_CLOEXEC);
    struct epoll_event e0 = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.u64 = 0x1122334455667788ull};
    struct epoll_event e2 = {.events = EPOLLIN | EPOLLET, .data.u64 = 0x2a};
    struct epoll_event ee = {.events = EPOLLIN, .data.u64 = 0x99};
    if (g_ep < 0 || efd < 0 || epoll_ctl(g_ep, EPOLL_CTL_ADD, g_pfd[0], &e0) != 0 ||
        epoll_ctl(g_ep, EPOLL_CTL_ADD, g_pfd[2], &e2) != 0 ||
        epoll_ctl(g_ep, EPOLL_CTL_ADD, efd, &ee) != 0)
        die("epoll");
    epoll_watches(g_ep, g_watches, sizeof g_watches);
}
static void pidfd_thread_epoll_check(void) {
    char now[1024];
    epoll_watches(g_ep, now, sizeof now);
    if (strcmp(now, g_watches) != 0) fail("epoll watches \"%s\", not \"%s\"", now, g_watches);
    struct epoll_event ev[8];
    int n = epoll_wait(g_ep, ev, 8, 0);
    if (n != 1 || ev[0].data.u64 != 0x99)
        fail("epoll_wait: %d events, the first data %llx", n,
             n > 0 ? (unsigned long long)ev[0].data.u64 : 0ull);
    pidfd_thread_check(); /* the threads exit */
    int seen = 0;
    for (int i = 0; i < 600 && seen != 3; ++i) { /* bounded: 60 s */
        n = epoll_wait(g_ep, ev, 8, 100);
        for (int k = 0; k < n; ++k) {
            if (ev[k].data.u64 == 0x1122334455667788ull && (ev[k].events & EPOLLIN)) seen |= 1;
            if (ev[k].data.u64 == 0x2a && (ev[k].events & EPOLLIN)) seen |= 2;
        }
    }
    if (seen != 3) fail("epoll_wait saw the threads' exits %d (3: both)", seen);
}

/* thpidfd2: the pidfds' descriptions held by a child forked after the
 * pidfd_open: made once by the parent's blob, received by the child's.
 * After the restore each of the child's fds is the parent's description
 * (kcmp KCMP_FILE), of the same thread. */
static pid_t g_kid;
static void pidfd_thread_forked_setup(void) {
    pidfd_thread_setup();
    g_kid = fork();
    if (g_kid < 0) die("fork");
    if (g_kid == 0)
        for (;;) pause();
}
/* thpidfd2: a child sharing its cwd (CLONE_FS), its fd table a copy: cloned
 * where a child is, it receives the pidfds as a forked one. What stays a
 * reason: a holder sharing its fd table (CLONE_FILES: the blob would replace
 * fds that are not its own). */
static void pidfd_thread_clone(int flags) {
    pidfd_thread_setup();
    g_kid = clone(clone_child, g_stack + sizeof g_stack, flags | SIGCHLD, NULL);
    if (g_kid < 0) die("clone");
}
static void pidfd_thread_clone_fs_setup(void) {
    pidfd_thread_clone(CLONE_FS);
}
static void pidfd_thread_clone_files_setup(void) {
    pidfd_thread_clone(CLONE_FILES);
}
static void pidfd_thread_forked_check(void) {
    const int tid[3] = {g_tid[1], g_tid[2], g_tid[2]};
    for (int i = 0; i < 3; ++i) {
        long r = syscall(SYS_kcmp, getpid(), g_kid, KCMP_FILE, g_pfd[i], g_pfd[i]);
        if (r != 0) fail("fd %d: the child's is another description (kcmp %ld)", g_pfd[i], r);
        char path[64], buf[4096];
        snprintf(path, sizeof path, "/proc/%d/fdinfo/%d", (int)g_kid, g_pfd[i]);
        int f = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = f < 0 ? -1 : read(f, buf, sizeof buf - 1);
        if (f >= 0) close(f);
        buf[n > 0 ? n : 0] = 0;
        char* p = strstr(buf, "Pid:");
        if (!p || atoi(p + 4) != tid[i])
            fail("the child's fd %d: not a pidfd of %d", g_pfd[i], tid[i]);
    }
    kill(g_kid, SIGKILL);
    waitpid(g_kid, NULL, 0);
    pidfd_thread_check();
}
static void pidfd_thread_clone_fs_check(void) { /* one fs struct too */
    if (syscall(SYS_kcmp, getpid(), g_kid, KCMP_FS, 0, 0) != 0)
        fail("the child's cwd is not shared");
    pidfd_thread_forked_check();
}
static void pidfd_thread_clone_files_check(void) {
    kill(g_kid, SIGKILL);
    waitpid(g_kid, NULL, 0);
    pidfd_thread_check();
}

static const struct variant kVariants[] = {
    {"threads", threads_setup, threads_check, wait_term},
    {"thread_nice", nice_setup, nice_check, wait_term},
    {"churn", churn_setup, churn_check, churn_wait},
    {"clone_vm", clone_vm_setup, clone_check, wait_term},
    {"clone_files", clone_files_setup, clone_check, wait_term},
    {"pidfd_thread", pidfd_thread_setup, pidfd_thread_check, wait_term},
    {"pidfd_thread_epoll", pidfd_thread_epoll_setup, pidfd_thread_epoll_check, wait_term},
    {"pidfd_thread_forked", pidfd_thread_forked_setup, pidfd_thread_forked_check, wait_term},
    {"pidfd_thread_clone_fs", pidfd_thread_clone_fs_setup, pidfd_thread_clone_fs_check, wait_term},
    {"pidfd_thread_clone_files", pidfd_thread_clone_files_setup, pidfd_thread_clone_files_check,
     wait_term},
};
PROBE_MAIN(kVariants)
