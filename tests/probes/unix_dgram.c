/* Datagram unix sockets between the processes of a tree (docs/trees.md
 * "Datagrams between members", state/unix_tree.h): a datagram socketpair
 * whose ends are in the probe and its child, and a bound datagram socket of
 * the probe that a named socket of a child is connected to, or that named
 * sockets of children sendto() without connecting, with datagrams queued both
 * ways; each comes back in order with its sender's address. Or a reason names
 * what cannot (a relative name bound in another directory than the maker's,
 * SO_PASSCRED on a receiver of another process's datagrams, a sender outside
 * the tree, a socketpair made by another process than its first holder). The
 * children verify what they hold at the check (tree_kids.h). */
#include "outsider.h"
#include "pass_fd.h"
#include "probe.h"
#include "tree_kids.h"

#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
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
/* The probe's socket bound to r, a child running `body`, 2 datagrams queued
 * from r to the child's c. */
static void serve(void (*body)(void), int (*verify)(void)) {
    g_mine = bound(&g_r, g_rlen);
    if (g_mine < 0) die("bind");
    g_kids[0] = spawn(body, verify);
    for (int i = 0; i < 2; ++i)
        if (sendto(g_mine, kDown[i], strlen(kDown[i]), 0, (struct sockaddr*)&g_c, g_clen) < 0)
            die("sendto");
}
static void connected_setup(void) {
    serve(connected_body, connected_verify);
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

/* --- unconnected senders: the probe's bound socket, a child's (or two
 * children's) bound sockets, sendto() both ways without connecting. The probe
 * makes the children's sockets at restore (its datagram group's maker) and
 * hands them over: each reads every datagram from the right address. ----- */
static struct sockaddr_un g_c2; /* the second child's name */
static socklen_t g_c2len;
static void sendto_all(int s, const char* const* what, int n, const struct sockaddr_un* to,
                       socklen_t to_len) {
    for (int i = 0; i < n; ++i)
        if (sendto(s, what[i], strlen(what[i]), 0, (const struct sockaddr*)to, to_len) < 0)
            _exit(3);
}
static void sender_body(void) {
    close(g_mine);
    g_theirs = bound(&g_c, g_clen);
    if (g_theirs < 0) _exit(3);
    sendto_all(g_theirs, kUp, 3, &g_r, g_rlen);
}
/* The child's socket: the probe's datagrams from r's address, its own name,
 * no peer; a datagram it sends after the restore arrives. */
static int sender_check_own(const struct sockaddr_un* me, socklen_t me_len) {
    for (int i = 0; i < 2; ++i)
        if (!next_is(g_theirs, kDown[i], &g_r, g_rlen)) return 1;
    if (!empty(g_theirs)) return 2;
    if (!names_right(g_theirs, me, me_len, NULL, 0)) return 5;
    return sendto(g_theirs, "after", 5, 0, (struct sockaddr*)&g_r, g_rlen) == 5 ? 0 : 3;
}
static int sender_verify(void) {
    return sender_check_own(&g_c, g_clen);
}
static void unconnected_setup(void) {
    name_path(&g_r, &g_rlen, "r.sock");
    name_path(&g_c, &g_clen, "c.sock");
    serve(sender_body, sender_verify); /* checked as connected_check does */
}
/* Two children, one bound to a path, one to an abstract name, their datagrams
 * interleaved in the probe's queue (c, c2, c, c2, c): each sends one when the
 * probe asks on its channel, and answers once it is queued. */
static void two_kid(int k, int channel) {
    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGUSR1);
    sigprocmask(SIG_BLOCK, &ss, NULL);
    close(g_mine);
    const struct sockaddr_un* me = k ? &g_c2 : &g_c;
    socklen_t me_len = k ? g_c2len : g_clen;
    g_theirs = bound(me, me_len);
    if (g_theirs < 0) _exit(3);
    char c;
    for (int i = 0; read(channel, &c, 1) == 1; ++i) {
        sendto_all(g_theirs, &kUp[i], 1, &g_r, g_rlen);
        if (write(channel, "y", 1) != 1) _exit(3);
    }
    close(channel);
    int sig = 0;
    while (sigwait(&ss, &sig) != 0) {
    }
    _exit(sender_check_own(me, me_len));
}
static void two_setup(void) {
    name_path(&g_r, &g_rlen, "r.sock");
    name_path(&g_c, &g_clen, "c.sock");
    name_abstract(&g_c2, &g_c2len, "c2");
    g_mine = bound(&g_r, g_rlen);
    if (g_mine < 0) die("bind");
    int ch[2][2];
    for (int k = 0; k < 2; ++k) {
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ch[k]) != 0) die("socketpair");
        g_kids[k] = fork();
        if (g_kids[k] < 0) die("fork");
        if (g_kids[k] == 0) {
            close(ch[k][0]);
            if (k) close(ch[0][0]);
            two_kid(k, ch[k][1]);
        }
        close(ch[k][1]);
    }
    for (int i = 0; i < 5; ++i) {
        char c;
        if (write(ch[i % 2][0], "x", 1) != 1 || read(ch[i % 2][0], &c, 1) != 1) die("a child");
    }
    close(ch[0][0]);
    close(ch[1][0]);
    for (int i = 0; i < 2; ++i)
        if (sendto(g_mine, kDown[i], strlen(kDown[i]), 0, (struct sockaddr*)&g_c, g_clen) < 0 ||
            sendto(g_mine, kDown[i], strlen(kDown[i]), 0, (struct sockaddr*)&g_c2, g_c2len) < 0)
            die("sendto");
}
static void two_check(void) {
    for (int i = 0; i < 5; ++i) {
        int k = i % 2;
        if (!next_is(g_mine, kUp[i / 2], k ? &g_c2 : &g_c, k ? g_c2len : g_clen))
            fail("datagram %d (from child %d, or its sender's address)", i, k);
    }
    if (!empty(g_mine)) fail("more datagrams than the children sent");
    if (!names_right(g_mine, &g_r, g_rlen, NULL, 0)) fail("getsockname of the bound socket");
    kids_check();
    if (!next_is(g_mine, "after", &g_c, g_clen) || !next_is(g_mine, "after", &g_c2, g_c2len))
        fail("the children's datagrams after the restore");
}

