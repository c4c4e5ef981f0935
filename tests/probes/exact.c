/* Probes of state restored exactly where it used to be refused (issue 9,
 * "prefer exact restore"): seccomp filters, and the variants that stay
 * refused. */
#include "probe.h" /* first: _GNU_SOURCE */

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>

/* A filter returning `err` for syscall `nr`, allowing everything else. */
static void add_filter(int nr, int err, unsigned flags) {
    struct sock_filter f[] = {BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
                              BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
                              BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)err),
                              BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
    struct sock_fprog prog = {sizeof f / sizeof f[0], f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die("PR_SET_NO_NEW_PRIVS");
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog) != 0) die("seccomp");
}

static void expect_errno(const char* what, long nr, int err) {
    errno = 0;
    long r = syscall(nr);
    if (r != -1 || errno != err)
        fail("%s returned %ld errno %d, not -1 errno %d: the filter is gone", what, r, errno, err);
}

static unsigned status_field(const char* name) {
    FILE* f = fopen("/proc/self/status", "r");
    char line[256];
    unsigned v = ~0u;
    size_t n = strlen(name);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, name, n) == 0 && line[n] == ':')
            v = (unsigned)strtoul(line + n + 1, 0, 10);
    if (f) fclose(f);
    return v;
}

/* getpid answers EACCES: the filter acts after the restore. */
static void getpid_setup(void) {
    add_filter(SYS_getpid, EACCES, 0);
}
static void getpid_check(void) {
    expect_errno("getpid", SYS_getpid, EACCES);
    if (status_field("NoNewPrivs") != 1) fail("no_new_privs is %u", status_field("NoNewPrivs"));
    if (status_field("Seccomp_filters") != 1)
        fail("%u filters, not 1", status_field("Seccomp_filters"));
}

/* Two filters on one syscall, the older with SECCOMP_FILTER_FLAG_LOG: of two
 * SECCOMP_RET_ERRNO answers the newest filter's wins, so the order shows. */
static void stacked_setup(void) {
    add_filter(SYS_getppid, EPERM, SECCOMP_FILTER_FLAG_LOG);
    add_filter(SYS_getppid, ENOENT, 0);
    add_filter(SYS_getuid, ESRCH, 0);
}
static void stacked_check(void) {
    expect_errno("getppid", SYS_getppid, ENOENT);
    expect_errno("getuid", SYS_getuid, ESRCH);
    if (status_field("Seccomp_filters") != 3)
        fail("%u filters, not 3", status_field("Seccomp_filters"));
    if (status_field("Seccomp") != 2) fail("seccomp mode %u", status_field("Seccomp"));
}

/* POSIX timers by raw syscall (kernel ids): 0 periodic on CLOCK_MONOTONIC
 * signalling SIGUSR1 with a value, 1 deleted (a gap), 2 one-shot in 1000 s on
 * CLOCK_REALTIME with SIGEV_NONE, 3 periodic on the process CPU clock to the
 * main thread (SIGEV_THREAD_ID), disarmed with its period kept. After the
 * restore each is there with its id, clock, period and notification, and 0
 * keeps firing with its value. */
