/* Probe: named, listening and accepted unix sockets of one process
 * (state/unix_bound.cc). Supported variants check names, queues with their
 * senders, the listener's waiting connections and backlog after a restore,
 * and unlink their socket files at the end, as a server does when it stops
 * (a killed one leaves them: the restore takes back only those). */
#include "probe.h" /* first: it defines _GNU_SOURCE (struct ucred) */

#include <stddef.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "outsider.h"

static int g_s[8];
static struct sockaddr_un g_a[4];
static socklen_t g_alen[4];

static int sock(int type) {
    int s = socket(AF_UNIX, type, 0);
    if (s < 0) die("socket");
    return s;
}
static void path_name(int i, const char* name) {
    memset(&g_a[i], 0, sizeof g_a[i]);
    g_a[i].sun_family = AF_UNIX;
    snprintf(g_a[i].sun_path, sizeof g_a[i].sun_path, "%s", at(name));
    g_alen[i] = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(g_a[i].sun_path) + 1);
}
static void abstract_name(int i, const char* name) {
    memset(&g_a[i], 0, sizeof g_a[i]);
    g_a[i].sun_family = AF_UNIX;
    int n = snprintf(g_a[i].sun_path + 1, sizeof g_a[i].sun_path - 1, "%s-%d", name, getpid());
    g_alen[i] = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}
static void bind_or_die(int s, int i) {
    if (bind(s, (struct sockaddr*)&g_a[i], g_alen[i]) != 0) die("bind");
}
static void connect_or_die(int s, int i) {
    if (connect(s, (struct sockaddr*)&g_a[i], g_alen[i]) != 0) die("connect");
}
static void expect_name(int s, int i, const char* what) {
    struct sockaddr_un got;
    socklen_t len = sizeof got;
    if (getsockname(s, (struct sockaddr*)&got, &len) != 0 || len != g_alen[i] ||
        memcmp(&got, &g_a[i], len) != 0)
        fail("%s: its name differs", what);
}
static void expect_bytes(int s, const char* want, const char* what) {
    char buf[64];
    ssize_t n = recv(s, buf, sizeof buf, MSG_DONTWAIT);
    if (n != (ssize_t)strlen(want) || memcmp(buf, want, (size_t)n) != 0)
        fail("%s: got %zd bytes", what, n);
}
static void expect_from(int s, const char* want, int from, const char* what) {
    char buf[64];
    struct sockaddr_un got;
    socklen_t len = sizeof got;
    ssize_t n = recvfrom(s, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr*)&got, &len);
    if (n != (ssize_t)strlen(want) || memcmp(buf, want, (size_t)n) != 0)
        return fail("%s: got %zd bytes", what, n);
    if (from < 0 ? len != 0 && len != sizeof(sa_family_t)
                 : len != g_alen[from] || memcmp(&got, &g_a[from], len) != 0)
        fail("%s: its sender's name differs", what);
}
static void unlink_paths(void) {
    for (int i = 0; i < 4; ++i)
        if (g_a[i].sun_family && g_a[i].sun_path[0]) unlink(g_a[i].sun_path);
}

/* --- supported ------------------------------------------------------------ */

static void path_stream_setup(void) {
    path_name(0, "stream.sock");
    bind_or_die(g_s[0] = sock(SOCK_STREAM), 0);
}
static void path_stream_check(void) {
    expect_name(g_s[0], 0, "bound stream socket");
    unlink_paths();
}

static void abstract_seqpacket_setup(void) {
    abstract_name(0, "crfs-ux-seq");
    bind_or_die(g_s[0] = sock(SOCK_SEQPACKET), 0);
}
static void abstract_seqpacket_check(void) {
    expect_name(g_s[0], 0, "bound seqpacket socket");
}

static void autobind_setup(void) {
    g_s[0] = sock(SOCK_DGRAM);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (bind(g_s[0], (struct sockaddr*)&a, sizeof(sa_family_t)) != 0) die("autobind");
    g_alen[0] = sizeof g_a[0];
    if (getsockname(g_s[0], (struct sockaddr*)&g_a[0], &g_alen[0]) != 0) die("getsockname");
}
static void autobind_check(void) {
    expect_name(g_s[0], 0, "autobound datagram socket");
}

/* A datagram socket at a path: messages from a named socket, an unnamed
 * one, then the named one again; SO_PASSCRED on; a connected datagram
 * client (s[3] connected to s[0]). */
