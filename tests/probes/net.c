/* Probe: inet, raw, packet and netlink sockets (issue 12, docs/network.md).
 * Supported variants restore the socket's kind, address, state and options;
 * refused ones name the socket (or its queued bytes, state or filter). */
#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "inet_addr.h"
#include "probe.h"

static int g_s, g_t;
static struct sockaddr_storage g_addr, g_peer;
static socklen_t g_alen, g_plen;

static int getint(int s, int level, int name) {
    int v = -1;
    socklen_t len = sizeof v;
    getsockopt(s, level, name, &v, &len);
    return v;
}

static void setint(int s, int level, int name, int v) {
    if (setsockopt(s, level, name, &v, sizeof v) != 0) die("setsockopt");
}

static void bind_loopback(int s, int family) {
    struct sockaddr_storage ss;
    socklen_t len = probe_addr(family, 0, &ss);
    if (bind(s, (struct sockaddr*)&ss, len) != 0) die("bind");
}

static void remember(int s) {
    g_alen = sizeof g_addr;
    getsockname(s, (struct sockaddr*)&g_addr, &g_alen);
    g_plen = sizeof g_peer;
    if (getpeername(s, (struct sockaddr*)&g_peer, &g_plen) != 0) g_plen = 0;
}

static void check_same(void) {
    struct sockaddr_storage a, p;
    socklen_t al = sizeof a, pl = sizeof p;
    if (getsockname(g_s, (struct sockaddr*)&a, &al) != 0 || al != g_alen || memcmp(&a, &g_addr, al))
        fail("local address differs");
    if (getpeername(g_s, (struct sockaddr*)&p, &pl) != 0) pl = 0;
    if (pl != g_plen || memcmp(&p, &g_peer, pl)) fail("peer differs");
}

static void tcp_unbound_setup(void) {
    g_s = socket(AF_INET, SOCK_STREAM, 0);
    setint(g_s, IPPROTO_TCP, TCP_NODELAY, 1);
    remember(g_s);
}
static void tcp_unbound_check(void) {
    check_same();
    if (getint(g_s, SOL_SOCKET, SO_TYPE) != SOCK_STREAM) fail("not a stream socket");
    if (getint(g_s, IPPROTO_TCP, TCP_NODELAY) != 1) fail("TCP_NODELAY lost");
}

static void tcp_bound_setup(void) {
    g_s = socket(AF_INET, SOCK_STREAM, 0);
    bind_loopback(g_s, AF_INET);
    remember(g_s);
}

static void listen_setup(int family) {
    g_s = socket(family, SOCK_STREAM, 0);
    setint(g_s, SOL_SOCKET, SO_REUSEPORT, 1);
    setint(g_s, IPPROTO_TCP, TCP_DEFER_ACCEPT, 5);
    setint(g_s, SOL_SOCKET, SO_SNDBUF, 50000);
    bind_loopback(g_s, family);
    if (listen(g_s, 9) != 0) die("listen");
    remember(g_s);
}
static void tcp_listen_setup(void) {
    listen_setup(AF_INET);
}
static void tcp6_listen_setup(void) {
    listen_setup(AF_INET6);
}
static void listen_check(void) {
    check_same();
    if (getint(g_s, SOL_SOCKET, SO_ACCEPTCONN) != 1) fail("not listening");
    if (getint(g_s, SOL_SOCKET, SO_REUSEPORT) != 1) fail("SO_REUSEPORT lost");
    if (getint(g_s, IPPROTO_TCP, TCP_DEFER_ACCEPT) <= 0) fail("TCP_DEFER_ACCEPT lost");
    if (getint(g_s, SOL_SOCKET, SO_SNDBUF) != 100000)
        fail("SO_SNDBUF %d", getint(g_s, SOL_SOCKET, SO_SNDBUF));
    /* It still accepts. */
    int c = socket(g_addr.ss_family, SOCK_STREAM, 0);
    if (connect(c, (struct sockaddr*)&g_addr, g_alen) != 0) fail("connect: %s", strerror(errno));
    if (write(c, "x", 1) != 1) fail("write");
    int a = accept(g_s, NULL, NULL);
    if (a < 0) fail("accept: %s", strerror(errno));
    close(a);
    close(c);
}

