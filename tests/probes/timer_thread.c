/* timer: POSIX timers whose signal goes to a thread other than the main one
 * (state/timers.cc, record posix-timer-thread).
 *
 *   thread_target  timers 0 (SIGEV_NONE) and 2 (1 deleted): 2 is a 20 ms
 *             periodic CLOCK_MONOTONIC timer with SIGEV_THREAD_ID to a second
 *             thread, which takes its signal in sigwaitinfo (as glibc's
 *             SIGEV_THREAD helper does); every thread blocks the signal. The
 *             thread checks each siginfo (SI_TIMER, the timer id, the value);
 *             the main thread must never have it pending.
 *   sigev_thread  glibc's SIGEV_THREAD timer (a 20 ms periodic callback that
 *             counts): glibc makes it a SIGEV_THREAD_ID timer to its helper
 *             thread (vim 9 has one).
 * Both, after SIGTERM: three more expiries reach the thread, the timers keep
 * their ids, clock, period and target thread (/proc/self/timers). */
#include "probe.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>

#define kSig (SIGRTMIN + 3)
#define kValue 0x5678
#define kPeriodNs 20000000L
/* A guard, never a verdict on time: polls of 1 ms for three expiries. */
#define kMaxPolls 30000

static atomic_int g_ticks, g_bad, g_tid;

static int make_timer(clockid_t clock, int notify, int signo, long value, int tid) {
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = notify;
    sev.sigev_signo = signo;
    sev.sigev_value.sival_ptr = (void*)value;
    sev._sigev_un._tid = tid;
    int id = -1;
    if (syscall(SYS_timer_create, clock, &sev, &id) != 0) die("timer_create");
    return id;
}

static void arm(int id, long period_ns) {
    struct itimerspec its = {{0, period_ns}, {0, period_ns}};
    if (syscall(SYS_timer_settime, id, 0, &its, NULL) != 0) die("timer_settime");
}

/* Three more expiries seen by the thread (a counter it bumps). */
static void wait_three(void) {
    sigset_t none;
    sigemptyset(&none);
    while (!g_term) sigsuspend(&none);
    int seen = atomic_load(&g_ticks);
    for (int i = 0; i < kMaxPolls && atomic_load(&g_ticks) < seen + 3; ++i) usleep(1000);
    if (atomic_load(&g_ticks) < seen + 3) fail("the timer's thread saw no 3 more expiries");
}

/* The kernel's view of this process's timers. */
static void proc_timers(char* buf, size_t len) {
    FILE* f = fopen("/proc/self/timers", "r");
    size_t n = f ? fread(buf, 1, len - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = 0;
}

static void expect_proc(const char* want) {
    char buf[4096];
    proc_timers(buf, sizeof buf);
    if (!strstr(buf, want)) fail("/proc/self/timers has no \"%s\": %s", want, buf);
}

static void expect_period(int id) {
    struct itimerspec t;
    if (syscall(SYS_timer_gettime, id, &t) != 0)
        fail("timer %d is gone: %s", id, strerror(errno));
    else if (t.it_interval.tv_sec != 0 || t.it_interval.tv_nsec != kPeriodNs)
        fail("timer %d period %ld.%09ld", id, (long)t.it_interval.tv_sec, t.it_interval.tv_nsec);
}

/* --- thread_target ------------------------------------------------------- */

static int g_timer = -1;

static void* waiter(void* arg) {
    (void)arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, kSig);
    atomic_store(&g_tid, (int)syscall(SYS_gettid));
    for (;;) {
        siginfo_t si;
        if (sigwaitinfo(&set, &si) != kSig) continue; /* EINTR: a stop */
        if (si.si_code != SI_TIMER || si.si_value.sival_ptr != (void*)kValue ||
            si.si_timerid != g_timer)
            atomic_store(&g_bad, 1);
        atomic_fetch_add(&g_ticks, 1);
    }
    return NULL;
}

