/* Kernel-object probes of issue 11 (pipes): a pipe with bytes in flight, its
 * size and flags; a packet-mode pipe; a full pipe; a pipe reached through a
 * second description. Refused: half-open pipes, pipes shared with another
 * process, O_ASYNC ends. */
#include "probe.h" /* first: it defines _GNU_SOURCE */

#include <linux/kcmp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

static int g_p[2] = {-1, -1};
static int g_dup = -1, g_reopen = -1;
static char g_full[1 << 16];
static size_t g_full_len;

static void pipe_or_die(int flags) {
    if (pipe2(g_p, flags) != 0) die("pipe2");
}

static void put(int fd, const char* s) {
    if (write(fd, s, strlen(s)) != (ssize_t)strlen(s)) die("write");
}

static void check_flags(int fd, int want, const char* what) {
    int fl = fcntl(fd, F_GETFL) & (O_ACCMODE | O_NONBLOCK | O_DIRECT);
    if (fl != want) fail("%s: flags 0%o, want 0%o", what, fl, want);
}

/* Reads exactly `want` from the nonblocking read end, then expects EAGAIN. */
static void expect_bytes(int fd, const char* want, size_t n, const char* what) {
    static char buf[1 << 17];
    size_t got = 0;
    for (;;) {
        ssize_t k = read(fd, buf + got, sizeof buf - got);
        if (k <= 0) {
            if (k < 0 && errno != EAGAIN) fail("%s: read: %s", what, strerror(errno));
            break;
        }
        got += (size_t)k;
    }
    if (got != n || memcmp(buf, want, n) != 0)
        fail("%s: %zu bytes read back, want %zu ('%.20s')", what, got, n, buf);
}

/* pipe_data: bytes in flight, an 8 KiB pipe, a nonblocking read end, the write
 * end dup'd (one description) and reopened through /proc (a second one). */
static void data_setup(void) {
    pipe_or_die(O_NONBLOCK);
    fcntl(g_p[1], F_SETFL, 0);
    if (fcntl(g_p[0], F_SETPIPE_SZ, 8192) != 8192) die("F_SETPIPE_SZ");
    put(g_p[1], "hello, ");
    put(g_p[1], "pipe");
    g_dup = dup(g_p[1]);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", g_p[1]);
    g_reopen = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (g_dup < 0 || g_reopen < 0) die("dup/reopen");
    put(g_reopen, "!");
}
static void data_check(void) {
    pid_t me = getpid();
    if (fcntl(g_p[0], F_GETPIPE_SZ) != 8192)
        fail("pipe size %d, want 8192", fcntl(g_p[0], F_GETPIPE_SZ));
    check_flags(g_p[0], O_RDONLY | O_NONBLOCK, "read end");
    check_flags(g_p[1], O_WRONLY, "write end");
    check_flags(g_reopen, O_WRONLY | O_NONBLOCK, "reopened write end");
    if (!(fcntl(g_reopen, F_GETFD) & FD_CLOEXEC)) fail("reopened end lost close-on-exec");
    if (syscall(SYS_kcmp, me, me, KCMP_FILE, g_p[1], g_dup) != 0) fail("dup is no longer shared");
    if (syscall(SYS_kcmp, me, me, KCMP_FILE, g_p[1], g_reopen) == 0)
        fail("reopened end shares the write end's description");
    expect_bytes(g_p[0], "hello, pipe!", 12, "buffered bytes");
    put(g_dup, "more");
    expect_bytes(g_p[0], "more", 4, "a write after restore");
    close(g_p[1]);
    close(g_dup);
    close(g_reopen);
    char c;
    if (read(g_p[0], &c, 1) != 0) fail("no EOF once every write end is closed");
}

/* pipe_packet: O_DIRECT, three packets kept apart. */
static void packet_setup(void) {
    pipe_or_die(O_DIRECT);
    put(g_p[1], "one");
    put(g_p[1], "three");
    put(g_p[1], "five5");
}
static void packet_check(void) {
    const char* want[] = {"one", "three", "five5"};
    check_flags(g_p[0], O_RDONLY, "read end");
    check_flags(g_p[1], O_WRONLY | O_DIRECT, "write end");
    fcntl(g_p[0], F_SETFL, O_DIRECT | O_NONBLOCK);
    for (int i = 0; i < 3; ++i) {
        char buf[64] = {0};
        ssize_t n = read(g_p[0], buf, sizeof buf);
        if (n != (ssize_t)strlen(want[i]) || memcmp(buf, want[i], (size_t)n) != 0)
            fail("packet %d: '%s' (%zd bytes), want '%s'", i, buf, n, want[i]);
    }
}

/* pipe_full: filled until EAGAIN with odd-sized writes: as full after restore. */
static void full_setup(void) {
    pipe_or_die(O_NONBLOCK);
    for (size_t i = 0; i < sizeof g_full; ++i) g_full[i] = (char)('a' + i % 23);
    for (;;) {
        ssize_t n = write(g_p[1], g_full + g_full_len, 1000);
        if (n < 0) break;
        g_full_len += (size_t)n;
    }
    while (write(g_p[1], g_full + g_full_len, 1) == 1) ++g_full_len;
}
static void full_check(void) {
    if (write(g_p[1], "x", 1) != -1 || errno != EAGAIN) fail("the full pipe took one more byte");
    expect_bytes(g_p[0], g_full, g_full_len, "full pipe");
}

/* Refused: only the read end. */
static void half_setup(void) {
    pipe_or_die(0);
    put(g_p[1], "x");
    close(g_p[1]);
}
static void half_check(void) {
    char c;
    if (read(g_p[0], &c, 1) != 1 || c != 'x') fail("the byte is gone");
}

/* Refused: a child holds both ends too. */
static void shared_setup(void) {
    pipe_or_die(0);
    put(g_p[1], "x");
    pid_t c = fork();
    if (c < 0) die("fork");
    if (c == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (;;) pause();
    }
}
static void shared_check(void) {
    char c;
    if (read(g_p[0], &c, 1) != 1 || c != 'x') fail("the byte is gone");
}

/* Refused: O_ASYNC (owner and signal not saved). */
static void async_setup(void) {
    pipe_or_die(0);
    fcntl(g_p[0], F_SETFL, O_ASYNC);
}
static void async_check(void) {
    if (!(fcntl(g_p[0], F_GETFL) & O_ASYNC)) fail("O_ASYNC is gone");
}

static const struct variant kVariants[] = {
    {"pipe_data", data_setup, data_check, NULL},
    {"pipe_packet", packet_setup, packet_check, NULL},
    {"pipe_full", full_setup, full_check, NULL},
    {"pipe_half", half_setup, half_check, NULL},
    {"pipe_shared", shared_setup, shared_check, NULL},
    {"pipe_async", async_setup, async_check, NULL},
};
PROBE_MAIN(kVariants)