static volatile sig_atomic_t g_ticks, g_bad_value, g_bad_id;
static void on_usr1(int sig, siginfo_t* si, void* uc) {
    (void)sig, (void)uc;
    if (si->si_code != SI_TIMER) return;
    if (si->si_value.sival_int != 0x1234) g_bad_value = 1;
    if (si->si_timerid != 0) g_bad_id = 1;
    ++g_ticks;
}
static int make_timer(int clock, int notify, int signo, int value) {
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = notify;
    ev.sigev_signo = signo;
    ev.sigev_value.sival_int = value;
    if (notify == SIGEV_THREAD_ID) ev._sigev_un._tid = (int)syscall(SYS_gettid);
    int id = -1;
    if (syscall(SYS_timer_create, clock, &ev, &id) != 0) die("timer_create");
    return id;
}
static void arm(int id, long value_ns, long interval_ns, int flags) {
    struct itimerspec t = {{interval_ns / 1000000000, interval_ns % 1000000000},
                           {value_ns / 1000000000, value_ns % 1000000000}};
    if (syscall(SYS_timer_settime, id, flags, &t, NULL) != 0) die("timer_settime");
}
static void timers_setup(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_usr1;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    if (make_timer(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGUSR1, 0x1234) != 0) die("timer 0");
    if (make_timer(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGUSR2, 0) != 1) die("timer 1");
    if (make_timer(CLOCK_REALTIME, SIGEV_NONE, 0, 0) != 2) die("timer 2");
    if (make_timer(CLOCK_PROCESS_CPUTIME_ID, SIGEV_THREAD_ID, SIGUSR2, 7) != 3) die("timer 3");
    if (syscall(SYS_timer_delete, 1) != 0) die("timer_delete");
    arm(0, 20000000, 20000000, 0);
    arm(2, 1000000000000L, 0, 0);
    arm(3, 0, 5000000, 0);
}
static void timers_wait(void) {
    sigset_t none;
    sigemptyset(&none);
    while (!g_term) sigsuspend(&none);
    /* Three more expiries of timer 0 (each a wake-up of sigsuspend). */
    for (int seen = g_ticks; g_ticks < seen + 3;) sigsuspend(&none);
}
static void timers_check(void) {
    struct itimerspec t;
    if (syscall(SYS_timer_gettime, 0, &t) != 0)
        fail("timer 0 is gone: %s", strerror(errno));
    else if (t.it_interval.tv_sec != 0 || t.it_interval.tv_nsec != 20000000)
        fail("timer 0 period %ld.%09ld", (long)t.it_interval.tv_sec, t.it_interval.tv_nsec);
    if (g_bad_value) fail("timer 0 signalled another value");
    if (g_bad_id) fail("a SIGUSR1 from another timer id");
    errno = 0;
    if (syscall(SYS_timer_gettime, 1, &t) == 0 || errno != EINVAL) fail("timer 1 exists again");
    if (syscall(SYS_timer_gettime, 2, &t) != 0)
        fail("timer 2 is gone: %s", strerror(errno));
    else if ((t.it_value.tv_sec == 0 && t.it_value.tv_nsec == 0) || t.it_value.tv_sec > 1000 ||
             t.it_interval.tv_sec || t.it_interval.tv_nsec)
        fail("timer 2 has %ld s left, period %ld.%09ld", (long)t.it_value.tv_sec,
             (long)t.it_interval.tv_sec, t.it_interval.tv_nsec);
    if (syscall(SYS_timer_gettime, 3, &t) != 0)
        fail("timer 3 is gone: %s", strerror(errno));
    else if (t.it_value.tv_sec || t.it_value.tv_nsec)
        fail("timer 3 is armed");
    /* The clock and notification of each, as the kernel shows them. */
    char buf[4096] = {0}, want[512];
    FILE* f = fopen("/proc/self/timers", "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = 0;
    int pid = getpid();
    snprintf(want, sizeof want,
             "ID: 0\nsignal: %d/0000000000001234\nnotify: signal/pid.%d\nClockID: 1\n", SIGUSR1,
             pid);
    if (!strstr(buf, want)) fail("/proc/self/timers has no \"%s\": %s", want, buf);
    snprintf(want, sizeof want,
             "ID: 2\nsignal: 0/0000000000000000\nnotify: none/pid.%d\nClockID: 0\n", pid);
    if (!strstr(buf, want)) fail("/proc/self/timers has no \"%s\"", want);
    snprintf(want, sizeof want,
             "ID: 3\nsignal: %d/0000000000000007\nnotify: signal/tid.%d\nClockID: -6\n", SIGUSR2,
             pid);
    if (!strstr(buf, want)) fail("/proc/self/timers has no \"%s\"", want);
}

/* Locks: a shared flock on one description of a file, an OFD write lock on
 * bytes 10-19 of another, a POSIX read lock from 100 to the end through a
 * third. Another description (and, for POSIX, a child) sees each held. */
static int g_lfd[3];
static void locks_setup(void) {
    for (int i = 0; i < 3; ++i) {
        g_lfd[i] = open(at("locked"), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (g_lfd[i] < 0) die("open locked");
    }
    if (flock(g_lfd[0], LOCK_SH) != 0) die("flock");
    struct flock ofd = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 10, .l_len = 10};
    if (fcntl(g_lfd[1], F_OFD_SETLK, &ofd) != 0) die("F_OFD_SETLK");
    struct flock px = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 0};
    if (fcntl(g_lfd[2], F_SETLK, &px) != 0) die("F_SETLK");
}
static void locks_check(void) {
    int fd = open(at("locked"), O_RDWR | O_CLOEXEC);
    if (flock(fd, LOCK_EX | LOCK_NB) == 0 || errno != EWOULDBLOCK) fail("the shared flock is gone");
    if (flock(fd, LOCK_SH | LOCK_NB) != 0) fail("the flock is not a shared one");
    flock(fd, LOCK_UN);
    struct flock q = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(fd, F_OFD_GETLK, &q) != 0 || q.l_type != F_WRLCK || q.l_start != 10 || q.l_len != 10)
        fail("the OFD lock on 10-19 is gone (%d %ld+%ld)", q.l_type, (long)q.l_start,
             (long)q.l_len);
    struct flock w = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 1};
    if (fcntl(fd, F_OFD_GETLK, &w) != 0 || w.l_type != F_RDLCK || w.l_start != 100 ||
        w.l_len != 0 || w.l_pid != getpid())
        fail("the POSIX read lock from 100 on is not this process's (%d %ld+%ld pid %d)", w.l_type,
             (long)w.l_start, (long)w.l_len, w.l_pid);
    close(fd);
}

static const struct variant kVariants[] = {
    {"seccomp_getpid", getpid_setup, getpid_check, NULL},
    {"seccomp_stacked", stacked_setup, stacked_check, NULL},
    {"posix_timers", timers_setup, timers_check, timers_wait},
    {"locks", locks_setup, locks_check, NULL},
};
PROBE_MAIN(kVariants)
