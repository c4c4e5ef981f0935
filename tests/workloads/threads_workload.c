/* The multi-threaded program (tests/fs/threads_mount_test.py):
 *
 *   threads_workload DIR
 *
 * Eight worker threads, each with its own blocked mask, TLS value, name,
 * alternate stack and floating-point accumulator; worker 0 holds a robust
 * mutex, worker 1 waits in pthread_cond_wait, worker 2 spins, workers 3..7
 * wait in a barrier, worker 4 has a private signal pending, worker 3 holds a
 * second robust mutex it will die holding. DIR/ready once set up; on SIGTERM
 * every thread checks its state (tid, mask, TLS, name, altstack, rseq,
 * robust list and clear_child_tid registrations, pending signals) and they
 * compute a sum together; the main thread joins them (clear_child_tid),
 * checks owner-died on worker 3's mutex (its robust list) and writes
 * DIR/result: PASS or FAIL: what differed. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NW 8
#define N 4000000ull

static char g_dir[1024];
static pthread_mutex_t g_fail_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_fail[4096];
static volatile sig_atomic_t g_term;
static atomic_int g_go, g_setup_done;
static pthread_mutex_t g_robust, g_robust_dead;
static pthread_mutex_t g_cond_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cond = PTHREAD_COND_INITIALIZER;
static pthread_barrier_t g_barrier;
static __thread long t_value;
static pid_t g_tids[NW];
static uint64_t g_partial[NW];
static double g_fp[NW];
static pthread_t g_threads[NW];

static void fail(const char* fmt, ...) {
    pthread_mutex_lock(&g_fail_mu);
    size_t n = strlen(g_fail);
    if (n + 2 < sizeof g_fail) {
        if (n) g_fail[n++] = ';', g_fail[n++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g_fail + n, sizeof g_fail - n, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&g_fail_mu);
}

static void die(const char* what) {
    fprintf(stderr, "setup: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void on_term(int sig) {
    (void)sig;
    g_term = 1;
}

static int sig_of(int i) {
    return SIGRTMIN + 2 + i;
}

struct own {
    void* robust_head;
    size_t robust_len;
    void* tid_addr;
    stack_t alt;
};

static void own_state(struct own* o) {
    syscall(SYS_get_robust_list, 0, &o->robust_head, &o->robust_len);
    prctl(PR_GET_TID_ADDRESS, &o->tid_addr);
    sigaltstack(NULL, &o->alt);
}

static void check_thread(int i, const struct own* before) {
    pid_t tid = (pid_t)syscall(SYS_gettid);
    if (tid != g_tids[i]) fail("worker %d: tid %d, was %d", i, tid, g_tids[i]);
    if (t_value != 1000L * i + 7) fail("worker %d: TLS value %ld", i, t_value);
    sigset_t m;
    pthread_sigmask(SIG_BLOCK, NULL, &m);
    for (int k = 0; k < NW; ++k)
        if (sigismember(&m, sig_of(k)) != (k == i)) fail("worker %d: mask bit of worker %d", i, k);
    char name[16], want[16];
    pthread_getname_np(pthread_self(), name, sizeof name);
    snprintf(want, sizeof want, "worker-%d", i);
    if (strcmp(name, want) != 0) fail("worker %d: name '%s'", i, name);
    struct own now;
    own_state(&now);
    if (now.robust_head != before->robust_head || now.robust_len != before->robust_len)
        fail("worker %d: robust list %p, was %p", i, now.robust_head, before->robust_head);
    if (now.tid_addr != before->tid_addr)
        fail("worker %d: clear_child_tid %p, was %p", i, now.tid_addr, before->tid_addr);
    if (now.alt.ss_sp != before->alt.ss_sp || now.alt.ss_size != before->alt.ss_size ||
        now.alt.ss_flags != before->alt.ss_flags)
        fail("worker %d: sigaltstack %p/%zu, was %p/%zu", i, now.alt.ss_sp, now.alt.ss_size,
             before->alt.ss_sp, before->alt.ss_size);
    /* Registered again with the very same area: the kernel says EBUSY. */
    if (__rseq_size > 0) {
        void* area = (char*)__builtin_thread_pointer() + __rseq_offset;
        long r = syscall(SYS_rseq, area, __rseq_size < 32 ? 32 : __rseq_size, 0, RSEQ_SIG);
        if (r != -1 || errno != EBUSY) fail("worker %d: rseq not registered (%ld)", i, r);
    }
    sigset_t pend;
    sigpending(&pend);
    if (sigismember(&pend, SIGUSR1) != (i == 4)) fail("worker %d: SIGUSR1 pending wrong", i);
    if (i == 4) {
        int sig;
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, SIGUSR1);
        if (sigwait(&one, &sig) != 0 || sig != SIGUSR1) fail("worker 4: no SIGUSR1");
    }
}

