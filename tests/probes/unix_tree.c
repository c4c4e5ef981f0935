/* Unix connections between the processes of a tree (docs/trees.md "Unix
 * connections between members", state/unix_tree.h): a server (the probe)
 * and clients in child processes come back connected, or a reason names
 * what cannot. The children live until the check, which has them verify what
 * they hold (SIGUSR1: exit 0 when right) and reaps them. */
#include "outsider.h"
#include "pass_fd.h"
#include "probe.h"
#include "tree_kids.h"

#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

static int g_listener = -1, g_accepted = -1, g_client = -1;
static struct sockaddr_un g_addr;
static socklen_t g_len;
static int g_type;
static const char kUp[] = "client to server";
static const char kDown[] = "server to client";

static void path_name(int type) {
    g_type = type;
    memset(&g_addr, 0, sizeof g_addr);
    g_addr.sun_family = AF_UNIX;
    snprintf(g_addr.sun_path, sizeof g_addr.sun_path, "%s", at("srv.sock"));
    g_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(g_addr.sun_path) + 1);
}

static void abstract_name(int type) {
    g_type = type;
    memset(&g_addr, 0, sizeof g_addr);
    g_addr.sun_family = AF_UNIX;
    int n = snprintf(g_addr.sun_path + 1, sizeof g_addr.sun_path - 1, "crfs-probe-ut-%d",
                     (int)getpid());
    g_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
}

static int listen_here(void) {
    int s = socket(AF_UNIX, g_type | SOCK_CLOEXEC, 0);
    if (s < 0 || bind(s, (struct sockaddr*)&g_addr, g_len) != 0 || listen(s, 4) != 0) die("listen");
    return s;
}

static int connect_there(void) {
    int s = socket(AF_UNIX, g_type | SOCK_CLOEXEC, 0);
    if (s < 0 || connect(s, (struct sockaddr*)&g_addr, g_len) != 0) die("connect");
    return s;
}

/* SO_PEERCRED: the kernel's record of who called listen() (the client's
 * end) or connect() (the accepted end); the restore must make each again by
 * the same process (state/unix_tree.h). Each end is checked, after the
 * restore, against what its holder saw before. */
static struct ucred g_acc_cred, g_cli_cred;
static struct ucred peer_cred(int s) {
    struct ucred u = {0};
    socklen_t len = sizeof u;
    if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &u, &len) != 0) u.pid = -1;
    return u;
}
static int cred_is(int s, const struct ucred* want) {
    struct ucred u = peer_cred(s);
    return u.pid == want->pid && u.uid == want->uid && u.gid == want->gid;
}

/* The peer name of `s` is the server's. */
static int peer_is_server(int s) {
    struct sockaddr_un a;
    socklen_t len = sizeof a;
    return getpeername(s, (struct sockaddr*)&a, &len) == 0 && len == g_len &&
           memcmp(&a, &g_addr, len) == 0;
}
static int name_is_server(int s) {
    struct sockaddr_un a;
    socklen_t len = sizeof a;
    return getsockname(s, (struct sockaddr*)&a, &len) == 0 && len == g_len &&
           memcmp(&a, &g_addr, len) == 0;
}

/* The accepted client: sends kUp (then, seqpacket, shuts down for sending);
 * kDown waits for it. */
static void accepted_body(void) {
    close(g_listener);
    g_client = connect_there();
    g_cli_cred = peer_cred(g_client); /* the server listened */
    if (g_cli_cred.pid != getppid() || g_cli_cred.uid != getuid()) _exit(4);
    if (send(g_client, kUp, sizeof kUp, 0) != sizeof kUp) _exit(3);
    if (g_type == SOCK_SEQPACKET && shutdown(g_client, SHUT_WR) != 0) _exit(3);
}
static int accepted_verify(void) {
    char buf[64];
    ssize_t n = recv(g_client, buf, sizeof buf, MSG_DONTWAIT);
    if (n != sizeof kDown || memcmp(buf, kDown, sizeof kDown) != 0) return 1;
    if (!cred_is(g_client, &g_cli_cred)) return 4;
    return peer_is_server(g_client) ? 0 : 2;
}
/* The waiting client: connected, not accepted, nothing sent. */
static void waiting_body(void) {
    close(g_listener);
    close(g_accepted);
    g_client = connect_there();
    g_cli_cred = peer_cred(g_client);
}
static int waiting_verify(void) {
    char c;
    if (recv(g_client, &c, 1, MSG_DONTWAIT) != -1 || errno != EAGAIN) return 1;
    if (!peer_is_server(g_client)) return 2;
    if (!cred_is(g_client, &g_cli_cred) || g_cli_cred.pid != getppid()) return 4;
    return send(g_client, "w", 1, 0) == 1 ? 0 : 3; /* the server reads it */
}

