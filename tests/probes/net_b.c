/* Probe: TCP states other than new, bound, listening and established (issue
 * 12, docs/network.md), each refused with its reason, and the listeners'
 * edges: an IPv4 listener with a connection the task has not accepted yet
 * (not a reason: the connection is a documented loss, the listener comes
 * back and accepts), and
 * a dual-stack IPv6 listener (:: with IPV6_V6ONLY 0) that still accepts IPv4. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "inet_addr.h"
#include "probe.h"

static int g_s, g_t, g_u;
static struct sockaddr_storage g_addr;
static socklen_t g_alen;

static int getint(int s, int level, int name) {
    int v = -1;
    socklen_t len = sizeof v;
    getsockopt(s, level, name, &v, &len);
    return v;
}

static int tcp_state(int s) {
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    memset(&ti, 0, sizeof ti);
    getsockopt(s, IPPROTO_TCP, TCP_INFO, &ti, &len);
    return ti.tcpi_state;
}

/* A listener on 127.0.0.1 (or :: for dual-stack), its address in g_addr. */
static int listener(int family, int backlog) {
    int l = socket(family, SOCK_STREAM, 0);
    struct sockaddr_storage ss;
    socklen_t len = probe_addr(family, 1, &ss);
    int off = 0;
    if (family == AF_INET6 && setsockopt(l, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off) != 0)
        die("V6ONLY");
    /* A second copy restored under a fresh name listens too (net.c does the same). */
    int one = 1;
    if (setsockopt(l, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) die("SO_REUSEPORT");
    if (bind(l, (struct sockaddr*)&ss, len) != 0 || listen(l, backlog) != 0) die("listen");
    g_alen = sizeof g_addr;
    getsockname(l, (struct sockaddr*)&g_addr, &g_alen);
    return l;
}

static int port_of(const struct sockaddr_storage* ss) {
    return ntohs(ss->ss_family == AF_INET6 ? ((const struct sockaddr_in6*)ss)->sin6_port
                                           : ((const struct sockaddr_in*)ss)->sin_port);
}

/* A connection to 127.0.0.1 at the listener's port. */
static int connect_v4(int flags) {
    int c = socket(AF_INET, SOCK_STREAM | flags, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port_of(&g_addr));
    if (connect(c, (struct sockaddr*)&a, sizeof a) != 0 && errno != EINPROGRESS &&
        errno != ECONNREFUSED)
        die("connect");
    return c;
}

static void wait_state(int s, int state) {
    for (int i = 0; i < 100000 && tcp_state(s) != state; ++i) usleep(100);
    if (tcp_state(s) != state) die("the socket never reached its state");
}

/* SYN_SENT: the listener's accept queue is full (backlog 0, one connection
 * queued), so the kernel drops the second SYN and the connect stays pending. */
static void syn_sent_setup(void) {
    g_t = listener(AF_INET, 0);
    g_u = connect_v4(0);
    wait_state(g_u, TCP_ESTABLISHED);
    close(g_u);
    g_s = connect_v4(SOCK_NONBLOCK);
    wait_state(g_s, TCP_SYN_SENT);
}

/* FIN_WAIT2: our FIN sent and acknowledged, the peer (kept open) not closing. */
static void fin_wait2_setup(void) {
    int l = listener(AF_INET, 1);
    g_s = connect_v4(0);
    g_t = accept(l, NULL, NULL);
    close(l);
    if (shutdown(g_s, SHUT_WR) != 0) die("shutdown");
    wait_state(g_s, TCP_FIN_WAIT2);
}

/* TIME_WAIT: both FINs done, ours first: the kernel moves the 4-tuple to a
 * time-wait entry and the task's socket is left in CLOSE. */
static void time_wait_setup(void) {
    fin_wait2_setup();
    close(g_t);
    wait_state(g_s, TCP_CLOSE);
}

/* A connect refused (nothing listens on the port): the kernel disconnects the
 * socket and gives its port back, but getsockname still shows the port. */
static void refused_setup(void) {
    close(listener(AF_INET, 1));
    g_s = connect_v4(0); /* blocking: refused at once on the loopback */
    if (tcp_state(g_s) != TCP_CLOSE) die("the connect was not refused");
}

static void still_open(void) {
    if (fcntl(g_s, F_GETFD) < 0) fail("the socket is gone");
}

/* A connection completed by the kernel, not accepted by the task: the
 * listener comes back with its address; the connection is not in the image. */
static void unaccepted_setup(void) {
    g_s = listener(AF_INET, 4);
    g_u = connect_v4(0);
    wait_state(g_u, TCP_ESTABLISHED);
    close(g_u); /* the client is the test's: only the listener is the task's */
}
static void listener_check(void) {
    struct sockaddr_storage a;
    socklen_t al = sizeof a;
    if (getsockname(g_s, (struct sockaddr*)&a, &al) != 0 || al != g_alen || memcmp(&a, &g_addr, al))
        fail("the listener's address differs");
    if (getint(g_s, SOL_SOCKET, SO_ACCEPTCONN) != 1) fail("not listening");
    /* A new IPv4 connection is accepted (after the queued one, if any). */
    int c = connect_v4(0);
    int a2 = accept(g_s, NULL, NULL);
    if (a2 < 0) fail("accept: %s", strerror(errno));
    close(a2);
    close(c);
}

static void dual_stack_setup(void) {
    g_s = listener(AF_INET6, 4);
}
static void dual_stack_check(void) {
    if (getint(g_s, IPPROTO_IPV6, IPV6_V6ONLY) != 0) fail("IPV6_V6ONLY is set");
    listener_check();
}

static const struct variant kVariants[] = {
    {"syn_sent", syn_sent_setup, still_open, NULL},
    {"fin_wait2", fin_wait2_setup, still_open, NULL},
    {"time_wait", time_wait_setup, still_open, NULL},
    {"refused", refused_setup, still_open, NULL},
    {"unaccepted", unaccepted_setup, listener_check, NULL},
    {"dual_stack", dual_stack_setup, dual_stack_check, NULL},
};

PROBE_MAIN(kVariants)
