/* Kernel-object probes of issue 11 (pipes, FIFOs): a pipe with bytes in flight, its
 * size and flags; a packet-mode pipe; a full pipe; a pipe reached through a
 * second description. Unix socketpairs (stream, datagram, seqpacket) with
 * queues in both directions, shutdown, SO_PASSCRED, buffer sizes and
 * timeouts. Refused: half-open pipes, pipes shared with another process,
 * O_ASYNC ends; fds in flight, bound, listening and half-closed sockets,
 * SO_PEEK_OFF. */
#include "probe.h" /* first: it defines _GNU_SOURCE */

#include <linux/kcmp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>

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

/* Only the read end, the write end closed by every process (make's stdin for
 * its jobs): the byte, then EOF. */
static void half_setup(void) {
    pipe_or_die(0);
    put(g_p[1], "x");
    close(g_p[1]);
}
static void half_check(void) {
    char c;
    if (read(g_p[0], &c, 1) != 1 || c != 'x') fail("the byte is gone");
    if (read(g_p[0], &c, 1) != 0) fail("no EOF: the pipe has a writer");
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

/* --- FIFOs: reopened by path -------------------------------------------- */
static int g_rw = -1;
static struct stat g_fifo_st;

static void fifo_make(void) {
    if (mkfifo(at("fifo"), 0600) != 0 || stat(at("fifo"), &g_fifo_st) != 0) die("mkfifo");
    g_p[0] = open(at("fifo"), O_RDONLY | O_NONBLOCK);
}
static void fifo_setup(void) {
    fifo_make();
    g_p[1] = open(at("fifo"), O_WRONLY);
    g_rw = open(at("fifo"), O_RDWR | O_CLOEXEC);
    if (g_p[0] < 0 || g_p[1] < 0 || g_rw < 0) die("open fifo");
    put(g_p[1], "through ");
    put(g_rw, "the fifo");
}
static void fifo_check(void) {
    struct stat st;
    if (fstat(g_p[0], &st) != 0 || st.st_ino != g_fifo_st.st_ino || st.st_dev != g_fifo_st.st_dev)
        fail("the read end is not the FIFO at its path");
    check_flags(g_p[0], O_RDONLY | O_NONBLOCK, "read end");
    check_flags(g_p[1], O_WRONLY, "write end");
    check_flags(g_rw, O_RDWR, "read-write end");
    if (!(fcntl(g_rw, F_GETFD) & FD_CLOEXEC)) fail("read-write end lost close-on-exec");
    expect_bytes(g_p[0], "through the fifo", 16, "buffered bytes");
    put(g_rw, "more");
    expect_bytes(g_p[0], "more", 4, "a write after restore");
}
static void fifo_half_setup(void) {
    fifo_make();
    if (g_p[0] < 0) die("open fifo");
}
static void fifo_deleted_setup(void) {
    fifo_setup();
    if (unlink(at("fifo")) != 0) die("unlink");
}
static void fifo_open_check(void) {
    if (fcntl(g_p[0], F_GETFD) < 0) fail("FIFO closed");
}

/* --- unix socketpairs ---------------------------------------------------- */
static int g_sv[2] = {-1, -1};

static void pair_or_die(int type) {
    if (socketpair(AF_UNIX, type, 0, g_sv) != 0) die("socketpair");
}
static int get_opt(int fd, int opt) {
    int v = -2;
    socklen_t len = sizeof v;
    getsockopt(fd, SOL_SOCKET, opt, &v, &len);
    return v;
}
/* One recv, nonblocking: the message (or chunk) must be `want`. */
static void expect_msg(int fd, const char* want, size_t n, const char* what) {
    char buf[256] = {0};
    ssize_t k = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (k != (ssize_t)n || memcmp(buf, want, n) != 0)
        fail("%s: got %zd bytes '%.40s', want '%s'", what, k, buf, want);
}
static void expect_empty(int fd, const char* what) {
    char c;
    if (recv(fd, &c, 1, MSG_DONTWAIT) != -1 || errno != EAGAIN) fail("%s: not empty", what);
}

static int g_sndbuf;
static void stream_setup(void) {
    pair_or_die(SOCK_STREAM);
    int one = 1, size = 65536;
    struct timeval tv = {7, 500000};
    setsockopt(g_sv[0], SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
    setsockopt(g_sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(g_sv[1], SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    g_sndbuf = get_opt(g_sv[1], SO_SNDBUF);
    put(g_sv[1], "ping ");
    put(g_sv[1], "ping");
    put(g_sv[0], "pong");
    shutdown(g_sv[0], SHUT_WR);
}
static void stream_check(void) {
    if (get_opt(g_sv[0], SO_PASSCRED) != 1) fail("SO_PASSCRED lost");
    if (get_opt(g_sv[1], SO_SNDBUF) != g_sndbuf)
        fail("SO_SNDBUF %d, want %d", get_opt(g_sv[1], SO_SNDBUF), g_sndbuf);
    struct timeval tv = {0, 0};
    socklen_t len = sizeof tv;
    getsockopt(g_sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, &len);
    if (tv.tv_sec != 7 || tv.tv_usec != 500000)
        fail("SO_RCVTIMEO %ld.%06ld", (long)tv.tv_sec, (long)tv.tv_usec);
    char buf[64] = {0};
    ssize_t k = recv(g_sv[0], buf, sizeof buf, MSG_DONTWAIT);
    if (k != 9 || memcmp(buf, "ping ping", 9) != 0) fail("queue of end 0: '%s'", buf);
    expect_msg(g_sv[1], "pong", 4, "queue of end 1");
    char c;
    if (recv(g_sv[1], &c, 1, MSG_DONTWAIT) != 0) fail("end 1 does not see end 0's shutdown");
    if (send(g_sv[0], "x", 1, MSG_NOSIGNAL) != -1 || errno != EPIPE) fail("end 0 can send again");
    put(g_sv[1], "after");
    expect_msg(g_sv[0], "after", 5, "a send after restore");
}

static void dgram_setup(void) {
    pair_or_die(SOCK_DGRAM);
    put(g_sv[1], "one");
    put(g_sv[1], "three");
    put(g_sv[1], "four");
    put(g_sv[0], "back");
}
static void dgram_check(void) {
    expect_msg(g_sv[0], "one", 3, "datagram 1");
    expect_msg(g_sv[0], "three", 5, "datagram 2");
    expect_msg(g_sv[0], "four", 4, "datagram 4");
    expect_empty(g_sv[0], "end 0 after three datagrams");
    expect_msg(g_sv[1], "back", 4, "datagram to end 1");
    expect_empty(g_sv[1], "end 1 after one datagram");
}

static void seqpacket_setup(void) {
    pair_or_die(SOCK_SEQPACKET);
    put(g_sv[0], "a1");
    put(g_sv[0], "a22");
    put(g_sv[1], "b333");
    shutdown(g_sv[1], SHUT_RD);
}
static void seqpacket_check(void) {
    expect_msg(g_sv[1], "a1", 2, "packet 1");
    expect_msg(g_sv[1], "a22", 3, "packet 2");
    expect_msg(g_sv[0], "b333", 4, "packet to end 0");
    if (send(g_sv[0], "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT) != -1 || errno != EPIPE)
        fail("end 0 can send although end 1 shut its reading down");
}

static void rights_setup(void) {
    pair_or_die(SOCK_STREAM);
    int fd = 0;
    char cbuf[CMSG_SPACE(sizeof fd)];
    memset(cbuf, 0, sizeof cbuf);
    struct iovec iov = {"r", 1};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cbuf;
    m.msg_controllen = sizeof cbuf;
    struct cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof fd);
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    if (sendmsg(g_sv[1], &m, 0) != 1) die("sendmsg");
}
static void rights_check(void) {
    char buf[8], cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {buf, sizeof buf};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cbuf;
    m.msg_controllen = sizeof cbuf;
    if (recvmsg(g_sv[0], &m, MSG_DONTWAIT) != 1 || !CMSG_FIRSTHDR(&m))
        fail("the fd in flight is gone");
}

static void bound_setup(void) {
    g_sv[0] = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path + 1, sizeof a.sun_path - 1, "crfs-kobj-b-%d", (int)getpid());
    if (bind(g_sv[0], (struct sockaddr*)&a, sizeof a) != 0) die("bind");
}
static void listen_setup(void) {
    g_sv[0] = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", at("sock"));
    if (bind(g_sv[0], (struct sockaddr*)&a, sizeof a) != 0 || listen(g_sv[0], 4) != 0)
        die("bind/listen");
}
static void peer_closed_setup(void) {
    pair_or_die(SOCK_STREAM);
    put(g_sv[1], "bye");
    close(g_sv[1]);
}
static void sock_shared_setup(void) {
    pair_or_die(SOCK_STREAM);
    pid_t c = fork();
    if (c < 0) die("fork");
    if (c == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (;;) pause();
    }
}
static void peek_off_setup(void) {
    pair_or_die(SOCK_DGRAM);
    int off = 0;
    setsockopt(g_sv[0], SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off);
}
static void sock_open_check(void) {
    if (fcntl(g_sv[0], F_GETFD) < 0) fail("socket closed");
    unlink(at("sock"));  /* as a server does when it stops: a restore binds it again */
}

static const struct variant kVariants[] = {
    {"pipe_data", data_setup, data_check, NULL},
    {"pipe_packet", packet_setup, packet_check, NULL},
    {"pipe_full", full_setup, full_check, NULL},
    {"pipe_half", half_setup, half_check, NULL},
    {"pipe_shared", shared_setup, shared_check, NULL},
    {"pipe_async", async_setup, async_check, NULL},
    {"fifo_data", fifo_setup, fifo_check, NULL},
    {"fifo_half", fifo_half_setup, fifo_open_check, NULL},
    {"fifo_deleted", fifo_deleted_setup, fifo_open_check, NULL},
    {"unix_stream", stream_setup, stream_check, NULL},
    {"unix_dgram", dgram_setup, dgram_check, NULL},
    {"unix_seqpacket", seqpacket_setup, seqpacket_check, NULL},
    {"unix_rights", rights_setup, rights_check, NULL},
    {"unix_bound", bound_setup, sock_open_check, NULL},
    {"unix_listen", listen_setup, sock_open_check, NULL},
    {"unix_peer_closed", peer_closed_setup, sock_open_check, NULL},
    {"unix_peek_off", peek_off_setup, sock_open_check, NULL},
    {"unix_shared", sock_shared_setup, sock_open_check, NULL},
};
PROBE_MAIN(kVariants)
