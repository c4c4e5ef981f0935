/* Datagram unix sockets between the processes of a tree (docs/trees.md
 * "Datagrams between members", state/unix_tree.h): a datagram socketpair
 * whose ends are in the probe and its child, and a bound datagram socket of
 * the probe that a named socket of a child is connected to, with datagrams
 * queued both ways; each comes back in order with its sender's address. Or a
 * reason names what cannot (an unconnected sender in a child, a sender
 * outside the tree, a socketpair made by another process than its first
 * holder). The children verify what they hold at the check (tree_kids.h). */
#include "outsider.h"
#include "pass_fd.h"
#include "probe.h"
#include "tree_kids.h"

#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

static int g_mine = -1, g_theirs = -1;
static struct sockaddr_un g_r, g_c; /* the probe's name, the child's */
static socklen_t g_rlen, g_clen;
static struct ucred g_cred;
static const char* const kUp[] = {"up one", "up two, longer", "3"};
static const char* const kDown[] = {"down one", "down two"};

static struct ucred peer_cred(int s) {
    struct ucred u = {0};
    socklen_t len = sizeof u;
    if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &u, &len) != 0) u.pid = -1;
    return u;
}
static int cred_same(const struct ucred* a, const struct ucred* b) {
    return a->pid == b->pid && a->uid == b->uid && a->gid == b->gid;
}

static void name_path(struct sockaddr_un* a, socklen_t* len, const char* file) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    snprintf(a->sun_path, sizeof a->sun_path, "%s", at(file));
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(a->sun_path) + 1);
}
static void name_abstract(struct sockaddr_un* a, socklen_t* len, const char* what) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    int n = snprintf(a->sun_path + 1, sizeof a->sun_path - 1, "crfs-probe-dg-%s-%d", what,
                     (int)getpid());
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
}

static int bound(const struct sockaddr_un* a, socklen_t len) {
    int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0 || bind(s, (const struct sockaddr*)a, len) != 0) return -1;
    return s;
}

/* The next datagram of `s` is `want`, from `from` (NULL: unnamed). */
static int next_is(int s, const char* want, const struct sockaddr_un* from, socklen_t from_len) {
    char buf[128];
    struct sockaddr_un a;
    socklen_t alen = sizeof a;
    memset(&a, 0, sizeof a);
    ssize_t n = recvfrom(s, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr*)&a, &alen);
    if (n != (ssize_t)strlen(want) || memcmp(buf, want, (size_t)n) != 0) return 0;
    if (!from) return alen <= offsetof(struct sockaddr_un, sun_path);
    return alen == from_len && memcmp(&a, from, alen) == 0;
}
static int empty(int s) {
    char c;
    return recv(s, &c, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN;
}

/* --- a socketpair: the probe's end and the child's --------------------- */
static void pair_body(void) {
    close(g_mine);
    for (int i = 0; i < 3; ++i)
        if (send(g_theirs, kUp[i], strlen(kUp[i]), 0) < 0) _exit(3);
}
static int pair_verify(void) {
    for (int i = 0; i < 2; ++i)
        if (!next_is(g_theirs, kDown[i], NULL, 0)) return 1;
    if (!empty(g_theirs)) return 2;
    struct ucred u = peer_cred(g_theirs);
    if (!cred_same(&u, &g_cred)) return 4;
    return send(g_theirs, "after", 5, 0) == 5 ? 0 : 3; /* the probe reads it */
}
static void pair_setup(void) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) != 0) die("socketpair");
    g_mine = sv[0], g_theirs = sv[1];
    g_cred = peer_cred(g_mine);
    g_kids[0] = spawn(pair_body, pair_verify);
    close(g_theirs);
    for (int i = 0; i < 2; ++i)
        if (send(g_mine, kDown[i], strlen(kDown[i]), 0) < 0) die("send");
}
static void pair_check(void) {
    for (int i = 0; i < 3; ++i)
        if (!next_is(g_mine, kUp[i], NULL, 0)) fail("datagram %d from the child", i);
    if (!empty(g_mine)) fail("more datagrams than the child sent");
    struct ucred u = peer_cred(g_mine);
    if (!cred_same(&u, &g_cred))
        fail("SO_PEERCRED pid %d uid %d gid %d, was %d %d %d", u.pid, u.uid, u.gid, g_cred.pid,
             g_cred.uid, g_cred.gid);
    kids_check();
    if (!next_is(g_mine, "after", NULL, 0)) fail("the child's datagram after the restore");
}