static void target_setup(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, kSig);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) die("sigprocmask");
    if (make_timer(CLOCK_REALTIME, SIGEV_NONE, 0, 0, 0) != 0) die("timer 0");
    if (make_timer(CLOCK_MONOTONIC, SIGEV_NONE, 0, 0, 0) != 1) die("timer 1");
    pthread_t t;
    sigaddset(&set, SIGTERM); /* SIGTERM goes to the main thread */
    sigprocmask(SIG_BLOCK, &set, NULL);
    if (pthread_create(&t, NULL, waiter, NULL) != 0) die("pthread_create");
    sigdelset(&set, kSig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    while (!atomic_load(&g_tid)) usleep(1000);
    g_timer = make_timer(CLOCK_MONOTONIC, SIGEV_THREAD_ID, kSig, kValue, atomic_load(&g_tid));
    if (g_timer != 2) die("timer 2");
    if (syscall(SYS_timer_delete, 1) != 0) die("timer_delete");
    arm(g_timer, kPeriodNs);
    int seen = atomic_load(&g_ticks); /* the thread takes them before ready */
    for (int i = 0; i < kMaxPolls && atomic_load(&g_ticks) < seen + 2; ++i) usleep(1000);
}

static void target_check(void) {
    expect_period(2);
    struct itimerspec t;
    errno = 0;
    if (syscall(SYS_timer_gettime, 1, &t) == 0 || errno != EINVAL) fail("timer 1 exists again");
    if (syscall(SYS_timer_gettime, 0, &t) != 0) fail("timer 0 is gone");
    if (atomic_load(&g_bad)) fail("the thread had a signal of another timer or value");
    sigset_t pending;
    sigpending(&pending); /* the main thread's and the process's */
    if (sigismember(&pending, kSig)) fail("the timer's signal is pending outside its thread");
    char want[256];
    snprintf(want, sizeof want,
             "ID: 2\nsignal: %d/0000000000005678\nnotify: signal/tid.%d\nClockID: 1\n", kSig,
             atomic_load(&g_tid));
    expect_proc(want);
}

/* --- sigev_thread -------------------------------------------------------- */

static timer_t g_glibc;

static void on_expiry(union sigval v) {
    if (v.sival_ptr != (void*)&g_glibc) atomic_store(&g_bad, 1);
    atomic_fetch_add(&g_ticks, 1);
}

static void glibc_setup(void) {
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD;
    sev.sigev_notify_function = on_expiry;
    sev.sigev_value.sival_ptr = &g_glibc;
    if (timer_create(CLOCK_MONOTONIC, &sev, &g_glibc) != 0) die("timer_create SIGEV_THREAD");
    struct itimerspec its = {{0, kPeriodNs}, {0, kPeriodNs}};
    if (timer_settime(g_glibc, 0, &its, NULL) != 0) die("timer_settime");
    for (int i = 0; i < kMaxPolls && atomic_load(&g_ticks) < 2; ++i) usleep(1000);
}

static void glibc_check(void) {
    struct itimerspec t;
    if (timer_gettime(g_glibc, &t) != 0)
        fail("glibc's timer is gone: %s", strerror(errno));
    else if (t.it_interval.tv_sec != 0 || t.it_interval.tv_nsec != kPeriodNs)
        fail("glibc's timer period %ld.%09ld", (long)t.it_interval.tv_sec, t.it_interval.tv_nsec);
    if (atomic_load(&g_bad)) fail("the callback had another value");
    /* glibc's helper thread is the target, not the main thread. */
    char want[64];
    snprintf(want, sizeof want, "notify: signal/tid.%d\n", getpid());
    char buf[4096];
    proc_timers(buf, sizeof buf);
    if (!strstr(buf, "notify: signal/tid.") || strstr(buf, want) || !strstr(buf, "ClockID: 1\n"))
        fail("/proc/self/timers: not a MONOTONIC timer to a thread other than the main one: %s",
             buf);
}

static const struct variant kVariants[] = {
    {"thread_target", target_setup, target_check, wait_three},
    {"sigev_thread", glibc_setup, glibc_check, wait_three},
};
PROBE_MAIN(kVariants)
