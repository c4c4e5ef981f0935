/* A unix-socket server and its clients in one process tree, the state
 * tests/fs/unix_tree_mount_test.py checkpoints, kills and restores into the
 * same pids (docs/trees.md "Unix connections between members"):
 *
 *   - the server (this process) listens on a stream socket at DIR/srv.sock and
 *     on a seqpacket socket with the abstract name "crfs-ut-<pid>";
 *   - child 1 connected to srv.sock and was accepted; PHASE bytes are queued
 *     each way (sent, not read);
 *   - child 2 connected to the abstract name and was accepted; MSGS messages
 *     are queued each way, and child 2 shut its sending side down;
 *   - child 3 connected to srv.sock and waits in its backlog (not accepted).
 *
 * Every process notes what getsockname/getpeername say, then waits for
 * SIGUSR1 (sigwait). Then: each client sends the rest of its data, shuts down
 * its sending side and reads to the end; the server accepts child 3 (the
 * first waiting connection must be its), reads every connection to its end,
 * checking each byte, answers the rest of its data and shuts down. Each
 * client checks what it got and exits 0; the server checks the names again
 * and its children's exit codes and writes DIR/result: "PASS <totals>" or
 * "FAIL: what differed".
 *
 *   unix_tree DIR    writes DIR/ready once the tree is set up */
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
#include <sys/wait.h>
#include <unistd.h>

#include "wl_files.h"

/* Below the kernel's max_dgram_qlen (10): a seqpacket queue holds no more. */
enum { PHASE = 5000, REST = 7000, MSG = 100, MSGS = 8, MSGS_REST = 30 };

static const char* g_dir;
static char g_fail[512];

static void fail(const char* what) {
    if (!g_fail[0]) snprintf(g_fail, sizeof g_fail, "FAIL: %s (%s)", what, strerror(errno));
}

static void die(const char* what) {
    wl_die(what);
}

static void put(const char* name, const char* text) {
    wl_put(g_dir, name, text);
}

/* Byte k of the stream `who` sends. */
static unsigned char byte(int who, long k) {
    return (unsigned char)(k * 131 + who * 17 + (k >> 8));
}

static socklen_t srv_addr(struct sockaddr_un* a, int abstract, pid_t server) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    if (abstract) {
        int n = snprintf(a->sun_path + 1, sizeof a->sun_path - 1, "crfs-ut-%d", (int)server);
        return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
    }
    snprintf(a->sun_path, sizeof a->sun_path, "%s/srv.sock", g_dir);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(a->sun_path) + 1);
}

/* What the kernel says the socket's own (`peer` 0) or peer's name is. */
struct name {
    socklen_t len;
    char path[sizeof(struct sockaddr_un)];
};
static struct name name_of(int s, int peer) {
    struct name n;
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    n.len = sizeof a;
    if ((peer ? getpeername(s, (struct sockaddr*)&a, &n.len)
              : getsockname(s, (struct sockaddr*)&a, &n.len)) < 0)
        n.len = 0;
    memcpy(n.path, &a, sizeof a);
    return n;
}
static int same_name(struct name a, struct name b) {
    return a.len == b.len && memcmp(a.path, b.path, a.len) == 0;
}

static int send_all(int s, int who, long from, long n, int msg) {
    char buf[MSG];
    for (long k = from; k < from + n;) {
        long chunk = msg ? MSG : (from + n - k < MSG ? from + n - k : MSG);
        for (long i = 0; i < chunk; ++i) buf[i] = (char)byte(who, k + i);
        ssize_t w = send(s, buf, (size_t)chunk, MSG_NOSIGNAL);
        if (w != chunk) return -1;
        k += chunk;
    }
    return 0;
}

/* Reads `s` to its end, checking each byte against `who`'s stream (and, for
 * seqpacket, that every message is MSG bytes); the count, or -1. */
static long read_all(int s, int who, int msg) {
    char buf[4096];
    long k = 0;
    for (;;) {
        ssize_t n = recv(s, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) return k;
        if (msg && n != MSG) return -1;
        for (ssize_t i = 0; i < n; ++i)
            if ((unsigned char)buf[i] != byte(who, k + i)) return -1;
        k += n;
    }
}

static void wait_go(void) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    int sig = 0;
    while (sigwait(&s, &sig) != 0) {
    }
}

/* Client `who` (1: stream, accepted; 2: seqpacket, accepted, shut down for
 * sending; 3: stream, waiting), body run in the child. */
