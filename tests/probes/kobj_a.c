/* Probes of the kernel-object fds of issue 11 (state/kobj.h): eventfd,
 * timerfd, signalfd, epoll, O_PATH, directory and pidfd descriptors, and the
 * variants that stay refused. Each checks every bit it set up, through the
 * syscalls and its own fdinfo. */
#include "probe.h"

#include <dirent.h>
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/kcmp.h>
#include <linux/perf_event.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>

static int g_a = -1, g_b = -1, g_c = -1, g_d = -1, g_e = -1;

/* The value after KEY in /proc/self/fdinfo/FD, or "". */
static const char* fdinfo(int fd, const char* key) {
    static char out[256];
    char path[64], buf[8192];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    int f = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = f < 0 ? -1 : read(f, buf, sizeof buf - 1);
    if (f >= 0) close(f);
    out[0] = 0;
    if (n <= 0) return out;
    buf[n] = 0;
    char* p = strstr(buf, key);
    if (!p) return out;
    p += strlen(key);
    while (*p == ' ' || *p == '\t') ++p;
    size_t i = 0;
    while (p[i] && p[i] != '\n' && i + 1 < sizeof out) out[i] = p[i], ++i;
    out[i] = 0;
    return out;
}

static void expect_flags(int fd, int want, const char* what) {
    int fl = fcntl(fd, F_GETFL);
    if ((fl & (O_NONBLOCK | O_PATH)) != want) fail("%s: flags 0%o", what, fl);
}

/* --- eventfd --------------------------------------------------------------- */

static void eventfd_setup(void) {
    g_a = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK);
    g_b = eventfd(0, 0);
    uint64_t big = 0x123456789ull;
    if (g_a < 0 || g_b < 0 || write(g_b, &big, 8) != 8) die("eventfd");
    g_c = dup(g_a); /* one description, two fds */
}

static void eventfd_check(void) {
    uint64_t v = 0;
    expect_flags(g_a, O_NONBLOCK, "semaphore eventfd");
    expect_flags(g_b, 0, "eventfd");
    if (strcmp(fdinfo(g_a, "eventfd-semaphore:"), "1") != 0) fail("EFD_SEMAPHORE lost");
    for (int i = 0; i < 3; ++i)
        if (read(i == 1 ? g_c : g_a, &v, 8) != 8 || v != 1)
            fail("semaphore read %d: %llu", i, (unsigned long long)v);
    if (read(g_a, &v, 8) != -1 || errno != EAGAIN) fail("semaphore count was more than 3");
    if (read(g_b, &v, 8) != 8 || v != 0x123456789ull)
        fail("64-bit count %llx", (unsigned long long)v);
}

/* --- timerfd --------------------------------------------------------------- */

static uint64_t now_ns(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t g_start, g_started, g_far_mono, g_far_real;
static const uint64_t kPeriod = 2000000;       /* 2 ms */
static const uint64_t kKeptNs = 100000;        /* 100 us */
static const uint64_t kSlack = 10000000000ull; /* a deadline taken late by at most 10 s */

static void timerfd_setup(void) {
    /* a: periodic 2 ms (relative), its ticks accumulate */
    g_a = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    g_start = now_ns(CLOCK_MONOTONIC);
    struct itimerspec p = {{0, (long)kPeriod}, {0, (long)kPeriod}};
    if (g_a < 0 || timerfd_settime(g_a, 0, &p, NULL) < 0) die("timerfd a");
    g_started = now_ns(CLOCK_MONOTONIC); /* the kernel's start lies in g_start..g_started */
    /* b: one hour ahead on CLOCK_MONOTONIC, relative, no period */
    g_b = timerfd_create(CLOCK_MONOTONIC, 0);
    struct itimerspec h = {{0, 0}, {3600, 0}};
    g_far_mono = now_ns(CLOCK_MONOTONIC) + 3600000000000ull;
    if (g_b < 0 || timerfd_settime(g_b, 0, &h, NULL) < 0) die("timerfd b");
    /* c: a day ahead on CLOCK_REALTIME, absolute, cancelled when the clock is set, period 1 h */
    g_c = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK);
    g_far_real = now_ns(CLOCK_REALTIME) + 86400000000000ull;
    struct itimerspec d = {
        {3600, 0}, {(time_t)(g_far_real / 1000000000ull), (long)(g_far_real % 1000000000ull)}};
    if (g_c < 0 || timerfd_settime(g_c, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &d, NULL) < 0)
        die("timerfd c");
    /* d: expired once, not read: one tick waits */
    g_d = timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK);
    struct itimerspec once = {{0, 0}, {0, 1}};
    if (g_d < 0 || timerfd_settime(g_d, 0, &once, NULL) < 0) die("timerfd d");
    while (strcmp(fdinfo(g_d, "ticks:"), "1") != 0) {
    }
}