static void dgram_queue_setup(void) {
    path_name(0, "dgram.sock");
    abstract_name(1, "crfs-ux-sender");
    bind_or_die(g_s[0] = sock(SOCK_DGRAM), 0);
    bind_or_die(g_s[1] = sock(SOCK_DGRAM), 1);
    g_s[2] = sock(SOCK_DGRAM);
    int one = 1;
    if (setsockopt(g_s[0], SOL_SOCKET, SO_PASSCRED, &one, sizeof one) != 0) die("SO_PASSCRED");
    struct sockaddr* to = (struct sockaddr*)&g_a[0];
    if (sendto(g_s[1], "one", 3, 0, to, g_alen[0]) != 3 ||
        sendto(g_s[2], "two!", 4, 0, to, g_alen[0]) != 4 ||
        sendto(g_s[1], "three", 5, 0, to, g_alen[0]) != 5)
        die("sendto");
    g_alen[2] = sizeof g_a[2];
    if (getsockname(g_s[2], (struct sockaddr*)&g_a[2], &g_alen[2]) != 0) die("getsockname");
    path_name(3, "client.sock");
    bind_or_die(g_s[3] = sock(SOCK_DGRAM), 3);
    connect_or_die(g_s[3], 0);
}
static void dgram_queue_check(void) {
    expect_from(g_s[0], "one", 1, "message 1");
    expect_from(g_s[0], "two!", g_alen[2] > sizeof(sa_family_t) ? 2 : -1, "message 2");
    expect_from(g_s[0], "three", 1, "message 3");
    int v = 0;
    socklen_t len = sizeof v;
    if (getsockopt(g_s[0], SOL_SOCKET, SO_PASSCRED, &v, &len) != 0 || !v) fail("SO_PASSCRED off");
    struct sockaddr_un peer;
    len = sizeof peer;
    if (getpeername(g_s[3], (struct sockaddr*)&peer, &len) != 0 || len != g_alen[0] ||
        memcmp(&peer, &g_a[0], len) != 0)
        fail("the connected datagram socket's peer differs");
    if (send(g_s[3], "x", 1, MSG_DONTWAIT) != 1) fail("the connected socket cannot send");
    expect_from(g_s[0], "x", 3, "message from the connected socket");
    unlink_paths();
}

/* SO_PEERCRED: this process listened and connected, so every end names it
 * (under a fresh pid, its new pid: the restore listens and connects again). */
static void expect_cred_self(int s, const char* what) {
    struct ucred u = {0};
    socklen_t len = sizeof u;
    if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &u, &len) != 0 || u.pid != getpid() ||
        u.uid != getuid() || u.gid != getgid())
        fail("SO_PEERCRED of %s: pid %d uid %d gid %d, not this process's (pid %d)", what, u.pid,
             u.uid, u.gid, getpid());
}

/* A listener (backlog 3) at a path with an accepted connection (bytes both
 * ways, the client shut its writing down) and two connections waiting. */
