/* Probes of the threads kind (state/threads.cc): threads are saved and
 * restored with their tids; clones that share memory or the fd table with
 * another process without being its threads, and threads with settings of
 * their own that the image does not hold, are refused. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
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

/* pidfd2: a PIDFD_THREAD pidfd (Linux 6.9) of one of its threads: the
 * threads are made by the blob after every fd is in place, so it stays a
 * reason (docs/trees.md "pidfds between members"). */
static void pidfd_thread_setup(void) {
    threads_setup();
    if (syscall(SYS_pidfd_open, g_tid[1], O_EXCL /* PIDFD_THREAD */) < 0)
        die("pidfd_open PIDFD_THREAD");
}

static const struct variant kVariants[] = {
    {"threads", threads_setup, threads_check, wait_term},
    {"thread_nice", nice_setup, nice_check, wait_term},
    {"churn", churn_setup, churn_check, churn_wait},
    {"clone_vm", clone_vm_setup, clone_check, wait_term},
    {"clone_files", clone_files_setup, clone_check, wait_term},
    {"pidfd_thread", pidfd_thread_setup, threads_check, wait_term},
};
PROBE_MAIN(kVariants)