static void timerfd_check(void) {
    uint64_t n = 0, n2 = 0;
    /* Every period that ended since g_start is one tick: none lost, none doubled. A read
       counts the periods up to the kernel's "now" only once the timer's interrupt has run
       for the latest one it owes (after a restore the ticks set by TFD_IOC_SET_TICKS are
       returned alone until then), and on a loaded VM that interrupt can come late. So the
       first read may only be short, never over; the exact count is checked on the total
       at a second read that poll() says the interrupt has made ready. */
    if (read(g_a, &n, 8) != 8 && errno != EAGAIN) fail("periodic timer: %s", strerror(errno));
    uint64_t after = now_ns(CLOCK_MONOTONIC);
    if (n > (after - g_start) / kPeriod)
        fail("periodic timer: %llu ticks, more than the %llu periods that ended",
             (unsigned long long)n, (unsigned long long)((after - g_start) / kPeriod));
    struct pollfd pfd = {.fd = g_a, .events = POLLIN};
    if (poll(&pfd, 1, 10000) != 1) fail("periodic timer: no tick within 10 s");
    uint64_t before = now_ns(CLOCK_MONOTONIC);
    if (read(g_a, &n2, 8) != 8) fail("periodic timer: %s after poll", strerror(errno));
    after = now_ns(CLOCK_MONOTONIC);
    n += n2;
    /* The phase is the kernel's start (g_start..g_started), kept across a restore to
       within kKeptNs (state/timerfd.cc: 50 us at checkpoint and again at restore). */
    uint64_t lo = (before - g_started - kKeptNs) / kPeriod, hi = (after - g_start) / kPeriod;
    if (n < lo || n > hi)
        fail("periodic timer: %llu ticks, expected %llu..%llu", (unsigned long long)n,
             (unsigned long long)lo, (unsigned long long)hi);
    expect_flags(g_a, O_NONBLOCK, "timerfd a");
    if (strcmp(fdinfo(g_a, "clockid:"), "1") != 0)
        fail("timerfd a: clock %s", fdinfo(g_a, "clockid:"));

    struct itimerspec cur;
    timerfd_gettime(g_b, &cur);
    uint64_t left = (uint64_t)cur.it_value.tv_sec * 1000000000ull + (uint64_t)cur.it_value.tv_nsec;
    uint64_t due = now_ns(CLOCK_MONOTONIC) + left;
    if (!left || due < g_far_mono || due > g_far_mono + kSlack || cur.it_interval.tv_sec ||
        cur.it_interval.tv_nsec)
        fail("timerfd b: due %lld ns from its deadline", (long long)(due - g_far_mono));
    expect_flags(g_b, 0, "timerfd b");
    if (strcmp(fdinfo(g_b, "settime flags:"), "00") != 0)
        fail("timerfd b: settime flags %s", fdinfo(g_b, "settime flags:"));

    timerfd_gettime(g_c, &cur);
    left = (uint64_t)cur.it_value.tv_sec * 1000000000ull + (uint64_t)cur.it_value.tv_nsec;
    due = now_ns(CLOCK_REALTIME) + left;
    if (due + kSlack < g_far_real || due > g_far_real + kSlack || cur.it_interval.tv_sec != 3600)
        fail("timerfd c: due %lld ns from its date", (long long)(due - g_far_real));
    if (strcmp(fdinfo(g_c, "settime flags:"), "03") != 0)
        fail("timerfd c: settime flags %s", fdinfo(g_c, "settime flags:"));
    if (strcmp(fdinfo(g_c, "clockid:"), "0") != 0) fail("timerfd c: clock");

    if (read(g_d, &n, 8) != 8 || n != 1) fail("expired timer: %llu ticks", (unsigned long long)n);
    if (read(g_d, &n, 8) != -1 || errno != EAGAIN) fail("expired timer fired again");
    if (strcmp(fdinfo(g_d, "clockid:"), "7") != 0) fail("timerfd d: clock");
}

/* --- signalfd -------------------------------------------------------------- */