/* --- a bound socket of the probe, a child's named socket connected to it -- */
static void connected_body(void) {
    close(g_mine);
    g_theirs = bound(&g_c, g_clen);
    if (g_theirs < 0 || connect(g_theirs, (struct sockaddr*)&g_r, g_rlen) != 0) _exit(3);
    for (int i = 0; i < 3; ++i)
        if (send(g_theirs, kUp[i], strlen(kUp[i]), 0) < 0) _exit(3);
}
static int names_right(int s, const struct sockaddr_un* mine, socklen_t mine_len,
                       const struct sockaddr_un* peer, socklen_t peer_len) {
    struct sockaddr_un a;
    socklen_t len = sizeof a;
    if (getsockname(s, (struct sockaddr*)&a, &len) != 0 || len != mine_len ||
        memcmp(&a, mine, len) != 0)
        return 0;
    if (!peer) return getpeername(s, (struct sockaddr*)&a, &len) != 0 && errno == ENOTCONN;
    len = sizeof a;
    return getpeername(s, (struct sockaddr*)&a, &len) == 0 && len == peer_len &&
           memcmp(&a, peer, len) == 0;
}
static int connected_verify(void) {
    for (int i = 0; i < 2; ++i)
        if (!next_is(g_theirs, kDown[i], &g_r, g_rlen)) return 1;
    if (!empty(g_theirs)) return 2;
    if (!names_right(g_theirs, &g_c, g_clen, &g_r, g_rlen)) return 5;
    return send(g_theirs, "after", 5, 0) == 5 ? 0 : 3;
}
static void connected_setup(void) {
    g_mine = bound(&g_r, g_rlen);
    if (g_mine < 0) die("bind");
    g_kids[0] = spawn(connected_body, connected_verify);
    for (int i = 0; i < 2; ++i)
        if (sendto(g_mine, kDown[i], strlen(kDown[i]), 0, (struct sockaddr*)&g_c, g_clen) < 0)
            die("sendto");
}
static void connected_check(void) {
    for (int i = 0; i < 3; ++i)
        if (!next_is(g_mine, kUp[i], &g_c, g_clen))
            fail("datagram %d from the child (or its sender's address)", i);
    if (!empty(g_mine)) fail("more datagrams than the child sent");
    if (!names_right(g_mine, &g_r, g_rlen, NULL, 0)) fail("getsockname of the bound socket");
    kids_check();
    if (!next_is(g_mine, "after", &g_c, g_clen)) fail("the child's datagram after the restore");
}
static void path_setup(void) {
    name_path(&g_r, &g_rlen, "r.sock");
    name_path(&g_c, &g_clen, "c.sock");
    connected_setup();
}
static void abstract_setup(void) {
    name_abstract(&g_r, &g_rlen, "r");
    name_abstract(&g_c, &g_clen, "c");
    connected_setup();
}

/* An unnamed socket of the child connected to the probe's: its datagrams
 * come with no address (the maker sends them from an unnamed socket). */
