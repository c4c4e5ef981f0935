/* A unix-socket server in one process, the state tests/cr/unix_bound_test.py
 * checkpoints, kills and restores:
 *
 *   - a stream socket listening at DIR/srv.sock (backlog 7);
 *   - a connection waiting in its queue, not accepted yet (client W);
 *   - an accepted connection (client C, server end A) with bytes queued both ways;
 *   - a datagram socket bound to an abstract name, SO_PASSCRED, holding three
 *     messages: from a socket bound to DIR/s1.sock, from an unnamed one, from s1 again.
 *
 * On SIGUSR1 it serves: accepts (W's connection must come first, and carry
 * what W sends now), then accepts one client from the test, reads a line and
 * answers "echo:" + line, and writes DIR/served. On SIGTERM it checks the
 * queues (every datagram with its sender's name and this process's
 * credentials) and writes DIR/result "PASS" or "FAIL: ...".
 *
 *   unix_server DIR    writes DIR/ready once set up */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "wl_files.h"

static const char* g_dir;
static char g_fail[512];

static void put(const char* name, const char* text) {
    wl_put(g_dir, name, text);
}

static void die(const char* what) {
    wl_die(what);
}

static void fail(const char* what) {
    if (!g_fail[0]) snprintf(g_fail, sizeof g_fail, "FAIL: %s", what);
}

static socklen_t path_addr(struct sockaddr_un* a, const char* name) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    snprintf(a->sun_path, sizeof a->sun_path, "%s/%s", g_dir, name);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(a->sun_path) + 1);
}

static int sock(int type) {
    int s = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    if (s < 0) die("socket");
    return s;
}

/* Reads exactly `want` from a stream socket (blocking) and compares. */
static void expect_stream(int s, const char* want, const char* what) {
    char buf[256];
    size_t n = 0, len = strlen(want);
    while (n < len) {
        ssize_t r = recv(s, buf + n, len - n, 0);
        if (r <= 0) return fail(what);
        n += (size_t)r;
    }
    if (memcmp(buf, want, len)) fail(what);
    if (recv(s, buf, 1, MSG_DONTWAIT) != -1 || errno != EAGAIN) fail(what);
}

static void expect_dgram(int d, const char* want, const struct sockaddr_un* from,
                         socklen_t from_len, const char* what) {
    char buf[64];
    struct sockaddr_un got;
    struct iovec iov = {buf, sizeof buf};
    char cbuf[CMSG_SPACE(sizeof(struct ucred))];
    struct msghdr m = {.msg_name = &got,
                       .msg_namelen = sizeof got,
                       .msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = cbuf,
                       .msg_controllen = sizeof cbuf};
    ssize_t n = recvmsg(d, &m, MSG_DONTWAIT);
    if (n != (ssize_t)strlen(want) || memcmp(buf, want, (size_t)n)) return fail(what);
    if (from_len <= sizeof(sa_family_t) ? m.msg_namelen > sizeof(sa_family_t)
                                        : m.msg_namelen != from_len || memcmp(&got, from, from_len))
        return fail(what);
    struct cmsghdr* c = CMSG_FIRSTHDR(&m);
    struct ucred u;
    if (!c || c->cmsg_type != SCM_CREDENTIALS) return fail(what);
    memcpy(&u, CMSG_DATA(c), sizeof u);
    if (u.pid != getpid() || u.uid != getuid()) fail(what);
}

int main(int argc, char** argv) {
    if (argc != 2) return 2;
    g_dir = argv[1];
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR1);
    sigaddset(&m, SIGTERM);
    sigprocmask(SIG_BLOCK, &m, NULL);

    struct sockaddr_un srv, s1a, da, anon_a;
    socklen_t srv_len = path_addr(&srv, "srv.sock"), s1_len = path_addr(&s1a, "s1.sock");
    int l = sock(SOCK_STREAM);
    if (bind(l, (struct sockaddr*)&srv, srv_len) < 0 || listen(l, 7) < 0) die("listen");
    int c = sock(SOCK_STREAM), w = sock(SOCK_STREAM);
    if (connect(c, (struct sockaddr*)&srv, srv_len) < 0) die("connect c");
    int a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    if (a < 0) die("accept");
    if (connect(w, (struct sockaddr*)&srv, srv_len) < 0) die("connect w");
    if (send(c, "to-server", 9, 0) != 9 || send(a, "to-client!", 10, 0) != 10) die("send");

    /* The datagram socket: an abstract name of this run. */
    memset(&da, 0, sizeof da);
    da.sun_family = AF_UNIX;
    int dn = snprintf(da.sun_path + 1, sizeof da.sun_path - 1, "crfs-dgram-%d", getpid());
    socklen_t da_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)dn);
    int d = sock(SOCK_DGRAM), s1 = sock(SOCK_DGRAM), anon = sock(SOCK_DGRAM), one = 1;
    if (bind(d, (struct sockaddr*)&da, da_len) < 0) die("bind dgram");
    if (setsockopt(d, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) < 0) die("SO_PASSCRED");
    if (bind(s1, (struct sockaddr*)&s1a, s1_len) < 0) die("bind s1");
    if (sendto(s1, "m1", 2, 0, (struct sockaddr*)&da, da_len) != 2 ||
        sendto(anon, "m2", 2, 0, (struct sockaddr*)&da, da_len) != 2 ||
        sendto(s1, "m3!", 3, 0, (struct sockaddr*)&da, da_len) != 3)
        die("sendto");
    socklen_t anon_len = sizeof anon_a; /* unnamed, or autobound: what the receiver sees */
    if (getsockname(anon, (struct sockaddr*)&anon_a, &anon_len) < 0) die("getsockname");
    put("ready", "");

    int served = 0;
    for (;;) {
        int sig = sigwaitinfo(&m, NULL);
        if (sig == SIGUSR1 && !served) {
            int aw = accept4(l, NULL, NULL, SOCK_CLOEXEC); /* W's connection, first */
            if (aw < 0) die("accept w");
            if (send(w, "late", 4, 0) != 4) die("send w");
            expect_stream(aw, "late", "the waiting connection came back first");
            int t = accept4(l, NULL, NULL, SOCK_CLOEXEC); /* the test's client */
            if (t < 0) die("accept test");
            char line[128];
            ssize_t n = recv(t, line, sizeof line - 6, 0);
            if (n <= 0) die("recv test");
            char out[140] = "echo:";
            memcpy(out + 5, line, (size_t)n);
            if (send(t, out, (size_t)n + 5, 0) != n + 5) die("send test");
            close(t);
            served = 1;
            put("served", "");
        } else if (sig == SIGTERM) {
            break;
        }
    }
    expect_stream(a, "to-server", "the accepted end's queue");
    expect_stream(c, "to-client!", "the client's queue");
    expect_dgram(d, "m1", &s1a, s1_len, "datagram m1 from s1.sock");
    expect_dgram(d, "m2", &anon_a, anon_len, "datagram m2 from the unnamed socket");
    expect_dgram(d, "m3!", &s1a, s1_len, "datagram m3 from s1.sock");
    struct sockaddr_un got;
    socklen_t got_len = sizeof got;
    if (getsockname(a, (struct sockaddr*)&got, &got_len) < 0 || got_len != srv_len ||
        memcmp(&got, &srv, srv_len))
        fail("the accepted end's name");
    if (!served) fail("never served");
    put("result", g_fail[0] ? g_fail : "PASS");
    return 0;
}