static void signalfd_setup(void) {
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR1);
    sigaddset(&m, SIGRTMIN + 3);
    sigprocmask(SIG_BLOCK, &m, NULL);
    g_a = signalfd(-1, &m, SFD_NONBLOCK);
    if (g_a < 0) die("signalfd");
    kill(getpid(), SIGUSR1);
}

static void signalfd_check(void) {
    char want[32];
    snprintf(want, sizeof want, "%016llx", (1ull << (SIGUSR1 - 1)) | (1ull << (SIGRTMIN + 3 - 1)));
    if (strcmp(fdinfo(g_a, "sigmask:"), want) != 0)
        fail("sigmask %s, wanted %s", fdinfo(g_a, "sigmask:"), want);
    expect_flags(g_a, O_NONBLOCK, "signalfd");
    struct signalfd_siginfo si;
    if (read(g_a, &si, sizeof si) != sizeof si || si.ssi_signo != SIGUSR1)
        fail("pending SIGUSR1 not read");
    if (read(g_a, &si, sizeof si) != -1 || errno != EAGAIN) fail("a second signal");
}

/* --- epoll ----------------------------------------------------------------- */

struct watch {
    int fd;
    uint32_t events;
    uint64_t data;
};
static struct watch g_w[3];

static void epoll_setup(void) {
    g_a = eventfd(1, EFD_NONBLOCK);
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR2);
    sigprocmask(SIG_BLOCK, &m, NULL);
    g_b = signalfd(-1, &m, SFD_NONBLOCK);
    g_c = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    g_d = epoll_create1(EPOLL_CLOEXEC);
    g_e = epoll_create1(0); /* nested: watches g_d */
    if (g_a < 0 || g_b < 0 || g_c < 0 || g_d < 0 || g_e < 0) die("epoll setup");
    struct watch w[3] = {{g_a, EPOLLIN | EPOLLET, 0x1122334455667788ull},
                         {g_b, EPOLLIN | EPOLLRDHUP, 7},
                         {g_c, EPOLLIN | EPOLLONESHOT, 0xffffffffffffffffull}};
    memcpy(g_w, w, sizeof w);
    for (int i = 0; i < 3; ++i) {
        struct epoll_event ev = {g_w[i].events, {.u64 = g_w[i].data}};
        if (epoll_ctl(g_d, EPOLL_CTL_ADD, g_w[i].fd, &ev) < 0) die("epoll_ctl");
    }
    struct epoll_event ev = {EPOLLIN, {.u64 = 42}};
    if (epoll_ctl(g_e, EPOLL_CTL_ADD, g_d, &ev) < 0) die("epoll_ctl nested");
}

static void epoll_check(void) {
    char want[128], path[64], buf[8192];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", g_d);
    int f = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = read(f, buf, sizeof buf - 1);
    close(f);
    buf[n > 0 ? n : 0] = 0;
    for (int i = 0; i < 3; ++i) {
        snprintf(want, sizeof want, "tfd: %8d events: %8x data: %16llx", g_w[i].fd,
                 g_w[i].events | EPOLLERR | EPOLLHUP, (unsigned long long)g_w[i].data);
        if (!strstr(buf, want)) fail("no watch \"%s\" in %s", want, buf);
    }
    if (fcntl(g_d, F_GETFD) != FD_CLOEXEC || fcntl(g_e, F_GETFD) != 0) fail("close-on-exec flags");
    struct epoll_event ev[4];
    if (epoll_wait(g_e, ev, 4, 0) != 1 || ev[0].data.u64 != 42) fail("nested epoll not ready");
    int k = epoll_wait(g_d, ev, 4, 0);
    if (k != 1 || ev[0].data.u64 != 0x1122334455667788ull)
        fail("eventfd not the one ready (%d)", k);
    kill(getpid(), SIGUSR2);
    k = epoll_wait(g_d, ev, 4, 0);
    if (k != 1 || ev[0].data.u64 != 7) fail("signalfd not ready after SIGUSR2 (%d)", k);
    struct itimerspec t = {{0, 0}, {0, 1}};
    timerfd_settime(g_c, 0, &t, NULL);
    k = epoll_wait(g_d, ev, 4, 1000);
    if (k < 1) fail("oneshot timer watch did not fire");
}