static void unnamed_body(void) {
    close(g_mine);
    g_theirs = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (g_theirs < 0 || connect(g_theirs, (struct sockaddr*)&g_r, g_rlen) != 0) _exit(3);
    for (int i = 0; i < 3; ++i)
        if (send(g_theirs, kUp[i], strlen(kUp[i]), 0) < 0) _exit(3);
}
static int unnamed_verify(void) {
    struct sockaddr_un a;
    socklen_t len = sizeof a;
    if (getpeername(g_theirs, (struct sockaddr*)&a, &len) != 0 || len != g_rlen ||
        memcmp(&a, &g_r, len) != 0)
        return 5;
    return send(g_theirs, "after", 5, 0) == 5 ? 0 : 3;
}
static void unnamed_setup(void) {
    name_abstract(&g_r, &g_rlen, "r");
    g_mine = bound(&g_r, g_rlen);
    if (g_mine < 0) die("bind");
    g_kids[0] = spawn(unnamed_body, unnamed_verify);
}
static void unnamed_check(void) {
    for (int i = 0; i < 3; ++i)
        if (!next_is(g_mine, kUp[i], NULL, 0)) fail("datagram %d from the unnamed socket", i);
    if (!empty(g_mine)) fail("more datagrams than the child sent");
    kids_check();
    if (!next_is(g_mine, "after", NULL, 0)) fail("the child's datagram after the restore");
}

/* --- refused ------------------------------------------------------------- */
/* A child's named socket, not connected, sent datagrams to the probe's. */
static void sender_body(void) {
    close(g_mine);
    g_theirs = bound(&g_c, g_clen);
    if (g_theirs < 0 ||
        sendto(g_theirs, kUp[0], strlen(kUp[0]), 0, (struct sockaddr*)&g_r, g_rlen) < 0)
        _exit(3);
}
static void unconnected_setup(void) {
    name_path(&g_r, &g_rlen, "r.sock");
    name_path(&g_c, &g_clen, "c.sock");
    g_mine = bound(&g_r, g_rlen);
    if (g_mine < 0) die("bind");
    g_kids[0] = spawn(sender_body, NULL);
}

/* A named socket outside the tree sent a datagram to the probe's. */
static pid_t g_outside;
static void outside_setup(void) {
    name_path(&g_r, &g_rlen, "r.sock");
    name_path(&g_c, &g_clen, "c.sock");
    g_theirs = bound(&g_c, g_clen);
    if (g_theirs < 0) die("bind");
    g_outside = spawn_outsider(); /* it holds the sender, not the receiver */
    g_mine = bound(&g_r, g_rlen);
    if (g_mine < 0) die("bind");
    if (sendto(g_theirs, kUp[0], strlen(kUp[0]), 0, (struct sockaddr*)&g_r, g_rlen) < 0)
        die("sendto");
    close(g_theirs);
}
static void outside_check(void) {
    kill(g_outside, SIGKILL);
}

/* A child made a socketpair and gave one end to the probe (SCM_RIGHTS): both
 * ends' SO_PEERCRED name the child, but the probe, its first holder, would
 * make the pair at restore. */
static int g_pass[2];
static void maker_body(void) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) != 0) _exit(3);
    if (pass_fd(g_pass[1], sv[0]) != 0) _exit(3);
    close(sv[0]);
    close(g_pass[0]);
    close(g_pass[1]);
    g_theirs = sv[1];
}
static void pair_by_child_setup(void) {
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, g_pass) != 0) die("socketpair");
    g_kids[0] = spawn(maker_body, NULL);
    if ((g_mine = take_fd(g_pass[0])) < 0) die("receiving the socketpair end");
    close(g_pass[0]);
    close(g_pass[1]);
    g_cred = peer_cred(g_mine);
}
static void pair_by_child_check(void) {
    struct ucred u = peer_cred(g_mine);
    if (!cred_same(&u, &g_cred))
        fail("SO_PEERCRED pid %d uid %d gid %d, was %d %d %d", u.pid, u.uid, u.gid, g_cred.pid,
             g_cred.uid, g_cred.gid);
    kids_check();
}

static const struct variant kVariants[] = {
    {"pair_between", pair_setup, pair_check, NULL},
    {"connected_path", path_setup, connected_check, NULL},
    {"connected_abstract", abstract_setup, connected_check, NULL},
    {"connected_unnamed", unnamed_setup, unnamed_check, NULL},
    {"unconnected_sender", unconnected_setup, kids_check, NULL},
    {"sender_outside", outside_setup, outside_check, NULL},
    {"pair_by_child", pair_by_child_setup, pair_by_child_check, NULL},
};

PROBE_MAIN(kVariants)
