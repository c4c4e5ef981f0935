/* Open file descriptions shared with a process outside the image
 * (state/shared_desc.h): the same description held by an outsider is refused
 * (a regular file, a socket, one passed by SCM_RIGHTS); the same file opened
 * by the outsider on its own, and /dev/null shared (stateless), round-trip.
 *
 * The outsider is neither the probe nor its child (a child is a reason of its
 * own): a grandchild whose parent has exited, holding only the fd it is given,
 * until the probe ends (it polls a pidfd of the probe). */
#include "probe.h" /* first: it defines _GNU_SOURCE */

#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

static int g_fd = -1;

static int open_or_die(const char* path, int flags) {
    int fd = open(path, flags, 0600);
    if (fd < 0) die(path);
    return fd;
}

static void put(int fd, const char* s) {
    if (write(fd, s, strlen(s)) != (ssize_t)strlen(s)) die("write");
}

/* Receives one fd over the unix socket `sock`, acknowledges it, closes `sock`. */
static void take_passed_fd(int sock) {
    char byte, ctl[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {&byte, 1};
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
    if (recvmsg(sock, &m, 0) != 1) _exit(3);
    if (write(sock, "k", 1) != 1) _exit(3);
    close(sock);
}

/* Starts the outsider holding fd `keep` (with `reopen`: the path opened
 * anew at that number; with `passed`: `keep` is a unix socket over which the
 * probe then passes it an fd). Returns once the outsider holds it. */
static void outsider(int keep, const char* reopen, int passed) {
    pid_t probe = getpid();
    pid_t mid = fork();
    if (mid < 0) die("fork");
    if (mid == 0) {
        if (reopen) {
            close(keep);
            int fd = open(reopen, O_RDONLY);
            if (fd < 0 || (fd != keep && (dup2(fd, keep) != keep || close(fd) != 0))) _exit(3);
        }
        /* Named and holding only `keep` before the outsider is forked: the
         * probe goes on (and its reason is read) once this process is gone,
         * when the outsider may not have run yet; done after the fork, the
         * outsider was once seen still holding the probe's stderr. */
        prctl(PR_SET_NAME, "outsider");
        if (keep > 0) close_range(0, (unsigned)keep - 1, 0);
        close_range((unsigned)keep + 1, ~0U, 0);
        pid_t out = fork();
        if (out != 0) _exit(out < 0 ? 3 : 0);
        if (passed) take_passed_fd(keep);
        int pidfd = (int)syscall(SYS_pidfd_open, probe, 0);
        struct pollfd p = {pidfd, POLLIN, 0};
        while (pidfd >= 0 && poll(&p, 1, -1) < 0 && errno == EINTR) {
        }
        _exit(0);
    }
    int st;
    if (waitpid(mid, &st, 0) != mid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) die("outsider");
}

static void expect_offset(off_t want) {
    off_t pos = lseek(g_fd, 0, SEEK_CUR);
    if (pos != want) fail("offset of fd %d is %ld, want %ld", g_fd, (long)pos, (long)want);
}

/* Refused: the outsider holds the probe's own description of the log. */
static void file_outside_setup(void) {
    g_fd = open_or_die(at("log"), O_RDWR | O_CREAT | O_TRUNC);
    put(g_fd, "abc");
    outsider(g_fd, NULL, 0);
}
static void file_outside_check(void) {
    expect_offset(3);
}

/* Supported: the outsider opened the same file itself (another description). */
static void file_reopened_setup(void) {
    g_fd = open_or_die(at("log"), O_RDWR | O_CREAT | O_TRUNC);
    put(g_fd, "0123456789");
    lseek(g_fd, 4, SEEK_SET);
    outsider(g_fd, at("log"), 0);
}
static void file_reopened_check(void) {
    expect_offset(4);
    char buf[4] = {0};
    if (read(g_fd, buf, 3) != 3 || memcmp(buf, "456", 3) != 0) fail("read at offset: '%s'", buf);
}

/* Supported (exempt): /dev/null has no state a restore would split. */
static void devnull_setup(void) {
    g_fd = open_or_die("/dev/null", O_WRONLY | O_APPEND);
    outsider(g_fd, NULL, 0);
}
static void devnull_check(void) {
    struct stat st;
    if (fstat(g_fd, &st) != 0 || !S_ISCHR(st.st_mode) || st.st_rdev != makedev(1, 3))
        fail("fd %d is no longer /dev/null", g_fd);
    if (!(fcntl(g_fd, F_GETFL) & O_APPEND)) fail("O_APPEND lost");
    if (write(g_fd, "x", 1) != 1) fail("write /dev/null");
}

/* Refused: a bound UDP socket the outsider holds too. */
static void udp_outside_setup(void) {
    g_fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (g_fd < 0 || bind(g_fd, (struct sockaddr*)&a, sizeof a) != 0) die("udp socket");
    outsider(g_fd, NULL, 0);
}
static void udp_outside_check(void) {
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    if (getsockname(g_fd, (struct sockaddr*)&a, &len) != 0 || a.sin_port == 0)
        fail("the socket is no longer bound");
}

/* Refused: the log's description went to the outsider by SCM_RIGHTS. */
static void scm_rights_setup(void) {
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0) die("socketpair");
    outsider(sp[1], NULL, 1);
    close(sp[1]);
    g_fd = open_or_die(at("log"), O_RDWR | O_CREAT | O_TRUNC);
    put(g_fd, "abcde");
    char byte = 'f', ctl[CMSG_SPACE(sizeof(int))] = {0};
    struct iovec iov = {&byte, 1};
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
    struct cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &g_fd, sizeof(int));
    if (sendmsg(sp[0], &m, 0) != 1 || read(sp[0], &byte, 1) != 1) die("pass the fd");
    close(sp[0]);
}
static void scm_rights_check(void) {
    expect_offset(5);
}

static const struct variant kVariants[] = {
    {"file_outside", file_outside_setup, file_outside_check, NULL},
    {"file_reopened", file_reopened_setup, file_reopened_check, NULL},
    {"devnull_outside", devnull_setup, devnull_check, NULL},
    {"udp_outside", udp_outside_setup, udp_outside_check, NULL},
    {"scm_rights", scm_rights_setup, scm_rights_check, NULL},
};

PROBE_MAIN(kVariants)