static void epoll_closed_setup(void) {
    g_a = eventfd(0, 0);
    g_d = epoll_create1(0);
    struct epoll_event ev = {EPOLLIN, {.u64 = 1}};
    if (g_a != 3 || epoll_ctl(g_d, EPOLL_CTL_ADD, g_a, &ev) < 0) die("epoll_closed");
    g_b = dup(g_a);
    close(g_a);
}
static void epoll_closed_check(void) {
    struct epoll_event ev;
    uint64_t one = 1;
    if (write(g_b, &one, 8) != 8 || epoll_wait(g_d, &ev, 1, 0) != 1) fail("watch gone");
}

static void epoll_fired_setup(void) {
    g_a = eventfd(1, 0);
    g_d = epoll_create1(0);
    struct epoll_event ev = {EPOLLIN | EPOLLONESHOT, {.u64 = 1}};
    if (epoll_ctl(g_d, EPOLL_CTL_ADD, g_a, &ev) < 0 || epoll_wait(g_d, &ev, 1, 0) != 1)
        die("epoll_fired");
}

static void epoll_refused_setup(void) {
    g_a = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
    g_d = epoll_create1(0);
    struct epoll_event ev = {EPOLLIN, {.u64 = 1}};
    if (g_a != 3 || epoll_ctl(g_d, EPOLL_CTL_ADD, g_a, &ev) < 0) die("epoll_refused");
}

static void check_nothing(void) {}

/* --- O_PATH, directories, pidfd -------------------------------------------- */

static struct stat g_sa, g_sb, g_sc;