/* --- refused ------------------------------------------------------------- */

/* A child bound "c.sock" relative to a directory of its own and sent to the
 * probe's socket: the probe, its group's maker, would bind the name in its own. */
static void elsewhere_body(void) {
    close(g_mine);
    if (mkdir(at("sub"), 0700) != 0 || chdir(at("sub")) != 0) _exit(3);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    strcpy(a.sun_path, "c.sock");
    g_theirs = bound(&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 7));
    if (g_theirs < 0) _exit(3);
    sendto_all(g_theirs, kUp, 1, &g_r, g_rlen);
}
static void elsewhere_setup(void) {
    name_path(&g_r, &g_rlen, "r.sock");
    g_mine = bound(&g_r, g_rlen);
    if (g_mine < 0) die("bind");
    g_kids[0] = spawn(elsewhere_body, NULL);
}

/* SO_PASSCRED on the probe's socket: the child's datagram carries the child's
 * credentials, which a datagram the probe sends again at restore would not. */
static void passcred_setup(void) {
    name_path(&g_r, &g_rlen, "r.sock");
    name_path(&g_c, &g_clen, "c.sock");
    g_mine = bound(&g_r, g_rlen);
    int on = 1;
    if (g_mine < 0 || setsockopt(g_mine, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0) die("bind");
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
    {"unconnected_sender", unconnected_setup, connected_check, NULL},
    {"unconnected_two", two_setup, two_check, NULL},
    {"relative_elsewhere", elsewhere_setup, kids_check, NULL},
    {"unconnected_passcred", passcred_setup, kids_check, NULL},
    {"sender_outside", outside_setup, outside_check, NULL},
    {"pair_by_child", pair_by_child_setup, pair_by_child_check, NULL},
};

PROBE_MAIN(kVariants)