static void udp_setup(int family, int connected) {
    g_s = socket(family, SOCK_DGRAM, 0);
    bind_loopback(g_s, family);
    setint(g_s, SOL_SOCKET, SO_BROADCAST, 1);
    if (connected) {
        g_t = socket(family, SOCK_DGRAM, 0);
        bind_loopback(g_t, family);
        struct sockaddr_storage t;
        socklen_t tl = sizeof t;
        getsockname(g_t, (struct sockaddr*)&t, &tl);
        if (connect(g_s, (struct sockaddr*)&t, tl) != 0) die("connect");
    }
    remember(g_s);
}
static void udp_bound_setup(void) {
    udp_setup(AF_INET, 0);
}
static void udp_connected_setup(void) {
    udp_setup(AF_INET, 1);
}
static void udp6_setup(void) {
    udp_setup(AF_INET6, 0);
}
static void udp_check(void) {
    check_same();
    if (getint(g_s, SOL_SOCKET, SO_BROADCAST) != 1) fail("SO_BROADCAST lost");
    /* A datagram to itself comes back. */
    if (sendto(g_s, "d", 1, 0, (struct sockaddr*)&g_addr, g_alen) != 1 && !g_plen)
        fail("sendto: %s", strerror(errno));
    if (!g_plen) {
        char c;
        if (recv(g_s, &c, 1, MSG_DONTWAIT) != 1) fail("no datagram back");
    }
}

static void udp_queued_setup(void) {
    udp_setup(AF_INET, 0);
    if (sendto(g_s, "q", 1, 0, (struct sockaddr*)&g_addr, g_alen) != 1) die("sendto");
}

static void close_wait_setup(void) {
    g_t = socket(AF_INET, SOCK_STREAM, 0);
    bind_loopback(g_t, AF_INET);
    if (listen(g_t, 1) != 0) die("listen");
    struct sockaddr_storage a;
    socklen_t al = sizeof a;
    getsockname(g_t, (struct sockaddr*)&a, &al);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c, (struct sockaddr*)&a, al) != 0) die("connect");
    g_s = accept(g_t, NULL, NULL);
    close(c);
    remember(g_s);
}
static void close_wait_check(void) {
    char c;
    if (read(g_s, &c, 1) != 0) fail("no EOF from the closed peer");
}

static void filter_setup(void) {
    g_s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sock_filter code[] = {{BPF_RET | BPF_K, 0, 0, 0xffff}};
    struct sock_fprog prog = {1, code};
    if (setsockopt(g_s, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) != 0) die("filter");
    remember(g_s);
}

static void raw_setup(void) {
    g_s = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
    if (g_s < 0) die("raw socket");
    remember(g_s);
}
static void packet_setup(void) {
    g_s = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_ALL));
    if (g_s < 0) die("packet socket");
}
static void netlink_setup(void) {
    g_s = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
    if (g_s < 0) die("netlink socket");
}
static void still_open(void) {
    if (fcntl(g_s, F_GETFD) < 0) fail("the socket is gone");
}

static const struct variant kVariants[] = {
    {"tcp_unbound", tcp_unbound_setup, tcp_unbound_check, NULL},
    {"tcp_bound", tcp_bound_setup, check_same, NULL},
    {"tcp_listen", tcp_listen_setup, listen_check, NULL},
    {"tcp6_listen", tcp6_listen_setup, listen_check, NULL},
    {"udp_bound", udp_bound_setup, udp_check, NULL},
    {"udp_connected", udp_connected_setup, udp_check, NULL},
    {"udp6", udp6_setup, udp_check, NULL},
    {"udp_queued", udp_queued_setup, still_open, NULL},
    {"close_wait", close_wait_setup, close_wait_check, NULL},
    {"filter", filter_setup, still_open, NULL},
    {"raw", raw_setup, still_open, NULL},
    {"packet", packet_setup, still_open, NULL},
    {"netlink", netlink_setup, still_open, NULL},
};

PROBE_MAIN(kVariants)