static void server_setup(void) {
    g_listener = listen_here();
    g_kids[0] = spawn(accepted_body, accepted_verify);
    g_accepted = accept4(g_listener, NULL, NULL, SOCK_CLOEXEC);
    if (g_accepted < 0) die("accept");
    g_acc_cred = peer_cred(g_accepted); /* the child connected */
    if (g_acc_cred.pid != g_kids[0]) die("SO_PEERCRED of the accepted socket");
    if (send(g_accepted, kDown, sizeof kDown, 0) != sizeof kDown) die("send");
    int on = 1; /* as redis sets it on every connection */
    if (setsockopt(g_accepted, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) != 0) die("keepalive");
    if (g_type == SOCK_STREAM) g_kids[1] = spawn(waiting_body, waiting_verify);
}
static void server_check(void) {
    char buf[64];
    ssize_t n = recv(g_accepted, buf, sizeof buf, MSG_DONTWAIT);
    if (n != sizeof kUp || memcmp(buf, kUp, sizeof kUp) != 0) fail("the client's bytes: %zd", n);
    if (!name_is_server(g_accepted) || !name_is_server(g_listener))
        fail("getsockname of the accepted or listening socket");
    int on = 0;
    socklen_t len = sizeof on;
    if (getsockopt(g_accepted, SOL_SOCKET, SO_KEEPALIVE, &on, &len) != 0 || !on)
        fail("SO_KEEPALIVE of the accepted socket is lost");
    if (g_type == SOCK_SEQPACKET && recv(g_accepted, buf, sizeof buf, MSG_DONTWAIT) != 0)
        fail("the client's shutdown is lost");
    struct ucred u = peer_cred(g_accepted);
    if (!cred_is(g_accepted, &g_acc_cred))
        fail("SO_PEERCRED of the accepted socket: pid %d uid %d gid %d, was %d %d %d", u.pid, u.uid,
             u.gid, g_acc_cred.pid, g_acc_cred.uid, g_acc_cred.gid);
    pid_t waiting = g_kids[1];
    kids_check();
    if (g_type == SOCK_STREAM) { /* the waiting client, accepted now, sent a byte */
        int w = accept4(g_listener, NULL, NULL, SOCK_CLOEXEC);
        if (w < 0 || recv(w, buf, 1, 0) != 1 || buf[0] != 'w')
            fail("the waiting client's connection: %s", strerror(errno));
        /* it connected itself: its pid, and the credentials it runs with */
        struct ucred want = {waiting, getuid(), getgid()};
        u = peer_cred(w);
        if (!cred_is(w, &want))
            fail("SO_PEERCRED of the waiting connection: pid %d uid %d gid %d, want pid %d", u.pid,
                 u.uid, u.gid, waiting);
    }
}
static void stream_path_setup(void) {
    path_name(SOCK_STREAM);
    server_setup();
}
static void seqpacket_abstract_setup(void) {
    abstract_name(SOCK_SEQPACKET);
    server_setup();
}

/* The client is held by a process outside the tree: a reason naming it. */
static pid_t g_outside;
/* The probe listens at a path, connects a client and accepts it. */
static void connect_here(void) {
    path_name(SOCK_STREAM);
    g_listener = listen_here();
    g_client = connect_there();
    g_accepted = accept4(g_listener, NULL, NULL, SOCK_CLOEXEC);
    if (g_accepted < 0) die("accept");
}
static void outside_setup(void) {
    connect_here();
    g_outside = spawn_outsider();
    close(g_client);
}
static void outside_check(void) {
    kill(g_outside, SIGKILL);
}

/* The probe connected the client itself, then gave it to a child: the
 * accepted end's SO_PEERCRED names the probe, but the child would connect it
 * again at restore: a reason. */
static void holder_body(void) {
    close(g_listener);
    close(g_accepted);
}
static void connected_by_server_setup(void) {
    connect_here();
    g_kids[0] = spawn(holder_body, NULL);
    close(g_client);
}

/* A child listened and passed the listener to the probe (SCM_RIGHTS): its
 * SO_PEERCRED names the child, but the probe would listen again: a reason. */
static int g_pass[2];
static void pass_listener_body(void) {
    int s = listen_here();
    if (pass_fd(g_pass[1], s) != 0) _exit(3);
    close(s);
    close(g_pass[0]);
    close(g_pass[1]);
}
static void listener_by_child_setup(void) {
    path_name(SOCK_STREAM);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, g_pass) != 0) die("socketpair");
    g_kids[0] = spawn(pass_listener_body, NULL);
    if ((g_listener = take_fd(g_pass[0])) < 0) die("receiving the listener");
    close(g_pass[0]);
    close(g_pass[1]);
}

/* The client (the probe) comes before its server (a child) in the tree. */
static void child_server_body(void) {
    g_listener = listen_here();
}
static void client_first_setup(void) {
    path_name(SOCK_STREAM);
    g_kids[0] = spawn(child_server_body, NULL);
    g_client = connect_there();
}

/* A datagram socket of a child connected to the probe's named one. */
static void dgram_body(void) {
    g_client = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (g_client < 0 || connect(g_client, (struct sockaddr*)&g_addr, g_len) != 0) _exit(3);
}
static void dgram_setup(void) {
    path_name(SOCK_DGRAM);
    g_listener = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (g_listener < 0 || bind(g_listener, (struct sockaddr*)&g_addr, g_len) != 0) die("bind");
    g_kids[0] = spawn(dgram_body, NULL);
}

static const struct variant kVariants[] = {
    {"stream_path", stream_path_setup, server_check, NULL},
    {"seqpacket_abstract", seqpacket_abstract_setup, server_check, NULL},
    /* run as another user, restored by root: the ids its ends name are its own */
    {"stream_path_user", stream_path_setup, server_check, NULL},
    {"outside_client", outside_setup, outside_check, NULL},
    {"client_first", client_first_setup, kids_check, NULL},
    {"connected_by_server", connected_by_server_setup, kids_check, NULL},
    {"listener_by_child", listener_by_child_setup, kids_check, NULL},
    {"dgram_between", dgram_setup, kids_check, NULL},
};

PROBE_MAIN(kVariants)
