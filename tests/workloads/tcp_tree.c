/* Workload: a TCP echo server and its client in one process tree (issue 12).
 *
 *   tcp_tree DIR
 *
 * The parent listens on 127.0.0.1 (port chosen by the kernel), forks the
 * client, accepts its connection and echoes every byte back with blocking
 * reads and writes (its port in DIR/port). The client (its own /dev/null stdio, no fd of its
 * parent) connects, sends a known pattern without reading until it cannot send more: then the
 * queues are full both ways and the server sleeps in write(). It writes its pid to DIR/child, then
 * DIR/ready, and waits for SIGTERM.
 *
 * On SIGTERM the client sends the rest of the pattern and reads every echoed
 * byte, checking each against the pattern: DIR/result gets "PASS" when all
 * kTotal bytes came back once, in order, or "FAIL: why" (a reset, a short
 * read, a wrong byte). Then it closes; the server sees EOF and exits. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { kTotal = 8 << 20, kBuf = 32 << 10 };

static char dir[3000];

static void put(const char* name, const char* fmt, ...) {
    char path[3100], tmp[3100], text[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s/.%s", dir, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text) || close(fd) != 0 ||
        rename(tmp, path) != 0)
        _exit(2);
}

static unsigned char pattern(long i) {
    return (unsigned char)(i * 7 + i / 251);
}

static void small_buffers(int s) {
    int n = kBuf;
    if (setsockopt(s, SOL_SOCKET, SO_RCVBUF, &n, sizeof n) != 0 ||
        setsockopt(s, SOL_SOCKET, SO_SNDBUF, &n, sizeof n) != 0)
        _exit(3);
}

static volatile sig_atomic_t got_term;
static void on_term(int sig) {
    (void)sig;
    got_term = 1;
}

static int finish(int c, long sent) {
    if (fcntl(c, F_SETFL, 0) != 0) return put("result", "FAIL: fcntl: %s", strerror(errno)), 1;
    long got = 0;
    static char buf[65536];
    while (got < kTotal) {
        struct pollfd p = {c, (short)(POLLIN | (sent < kTotal ? POLLOUT : 0)), 0};
        if (poll(&p, 1, -1) < 0 && errno != EINTR)
            return put("result", "FAIL: poll: %s", strerror(errno)), 1;
        if (p.revents & POLLOUT) {
            long n = kTotal - sent < (long)sizeof buf ? kTotal - sent : (long)sizeof buf;
            for (long i = 0; i < n; ++i) buf[i] = (char)pattern(sent + i);
            ssize_t w = send(c, buf, (size_t)n, MSG_DONTWAIT);
            if (w < 0 && errno != EAGAIN)
                return put("result", "FAIL: send at %ld: %s", sent, strerror(errno)), 1;
            if (w > 0) sent += w;
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = recv(c, buf, sizeof buf, MSG_DONTWAIT);
            if (r < 0 && errno == EAGAIN) continue;
            if (r < 0) return put("result", "FAIL: recv at %ld: %s", got, strerror(errno)), 1;
            if (r == 0) return put("result", "FAIL: closed after %ld of %d bytes", got, kTotal), 1;
            for (ssize_t i = 0; i < r; ++i)
                if ((unsigned char)buf[i] != pattern(got + i))
                    return put("result", "FAIL: byte %ld is %d, not %d", got + i,
                               (unsigned char)buf[i], pattern(got + i)),
                           1;
            got += r;
        }
    }
    close(c);
    put("result", "PASS");
    return 0;
}

static int client(int port) {
    int null = open("/dev/null", O_RDWR); /* its own description, not its parent's */
    if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0) _exit(4);
    if (null > 2) close(null);
    sigset_t term, old;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigprocmask(SIG_BLOCK, &term, &old);
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);

    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (c < 0) _exit(5);
    small_buffers(c);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c, (struct sockaddr*)&a, sizeof a) != 0) _exit(6);
    if (fcntl(c, F_SETFL, O_NONBLOCK) != 0) _exit(7);
    /* Send until nothing more fits: the server's queues and ours are full. */
    long sent = 0;
    static char buf[4096];
    for (;;) {
        for (size_t i = 0; i < sizeof buf; ++i) buf[i] = (char)pattern(sent + (long)i);
        ssize_t w = send(c, buf, sizeof buf, 0);
        if (w > 0) {
            sent += w;
            if (sent + (long)sizeof buf > kTotal) _exit(8); /* the queues never filled */
            continue;
        }
        if (w < 0 && errno != EAGAIN) _exit(9);
        struct pollfd p = {c, POLLOUT, 0};
        if (poll(&p, 1, 200) == 0) break; /* full for 200 ms: the server sleeps in write() */
    }
    put("child", "%d", (int)getpid());
    put("ready", "%ld", sent);
    while (!got_term) sigsuspend(&old);
    return finish(c, sent);
}

int main(int argc, char** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: tcp_tree DIR\n");
        return 2;
    }
    snprintf(dir, sizeof dir, "%s", argv[1]);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0) return 10;
    small_buffers(l); /* accepted connections inherit them */
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(l, (struct sockaddr*)&a, sizeof a) != 0 || listen(l, 1) != 0 ||
        getsockname(l, (struct sockaddr*)&a, &len) != 0)
        return 11;
    put("port", "%d", ntohs(a.sin_port));
    pid_t kid = fork();
    if (kid < 0) return 12;
    if (kid == 0) {
        close(l);
        _exit(client(ntohs(a.sin_port)));
    }
    int c = accept(l, NULL, NULL);
    if (c < 0) return 13;
    close(l);
    static char buf[4096];
    for (;;) {
        ssize_t r = read(c, buf, sizeof buf);
        if (r == 0) break; /* the client is done */
        if (r < 0) return 14;
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(c, buf + off, (size_t)(r - off));
            if (w <= 0) return 15;
            off += w;
        }
    }
    return 0;
}