static void opath_setup(void) {
    if (symlink("/etc/hostname", at("link")) < 0) die("symlink");
    g_a = open("/etc", O_PATH);
    g_b = open(at("link"), O_PATH | O_NOFOLLOW);
    /* A file of its own: /etc/passwd is replaced whenever a test adds a user. */
    close(open(at("file"), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
    g_c = open(at("file"), O_PATH);
    if (g_a < 0 || g_b < 0 || g_c < 0) die("O_PATH");
    stat("/etc", &g_sa);
    lstat(at("link"), &g_sb);
    stat(at("file"), &g_sc);
}

static void same_file(int fd, const struct stat* want, const char* what) {
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_dev != want->st_dev || st.st_ino != want->st_ino ||
        (st.st_mode & S_IFMT) != (want->st_mode & S_IFMT))
        fail("%s: another file", what);
}

static void opath_check(void) {
    same_file(g_a, &g_sa, "O_PATH /etc");
    same_file(g_b, &g_sb, "O_PATH symlink");
    same_file(g_c, &g_sc, "O_PATH file");
    expect_flags(g_a, O_PATH, "O_PATH /etc");
    expect_flags(g_b, O_PATH, "O_PATH symlink");
    char buf[8];
    if (read(g_c, buf, 1) != -1 || errno != EBADF) fail("O_PATH fd reads");
    int f = openat(g_a, "hostname", O_RDONLY | O_CLOEXEC);
    if (f < 0)
        fail("openat through O_PATH /etc: %s", strerror(errno));
    else
        close(f);
}

static void opath_deleted_setup(void) {
    int f = open(at("gone"), O_CREAT | O_WRONLY, 0600);
    close(f);
    g_a = open(at("gone"), O_PATH);
    if (g_a != 3) die("O_PATH gone");
    unlink(at("gone"));
}

#define NFILES 40
static DIR* g_dirp;
static char g_seen[NFILES + 2];
static off_t g_pos;

static void dir_setup(void) {
    if (mkdir(at("d"), 0700) < 0) die("mkdir");
    for (int i = 0; i < NFILES; ++i) {
        char name[32];
        snprintf(name, sizeof name, "d/f%02d", i);
        int f = open(at(name), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        if (f < 0) die("create");
        close(f);
    }
    g_dirp = opendir(at("d"));
    if (!g_dirp) die("opendir");
    /* Half through: the rest is read after restore, from the saved offset. */
    for (int i = 0; i < NFILES / 2 + 2;) {
        struct dirent* e = readdir(g_dirp);
        if (!e) die("readdir");
        ++i;
        int k;
        if (sscanf(e->d_name, "f%d", &k) == 1) g_seen[k]++;
    }
    g_pos = lseek(dirfd(g_dirp), 0, SEEK_CUR);
}

static void dir_check(void) {
    if (lseek(dirfd(g_dirp), 0, SEEK_CUR) != g_pos)
        fail("directory offset %lld, was %lld", (long long)lseek(dirfd(g_dirp), 0, SEEK_CUR),
             (long long)g_pos);
    struct dirent* e;
    while ((e = readdir(g_dirp)) != NULL) {
        int k;
        if (sscanf(e->d_name, "f%d", &k) == 1 && k >= 0 && k < NFILES) g_seen[k]++;
    }
    for (int i = 0; i < NFILES; ++i)
        if (g_seen[i] != 1) fail("f%02d seen %d times", i, g_seen[i]);
    struct stat st;
    if (fstat(dirfd(g_dirp), &st) < 0 || !S_ISDIR(st.st_mode)) fail("not a directory");
    expect_flags(dirfd(g_dirp), O_NONBLOCK, "directory"); /* glibc opendir */
}

/* deldir: a removed directory held open (state/dir_deleted.cc): made again,
 * empty, in its old directory, removed; mode, owner, mtime, flags, offset and
 * the dup kept, and it refuses new entries as before. */
static struct stat g_dst;
static int g_dflags;
static off_t g_dpos;
static char g_dlink[1200];

static void link_of(int fd, char* out, size_t n) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t r = readlink(path, out, n - 1);
    out[r < 0 ? 0 : r] = 0;
}

static void dir_deleted_setup(void) {
    if (mkdir(at("gone"), 0700) < 0 || chmod(at("gone"), 02751) < 0) die("mkdir gone");
    struct timespec t[2] = {{1000000000, 0}, {1234567890, 123456789}};
    g_a = open(at("gone"), O_RDONLY | O_DIRECTORY | O_NONBLOCK);
    if (g_a != 3) die("open gone");
    char buf[4096];
    while (syscall(SYS_getdents64, g_a, buf, sizeof buf) > 0) {
    } /* at its end: the offset is the file system's end cookie */
    g_c = dup(g_a);
    if (rmdir(at("gone")) < 0 || futimens(g_a, t) < 0) die("rmdir gone");
    if (fstat(g_a, &g_dst) < 0) die("fstat");
    g_dflags = fcntl(g_a, F_GETFL);
    g_dpos = lseek(g_a, 0, SEEK_CUR);
    link_of(g_a, g_dlink, sizeof g_dlink);
}

static void dir_deleted_check(void) {
    struct stat st, dup_st;
    if (fstat(g_a, &st) < 0 || fstat(g_c, &dup_st) < 0) fail("fstat: %s", strerror(errno));
    if (!S_ISDIR(st.st_mode) || st.st_nlink != 0)
        fail("mode 0%o nlink %lu", st.st_mode, (unsigned long)st.st_nlink);
    if (st.st_mode != g_dst.st_mode || st.st_uid != g_dst.st_uid || st.st_gid != g_dst.st_gid)
        fail("mode 0%o owner %u:%u, was 0%o %u:%u", st.st_mode, st.st_uid, st.st_gid, g_dst.st_mode,
             g_dst.st_uid, g_dst.st_gid);
    if (st.st_mtim.tv_sec != g_dst.st_mtim.tv_sec || st.st_mtim.tv_nsec != g_dst.st_mtim.tv_nsec)
        fail("mtime %lld.%09ld", (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    if (dup_st.st_ino != st.st_ino) fail("the dup is of another inode");
    if (fcntl(g_a, F_GETFL) != g_dflags) fail("flags 0%o, were 0%o", fcntl(g_a, F_GETFL), g_dflags);
    if (lseek(g_c, 0, SEEK_CUR) != g_dpos)
        fail("offset %lld, was %lld", (long long)lseek(g_c, 0, SEEK_CUR), (long long)g_dpos);
    char link[1200];
    link_of(g_a, link, sizeof link);
    if (strcmp(link, g_dlink) != 0) fail("link %s, was %s", link, g_dlink);
    if (openat(g_a, "x", O_CREAT | O_WRONLY | O_CLOEXEC, 0600) >= 0 || errno != ENOENT)
        fail("openat(O_CREAT) in it: %s", strerror(errno));
    if (mkdirat(g_a, "y", 0700) == 0 || errno != ENOENT) fail("mkdirat in it: %s", strerror(errno));
    char buf[4096];
    if (syscall(SYS_getdents64, g_a, buf, sizeof buf) != -1 || errno != ENOENT)
        fail("getdents: %s", strerror(errno));
}

/* Owned by another user than the task's: the new one would be the writer's. */
static void dir_deleted_owner_setup(void) {
    if (mkdir(at("gone"), 0700) < 0 || chown(at("gone"), 65534, 65534) < 0) die("mkdir gone");
    g_a = open(at("gone"), O_RDONLY | O_DIRECTORY);
    if (g_a != 3 || rmdir(at("gone")) < 0) die("open gone");
}

/* Two open file descriptions of it in one task (deltwice, state/file_reopen.cc):
 * one directory again, each description with its own flags, the second's dup
 * one description with it. */
static int g_dflags2;

static void dir_deleted_twice_setup(void) {
    if (mkdir(at("gone"), 0700) < 0) die("mkdir gone");
    g_a = open(at("gone"), O_RDONLY | O_DIRECTORY);
    g_b = open(at("gone"), O_RDONLY | O_DIRECTORY | O_NONBLOCK);
    g_c = dup(g_b);
    if (g_a != 3 || g_b != 4 || rmdir(at("gone")) < 0) die("open gone");
    g_dflags = fcntl(g_a, F_GETFL);
    g_dflags2 = fcntl(g_b, F_GETFL);
}

static int one_description(int a, int b) {
    return syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, a, b) == 0;
}

static void dir_deleted_twice_check(void) {
    struct stat a, b;
    if (fstat(g_a, &a) < 0 || fstat(g_b, &b) < 0) fail("fstat: %s", strerror(errno));
    if (a.st_ino != b.st_ino || a.st_dev != b.st_dev || !S_ISDIR(a.st_mode) || a.st_nlink != 0)
        fail("fds 3 and 4: inodes %lu and %lu, nlink %lu", (unsigned long)a.st_ino,
             (unsigned long)b.st_ino, (unsigned long)a.st_nlink);
    if (one_description(g_a, g_b)) fail("fds 3 and 4 are one description");
    if (!one_description(g_b, g_c)) fail("fd %d, a dup of fd 4, is another description", g_c);
    if (fcntl(g_a, F_GETFL) != g_dflags || fcntl(g_b, F_GETFL) != g_dflags2)
        fail("flags 0%o 0%o, were 0%o 0%o", fcntl(g_a, F_GETFL), fcntl(g_b, F_GETFL), g_dflags,
             g_dflags2);
    /* A change through one shows through the other: one inode. */
    if (fchmod(g_a, 0750) < 0 || fstat(g_b, &b) < 0 || (b.st_mode & 07777) != 0750)
        fail("a chmod through fd 3 does not show through fd 4");
    char buf[4096];
    if (syscall(SYS_getdents64, g_b, buf, sizeof buf) != -1 || errno != ENOENT)
        fail("getdents of fd 4: %s", strerror(errno));
}

/* The second read before the rmdir (to its end, or `partial`: one entry):
 * opened and seeked before the restore's rmdir, next to the first's own open
 * (state/dir_deleted.cc), its offset (a getdents cookie: an ext4 hash, a
 * tmpfs index) the same, and getdents ENOENT as before. `nofollow`: the
 * second opened O_NOFOLLOW (one entry read), which that open by the
 * directory's name takes (fdshare; a reason before). */
static off_t g_dpos;
static void read_twice(int partial, int flags) {
    if (mkdir(at("gone"), 0700) < 0) die("mkdir gone");
    g_a = open(at("gone"), O_RDONLY | O_DIRECTORY);
    g_b = open(at("gone"), O_RDONLY | O_DIRECTORY | flags);
    g_dflags2 = fcntl(g_b, F_GETFL);
    char buf[4096];
    /* 24 bytes: room for "." only */
    while (syscall(SYS_getdents64, g_b, buf, partial ? 24 : sizeof buf) > 0 && !partial) {
    }
    g_dpos = lseek(g_b, 0, SEEK_CUR);
    if (g_a != 3 || g_b != 4 || g_dpos <= 0 || rmdir(at("gone")) < 0) die("open gone");
}
static void dir_deleted_twice_read_setup(void) {
    read_twice(0, 0);
}
static void dir_deleted_twice_partial_setup(void) {
    read_twice(1, 0);
}
static void dir_deleted_twice_nofollow_setup(void) {
    read_twice(1, O_NOFOLLOW);
}
static void dir_deleted_twice_read_check(void) {
    struct stat a, b;
    if (fstat(g_a, &a) < 0 || fstat(g_b, &b) < 0 || a.st_ino != b.st_ino || a.st_nlink != 0)
        fail("fds 3 and 4 are not one removed directory");
    if (one_description(g_a, g_b)) fail("fds 3 and 4 are one description");
    if (fcntl(g_b, F_GETFL) != g_dflags2)
        fail("fd 4's flags 0%o, were 0%o", fcntl(g_b, F_GETFL), g_dflags2);
    if (lseek(g_a, 0, SEEK_CUR) != 0 || lseek(g_b, 0, SEEK_CUR) != g_dpos)
        fail("offsets %lld and %lld, were 0 and %lld", (long long)lseek(g_a, 0, SEEK_CUR),
             (long long)lseek(g_b, 0, SEEK_CUR), (long long)g_dpos);
    char buf[4096];
    if (syscall(SYS_getdents64, g_b, buf, sizeof buf) != -1 || errno != ENOENT)
        fail("getdents of fd 4: %s", strerror(errno));
}

static void pidfd_setup(void) {
    g_a = (int)syscall(SYS_pidfd_open, getpid(), O_NONBLOCK);
    if (g_a < 0) die("pidfd_open");
}

static void pidfd_check(void) {
    char want[32];
    snprintf(want, sizeof want, "%d", getpid());
    if (strcmp(fdinfo(g_a, "Pid:"), want) != 0)
        fail("pidfd of %s, not of itself (%s)", fdinfo(g_a, "Pid:"), want);
    if (syscall(SYS_pidfd_send_signal, g_a, 0, NULL, 0) < 0)
        fail("pidfd_send_signal: %s", strerror(errno));
    expect_flags(g_a, O_NONBLOCK, "pidfd");
}

static void pidfd_other_setup(void) {
    g_a = (int)syscall(SYS_pidfd_open, 1, 0);
    if (g_a != 3) die("pidfd_open 1");
}

/* As `tail -f`: a watch on the file it has open and one on its directory. */
static char g_wd_lines[2][256];

static void inotify_setup(void) {
    if (mkdir(at("w"), 0700) < 0) die("mkdir w");
    g_b = open(at("w/log"), O_CREAT | O_RDONLY | O_CLOEXEC, 0600);
    g_a = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (g_a < 0 || g_b < 0 || inotify_add_watch(g_a, at("w/log"), IN_OPEN | IN_EXCL_UNLINK) != 1 ||
        inotify_add_watch(g_a, at("w"), IN_CREATE | IN_DELETE) != 2)
        die("inotify");
    for (int i = 0; i < 2; ++i) {
        char key[32];
        snprintf(key, sizeof key, "inotify wd:%x ", i + 1);
        snprintf(g_wd_lines[i], sizeof g_wd_lines[i], "%s", fdinfo(g_a, key));
        char* f = strstr(g_wd_lines[i], " fhandle"); /* ino, sdev, mask: the rest may differ */
        if (f) *f = 0;
    }
}

static void inotify_check(void) {
    for (int i = 0; i < 2; ++i) {
        char key[32];
        snprintf(key, sizeof key, "inotify wd:%x ", i + 1);
        if (!strstr(fdinfo(g_a, key), g_wd_lines[i]))
            fail("watch %d: %s, was %s", i + 1, fdinfo(g_a, key), g_wd_lines[i]);
    }
    expect_flags(g_a, O_NONBLOCK, "inotify");
    char buf[4096];
    if (read(g_a, buf, sizeof buf) != -1 || errno != EAGAIN) fail("events before any change");
    /* Opened, not written: the held file's fingerprint stays for the next restore. */
    close(open(at("w/log"), O_RDONLY | O_CLOEXEC));
    close(open(at("w/new"), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
    ssize_t n = read(g_a, buf, sizeof buf);
    int modify = 0, create = 0;
    for (ssize_t off = 0; off + (ssize_t)sizeof(struct inotify_event) <= n;) {
        struct inotify_event* e = (struct inotify_event*)(buf + off);
        if (e->wd == 1 && (e->mask & IN_OPEN)) ++modify;
        if (e->wd == 2 && (e->mask & IN_CREATE) && e->len && !strcmp(e->name, "new")) ++create;
        off += (ssize_t)sizeof *e + e->len;
    }
    if (modify != 1 || create != 1)
        fail("events: %d modify, %d create (read %zd bytes)", modify, create, n);
    unlink(at("w/new"));
}

static void inotify_far_setup(void) {
    g_a = inotify_init1(0);
    if (g_a != 3 || inotify_add_watch(g_a, "/usr/share", IN_CREATE) != 1) die("inotify far");
}

static void inotify_queued_setup(void) {
    g_a = inotify_init1(0);
    if (g_a != 3 || inotify_add_watch(g_a, g_dir, IN_CREATE) != 1) die("inotify queued");
    close(open(at("x"), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
}

static void inotify_gap_setup(void) {
    g_a = inotify_init1(0);
    if (g_a != 3 || inotify_add_watch(g_a, "/", IN_CREATE) != 1 ||
        inotify_add_watch(g_a, g_dir, IN_CREATE) != 2 || inotify_rm_watch(g_a, 1) < 0)
        die("inotify gap");
    char buf[256];
    if (read(g_a, buf, sizeof buf) <= 0) die("IN_IGNORED"); /* the removal's event */
}

static void userfaultfd_setup(void) {
    g_a = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
    if (g_a != 3) die("userfaultfd");
}

/* Kinds that stay refused, each by its name (deny by default). */
static void io_uring_setup_(void) {
    struct io_uring_params pr;
    memset(&pr, 0, sizeof pr);
    if ((g_a = (int)syscall(SYS_io_uring_setup, 4, &pr)) != 3) die("io_uring_setup");
}
static void perf_setup(void) {
    struct perf_event_attr a;
    memset(&a, 0, sizeof a);
    a.type = PERF_TYPE_SOFTWARE, a.size = sizeof a, a.config = PERF_COUNT_SW_TASK_CLOCK;
    if ((g_a = (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, 0)) != 3) die("perf_event_open");
}
static void fanotify_setup(void) {
    if ((g_a = fanotify_init(0, O_RDONLY)) != 3) die("fanotify_init");
}
static void bpf_map_setup(void) {
    union bpf_attr b;
    memset(&b, 0, sizeof b);
    b.map_type = BPF_MAP_TYPE_ARRAY, b.key_size = 4, b.value_size = 4, b.max_entries = 1;
    if ((g_a = (int)syscall(SYS_bpf, BPF_MAP_CREATE, &b, sizeof b)) != 3) die("bpf map");
}

static const struct variant kVariants[] = {
    {"eventfd", eventfd_setup, eventfd_check, NULL},
    {"timerfd", timerfd_setup, timerfd_check, NULL},
    {"signalfd", signalfd_setup, signalfd_check, NULL},
    {"epoll", epoll_setup, epoll_check, NULL},
    {"epoll_closed", epoll_closed_setup, epoll_closed_check, NULL},
    {"epoll_fired", epoll_fired_setup, check_nothing, NULL},
    {"epoll_refused", epoll_refused_setup, check_nothing, NULL},
    {"opath", opath_setup, opath_check, NULL},
    {"opath_deleted", opath_deleted_setup, check_nothing, NULL},
    {"dir", dir_setup, dir_check, NULL},
    {"dir_deleted", dir_deleted_setup, dir_deleted_check, NULL},
    {"dir_deleted_owner", dir_deleted_owner_setup, check_nothing, NULL},
    {"dir_deleted_twice", dir_deleted_twice_setup, dir_deleted_twice_check, NULL},
    {"dir_deleted_twice_read", dir_deleted_twice_read_setup, dir_deleted_twice_read_check, NULL},
    {"dir_deleted_twice_nofollow", dir_deleted_twice_nofollow_setup, dir_deleted_twice_read_check,
     NULL},
    {"dir_deleted_twice_partial", dir_deleted_twice_partial_setup, dir_deleted_twice_read_check,
     NULL},
    {"pidfd", pidfd_setup, pidfd_check, NULL},
    {"pidfd_other", pidfd_other_setup, check_nothing, NULL},
    {"inotify", inotify_setup, inotify_check, NULL},
    {"inotify_far", inotify_far_setup, check_nothing, NULL},
    {"inotify_queued", inotify_queued_setup, check_nothing, NULL},
    {"inotify_gap", inotify_gap_setup, check_nothing, NULL},
    {"userfaultfd", userfaultfd_setup, check_nothing, NULL},
    {"io_uring", io_uring_setup_, check_nothing, NULL},
    {"perf_event", perf_setup, check_nothing, NULL},
    {"fanotify", fanotify_setup, check_nothing, NULL},
    {"bpf_map", bpf_map_setup, check_nothing, NULL},
};

PROBE_MAIN(kVariants)