static void listen_setup(void) {
    path_name(0, "listen.sock");
    bind_or_die(g_s[0] = sock(SOCK_STREAM), 0);
    if (listen(g_s[0], 3) != 0) die("listen");
    connect_or_die(g_s[1] = sock(SOCK_STREAM), 0);
    if ((g_s[2] = accept(g_s[0], NULL, NULL)) < 0) die("accept");
    if (send(g_s[1], "c2s", 3, 0) != 3 || send(g_s[2], "s2c!", 4, 0) != 4) die("send");
    if (shutdown(g_s[1], SHUT_WR) != 0) die("shutdown");
    connect_or_die(g_s[3] = sock(SOCK_STREAM), 0);
    connect_or_die(g_s[4] = sock(SOCK_STREAM), 0);
}
static void listen_check(void) {
    expect_bytes(g_s[2], "c2s", "the accepted end's queue");
    char c;
    if (recv(g_s[2], &c, 1, MSG_DONTWAIT) != 0) fail("the client's shutdown is gone");
    expect_bytes(g_s[1], "s2c!", "the client's queue");
    expect_name(g_s[2], 0, "the accepted end");
    expect_cred_self(g_s[0], "the listener");
    expect_cred_self(g_s[1], "the client");
    expect_cred_self(g_s[2], "the accepted end");
    expect_cred_self(g_s[3], "a waiting client");
    /* Backlog 3 holds four; two wait already. */
    int more[3];
    for (int i = 0; i < 3; ++i) {
        more[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
        int r = connect(more[i], (struct sockaddr*)&g_a[0], g_alen[0]);
        if ((i < 2) != (r == 0)) fail("connection %d to the backlog: %s", i + 3, strerror(errno));
    }
    for (int i = 3; i <= 4; ++i) { /* the waiting ones come first, in order */
        int a = accept(g_s[0], NULL, NULL);
        if (a < 0 || send(g_s[i], "w", 1, 0) != 1) {
            fail("accept of waiting connection %d", i - 2);
            continue;
        }
        expect_bytes(a, "w", "a waiting connection in its place");
        expect_cred_self(a, "a waiting connection, accepted");
        close(a);
    }
    unlink_paths();
}

/* --- refused -------------------------------------------------------------- */

/* The waiting client is held by a process outside the tree (a child's is
 * restored with it now: unix_tree/stream_path). */
static pid_t g_outside;
static void open_check(void);
static void foreign_waiting_setup(void) {
    path_name(0, "foreign.sock");
    int c = sock(SOCK_STREAM);
    g_outside = spawn_outsider(); /* holds c, made before the listener */
    bind_or_die(g_s[0] = sock(SOCK_STREAM), 0);
    if (listen(g_s[0], 2) != 0) die("listen");
    connect_or_die(c, 0);
    close(c);
}
static void foreign_waiting_check(void) {
    kill(g_outside, SIGKILL);
    open_check();
}
static void waiting_bytes_setup(void) {
    path_name(0, "bytes.sock");
    bind_or_die(g_s[0] = sock(SOCK_STREAM), 0);
    if (listen(g_s[0], 2) != 0) die("listen");
    connect_or_die(g_s[1] = sock(SOCK_STREAM), 0);
    if (send(g_s[1], "early", 5, 0) != 5) die("send");
}
static void gone_sender_setup(void) {
    abstract_name(0, "crfs-ux-rcv");
    abstract_name(1, "crfs-ux-gone");
    bind_or_die(g_s[0] = sock(SOCK_DGRAM), 0);
    int s = sock(SOCK_DGRAM);
    bind_or_die(s, 1);
    if (sendto(s, "bye", 3, 0, (struct sockaddr*)&g_a[0], g_alen[0]) != 3) die("sendto");
    close(s);
}
static void moved_setup(void) {
    path_name(0, "moved.sock");
    bind_or_die(g_s[0] = sock(SOCK_STREAM), 0);
    if (rename(g_a[0].sun_path, at("elsewhere.sock")) != 0) die("rename");
}
static void open_check(void) {
    if (fcntl(g_s[0], F_GETFD) < 0) fail("socket closed");
}
/* A socketpair of a process run as another user (restored by root): both
 * ends name it, with its ids. */
static void pair_ids_setup(void) {
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, g_s) != 0) die("socketpair");
}
static void pair_ids_check(void) {
    expect_cred_self(g_s[0], "an end of the pair");
    expect_cred_self(g_s[1], "the other end of the pair");
}

/* Listened with effective ids 65534 (a server that drops privileges around
 * it), back to its own now: its SO_PEERCRED names ids the restore, which
 * listens with the task's, would not give. */
static void listen_as_other_setup(void) {
    abstract_name(0, "crfs-ux-other");
    g_s[0] = sock(SOCK_STREAM);
    if (setresgid(-1, 65534, -1) != 0 || setresuid(-1, 65534, -1) != 0) die("dropping ids");
    bind_or_die(g_s[0], 0);
    if (listen(g_s[0], 2) != 0) die("listen");
    if (setresuid(-1, 0, -1) != 0 || setresgid(-1, 0, -1) != 0) die("taking ids back");
}

static const struct variant kVariants[] = {
    {"path_stream", path_stream_setup, path_stream_check, NULL},
    {"listen_as_other", listen_as_other_setup, open_check, NULL},
    {"pair_ids", pair_ids_setup, pair_ids_check, NULL},
    {"abstract_seqpacket", abstract_seqpacket_setup, abstract_seqpacket_check, NULL},
    {"autobind", autobind_setup, autobind_check, NULL},
    {"dgram_queue", dgram_queue_setup, dgram_queue_check, NULL},
    {"listen", listen_setup, listen_check, NULL},
    {"foreign_waiting", foreign_waiting_setup, foreign_waiting_check, NULL},
    {"waiting_bytes", waiting_bytes_setup, open_check, NULL},
    {"gone_sender", gone_sender_setup, open_check, NULL},
    {"moved", moved_setup, open_check, NULL},
};
PROBE_MAIN(kVariants)