static void* worker(void* arg) {
    int i = (int)(intptr_t)arg;
    g_tids[i] = (pid_t)syscall(SYS_gettid);
    t_value = 1000L * i + 7;
    char name[16];
    snprintf(name, sizeof name, "worker-%d", i);
    pthread_setname_np(pthread_self(), name);
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, sig_of(i));
    if (i == 4) sigaddset(&m, SIGUSR1);
    sigaddset(&m, SIGTERM); /* the main thread's: it waits for it in sigsuspend */
    pthread_sigmask(SIG_SETMASK, &m, NULL);
    stack_t ss = {.ss_sp = malloc(65536 + 4096 * i), .ss_size = 65536 + 4096 * i, .ss_flags = 0};
    stack_t old_ss;
    if (!ss.ss_sp || sigaltstack(&ss, &old_ss) != 0) die("sigaltstack");
    if (i == 0 && pthread_mutex_lock(&g_robust) != 0) die("robust lock");
    if (i == 3 && pthread_mutex_lock(&g_robust_dead) != 0) die("robust lock 2");
    struct own before;
    own_state(&before);
    /* Floating point in every thread: xstate per thread. */
    double fp = 0.5 * i;
    for (int k = 1; k <= 1000; ++k) fp += 1.0 / k;
    atomic_fetch_add(&g_setup_done, 1);

    if (i == 1) {
        pthread_mutex_lock(&g_cond_mu);
        while (!atomic_load(&g_go)) pthread_cond_wait(&g_cond, &g_cond_mu);
        pthread_mutex_unlock(&g_cond_mu);
    } else if (i == 2) {
        volatile uint64_t spins = 0;
        while (!atomic_load(&g_go)) ++spins;
    } else if (i >= 3) {
        pthread_barrier_wait(&g_barrier);
    } else {
        while (!atomic_load(&g_go)) usleep(1000);
    }

    check_thread(i, &before);
    double again = 0.5 * i;
    for (int k = 1; k <= 1000; ++k) again += 1.0 / k;
    if (again != fp) fail("worker %d: floating point %.17g vs %.17g", i, fp, again);
    g_fp[i] = fp;
    uint64_t sum = 0;
    for (uint64_t k = i * (N / NW); k < (i + 1) * (N / NW); ++k) sum += k * k % 1000003;
    g_partial[i] = sum;
    if (i == 0 && pthread_mutex_unlock(&g_robust) != 0) fail("worker 0: robust unlock");
    sigaltstack(&old_ss, NULL); /* the one it had (ASan unmaps it at thread exit) */
    return NULL; /* worker 3 dies holding g_robust_dead: owner-died for the next one */
}

static void write_result(const char* text) {
    char path[1100], tmp[1100];
    snprintf(path, sizeof path, "%s/result", g_dir);
    snprintf(tmp, sizeof tmp, "%s/result.tmp", g_dir);
    FILE* f = fopen(tmp, "w");
    if (!f) die("result");
    fprintf(f, "%s\n", text);
    fclose(f);
    rename(tmp, path);
}

int main(int argc, char** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    snprintf(g_dir, sizeof g_dir, "%s", argv[1]);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &term, NULL);
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&g_robust, &a);
    pthread_mutex_init(&g_robust_dead, &a);
    pthread_barrier_init(&g_barrier, NULL, NW - 3 + 1);
    for (int i = 0; i < NW; ++i)
        if (pthread_create(&g_threads[i], NULL, worker, (void*)(intptr_t)i) != 0) die("create");
    while (atomic_load(&g_setup_done) < NW) usleep(1000);
    pthread_kill(g_threads[4], SIGUSR1);
    char ready[1100];
    snprintf(ready, sizeof ready, "%s/ready", g_dir);
    int fd = open(ready, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) die("ready");
    close(fd);

    /* sigsuspend, not pause: a restored task re-executes the syscall it was
     * frozen in, and a SIGTERM handled just before that would be lost to a
     * `while (!g_term) pause()` (the mask makes sigsuspend atomic). */
    sigset_t wait_mask;
    pthread_sigmask(SIG_BLOCK, NULL, &wait_mask);
    sigdelset(&wait_mask, SIGTERM);
    while (!g_term) sigsuspend(&wait_mask);

    /* pthread_kill uses the tids glibc keeps: they must still be the threads'. */
    for (int i = 0; i < NW; ++i)
        if (pthread_kill(g_threads[i], 0) != 0) fail("pthread_kill of worker %d", i);
    atomic_store(&g_go, 1);
    pthread_mutex_lock(&g_cond_mu);
    pthread_cond_broadcast(&g_cond);
    pthread_mutex_unlock(&g_cond_mu);
    pthread_barrier_wait(&g_barrier);
    for (int i = 0; i < NW; ++i) pthread_join(g_threads[i], NULL);
    uint64_t sum = 0, want = 0;
    for (int i = 0; i < NW; ++i) sum += g_partial[i];
    for (uint64_t k = 0; k < N; ++k) want += k * k % 1000003;
    if (sum != want) fail("sum %llu, want %llu", (unsigned long long)sum, (unsigned long long)want);
    if (pthread_mutex_trylock(&g_robust) != 0) fail("robust mutex still held");
    int r = pthread_mutex_lock(&g_robust_dead);
    if (r != EOWNERDEAD) fail("lock of the dead worker's robust mutex: %d, want EOWNERDEAD", r);
    char out[4200];
    snprintf(out, sizeof out, "%s%s", g_fail[0] ? "FAIL: " : "PASS", g_fail);
    write_result(out);
    return g_fail[0] ? 1 : 0;
}
