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
    pthread_sigmask(SIG_SETMASK, &m, NULL);
    stack_t ss = {.ss_sp = malloc(1 << 16), .ss_size = 1 << 16};
    if (!ss.ss_sp || sigaltstack(&ss, NULL) != 0) die("sigaltstack");
    atomic_fetch_add(&g_up, 1);
    while (!atomic_load(&g_stop)) usleep(1000);
    stack_t now;
    sigaltstack(NULL, &now);
    pthread_sigmask(SIG_BLOCK, NULL, &m);
    g_checked[i] = t_val == 100 + i && (pid_t)syscall(SYS_gettid) == g_tid[i] &&
                   now.ss_sp == ss.ss_sp && now.ss_size == ss.ss_size &&
                   sigismember(&m, SIGRTMIN + i) && !sigismember(&m, SIGRTMIN + (i + 1) % NT);
    return NULL;
}

static void threads_setup(void) {
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
    share(CLONE_VM);
}
static void clone_files_setup(void) {
    share(CLONE_FILES);
}
static void clone_check(void) {
    if (kill(g_clone, 0) != 0) fail("the clone is gone");
    kill(g_clone, SIGKILL);
}

static const struct variant kVariants[] = {
    {"threads", threads_setup, threads_check, NULL},
    {"thread_nice", nice_setup, nice_check, NULL},
    {"clone_vm", clone_vm_setup, clone_check, NULL},
    {"clone_files", clone_files_setup, clone_check, NULL},
};
PROBE_MAIN(kVariants)