static int client(int who, pid_t server, int ready_fd) {
    int seq = who == 2;
    int s = socket(AF_UNIX, (seq ? SOCK_SEQPACKET : SOCK_STREAM) | SOCK_CLOEXEC, 0);
    struct sockaddr_un a;
    socklen_t len = srv_addr(&a, seq, server);
    if (s < 0 || connect(s, (struct sockaddr*)&a, len) < 0) return 10;
    struct name peer = name_of(s, 1), own = name_of(s, 0);
    long sent = 0;
    if (who == 1 && send_all(s, who, 0, PHASE, 0) < 0) return 11;
    if (who == 2 && send_all(s, who, 0, (long)MSGS * MSG, 1) < 0) return 11;
    if (who == 2 && shutdown(s, SHUT_WR) < 0) return 12;
    sent = who == 1 ? PHASE : 0;
    close(ready_fd);
    wait_go();
    if (!same_name(peer, name_of(s, 1)) || !same_name(own, name_of(s, 0))) return 13;
    if (peer.len != len || memcmp(peer.path, &a, len) != 0) return 14; /* the server's name */
    if (who != 2) {
        if (send_all(s, who, sent, REST, 0) < 0) return 15;
        if (shutdown(s, SHUT_WR) < 0) return 16;
    }
    long want = who == 2 ? (long)(MSGS + MSGS_REST) * MSG : who == 1 ? PHASE + REST : REST;
    long got = read_all(s, 10 + who, seq);
    return got == want ? 0 : 17;
}

int main(int argc, char** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: unix_tree DIR\n");
        return 2;
    }
    g_dir = argv[1];
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, NULL);
    pid_t me = getpid();
    struct sockaddr_un a;
    int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int lq = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    socklen_t len_s = srv_addr(&a, 0, me);
    if (ls < 0 || bind(ls, (struct sockaddr*)&a, len_s) < 0 || listen(ls, 4) < 0) die("srv.sock");
    socklen_t len_q = srv_addr(&a, 1, me);
    if (lq < 0 || bind(lq, (struct sockaddr*)&a, len_q) < 0 || listen(lq, 4) < 0) die("abstract");

    pid_t kids[3];
    int acc[3] = {-1, -1, -1};
    for (int i = 0; i < 3; ++i) {
        int done[2];
        if (pipe2(done, O_CLOEXEC) != 0) die("pipe");
        kids[i] = fork();
        if (kids[i] < 0) die("fork");
        if (kids[i] == 0) {
            close(done[0]);
            close(ls);
            close(lq);
            for (int j = 0; j < i; ++j) close(acc[j]);
            _exit(client(i + 1, me, done[1]));
        }
        close(done[1]);
        if (i < 2) { /* the third waits in the backlog */
            acc[i] = accept4(i == 0 ? ls : lq, NULL, NULL, SOCK_CLOEXEC);
            if (acc[i] < 0) die("accept");
        }
        char x;
        (void)!read(done[0], &x, 1); /* end of file: the client is set up */
        close(done[0]);
    }
    if (send_all(acc[0], 11, 0, PHASE, 0) < 0) die("send 1");
    if (send_all(acc[1], 12, 0, (long)MSGS * MSG, 1) < 0) die("send 2");
    struct name own[2] = {name_of(acc[0], 0), name_of(acc[1], 0)};
    struct name peer[2] = {name_of(acc[0], 1), name_of(acc[1], 1)};
    struct name lnames[2] = {name_of(ls, 0), name_of(lq, 0)};
    put("ready", "");
    wait_go();

    for (int i = 0; i < 2; ++i)
        if (!same_name(own[i], name_of(acc[i], 0)) || !same_name(peer[i], name_of(acc[i], 1)) ||
            !same_name(lnames[i], name_of(i ? lq : ls, 0)))
            fail("a name getsockname/getpeername reports changed");
    if (!same_name(own[0], lnames[0]) || !same_name(own[1], lnames[1]))
        fail("an accepted socket does not carry its listener's name");
    acc[2] = accept4(ls, NULL, NULL, SOCK_CLOEXEC); /* child 3, waiting in the backlog */
    if (acc[2] < 0) fail("accept of the waiting client");
    long got[3] = {0, 0, 0};
    for (int i = 0; i < 3 && acc[2] >= 0; ++i) {
        got[i] = read_all(acc[i], i + 1, i == 1);
        long more = i == 0 ? REST : i == 1 ? (long)MSGS_REST * MSG : REST;
        long from = i == 0 ? PHASE : i == 1 ? (long)MSGS * MSG : 0;
        if (got[i] < 0) fail("bytes from a client differ");
        if (send_all(acc[i], 11 + i, from, more, i == 1) < 0) fail("send the rest");
        shutdown(acc[i], SHUT_WR);
    }
    for (int i = 0; i < 3; ++i) {
        int st = 0;
        if (waitpid(kids[i], &st, 0) != kids[i])
            fail("waitpid");
        else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            char what[64];
            snprintf(what, sizeof what, "client %d exited with 0x%x", i + 1, st);
            errno = 0;
            fail(what);
        }
    }
    char out[600];
    if (g_fail[0])
        snprintf(out, sizeof out, "%s\n", g_fail);
    else
        snprintf(out, sizeof out, "PASS %ld %ld %ld\n", got[0], got[1], got[2]);
    put("result", out);
    return 0;
}
