/* Workload: a single-process echo server for the network tests.
 *
 *   net_echo DIR MODE      MODE: tcp4 | any4 | tcp6 | dual | udp4
 *
 * tcp*: listens on 127.0.0.1 (tcp4), 0.0.0.0 (any4), ::1 (tcp6) or :: with
 * IPV6_V6ONLY 0 (dual), port chosen by the kernel, with options the restore must keep
 * (SO_REUSEADDR, SO_KEEPALIVE, TCP_NODELAY, TCP_KEEPIDLE 77, TCP_KEEPINTVL 11,
 * TCP_KEEPCNT 5, TCP_DEFER_ACCEPT 3, SO_RCVBUF and SO_SNDBUF 32 KiB, backlog 7);
 * echoes every byte of every connection back, in one poll loop, never
 * blocking: a client that does not read fills the queues both ways.
 * udp4: a UDP socket on 127.0.0.1 that answers each datagram with the same.
 *
 * A connection that fails (read or write) writes its errno to DIR/conn_error.
 * Writes DIR/port, then DIR/ready. On SIGTERM it checks that the listening
 * socket still has its address and options and writes "PASS" or "FAIL: why"
 * to DIR/result. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wl_files.h"

#define MAXC 16

static volatile sig_atomic_t got_term;
static char dir[3000];
static const char* mode;

static void on_term(int sig) {
    (void)sig;
    got_term = 1;
}

static void put(const char* name, const char* text) {
    wl_put(dir, name, text);
}

static void setint(int s, int level, int name, int v) {
    if (setsockopt(s, level, name, &v, sizeof v) != 0) {
        perror("setsockopt");
        exit(2);
    }
}

static int getint(int s, int level, int name) {
    int v = -1;
    socklen_t len = sizeof v;
    getsockopt(s, level, name, &v, &len);
    return v;
}

struct want {
    int level, name, value;
    const char* text;
};

static const struct want tcp_wants[] = {
    {SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR"},
    {SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE"},
    {IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY"},
    {IPPROTO_TCP, TCP_KEEPIDLE, 77, "TCP_KEEPIDLE"},
    {IPPROTO_TCP, TCP_KEEPINTVL, 11, "TCP_KEEPINTVL"},
    {IPPROTO_TCP, TCP_KEEPCNT, 5, "TCP_KEEPCNT"},
    {IPPROTO_TCP, TCP_DEFER_ACCEPT, 3, "TCP_DEFER_ACCEPT"},
};

int main(int argc, char** argv) {
    if (argc != 3) return 2;
    snprintf(dir, sizeof dir, "%s", argv[1]);
    mode = argv[2];
    int udp = !strcmp(mode, "udp4"), v6 = !strcmp(mode, "tcp6") || !strcmp(mode, "dual");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int l = socket(v6 ? AF_INET6 : AF_INET, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK, 0);
    if (l < 0) return 2;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t sl;
    if (v6) {
        struct sockaddr_in6* a = (struct sockaddr_in6*)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = strcmp(mode, "dual") ? in6addr_loopback : in6addr_any;
        setint(l, IPPROTO_IPV6, IPV6_V6ONLY, 0);
        sl = sizeof *a;
    } else {
        struct sockaddr_in* a = (struct sockaddr_in*)&ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(strcmp(mode, "any4") ? INADDR_LOOPBACK : INADDR_ANY);
        sl = sizeof *a;
    }
    int nwant = 0;
    if (!udp) {
        nwant = sizeof tcp_wants / sizeof tcp_wants[0];
        for (int i = 0; i < nwant; ++i)
            setint(l, tcp_wants[i].level, tcp_wants[i].name, tcp_wants[i].value);
        setint(l, SOL_SOCKET, SO_RCVBUF, 32768);
        setint(l, SOL_SOCKET, SO_SNDBUF, 32768);
    }
    if (bind(l, (struct sockaddr*)&ss, sl) != 0) return 2;
    if (!udp && listen(l, 7) != 0) return 2;
    /* Binding a specific IPv6 address sets IPV6_V6ONLY: what bind left must stay. */
    int v6only = v6 ? getint(l, IPPROTO_IPV6, IPV6_V6ONLY) : 0;
    struct sockaddr_storage bound;
    socklen_t bl = sizeof bound;
    getsockname(l, (struct sockaddr*)&bound, &bl);
    int port = ntohs(v6 ? ((struct sockaddr_in6*)&bound)->sin6_port
                        : ((struct sockaddr_in*)&bound)->sin_port);
    char text[64];
    snprintf(text, sizeof text, "%d\n", port);
    put("port", text);
    put("ready", "ready\n");

    int conn[MAXC];
    char pend[MAXC][65536];
    size_t plen[MAXC], poff[MAXC];
    int n = 0;
    while (!got_term) {
        struct pollfd p[MAXC + 1];
        p[0].fd = l;
        p[0].events = POLLIN;
        for (int i = 0; i < n; ++i) {
            p[i + 1].fd = conn[i];
            p[i + 1].events = plen[i] > poff[i] ? POLLOUT : POLLIN;
        }
        if (poll(p, (nfds_t)n + 1, -1) < 0) continue;
        if (udp && (p[0].revents & POLLIN)) {
            char buf[65536];
            struct sockaddr_storage from;
            socklen_t fl = sizeof from;
            ssize_t r = recvfrom(l, buf, sizeof buf, 0, (struct sockaddr*)&from, &fl);
            if (r >= 0) sendto(l, buf, (size_t)r, 0, (struct sockaddr*)&from, fl);
            continue;
        }
        if ((p[0].revents & POLLIN) && n < MAXC) {
            int c = accept4(l, NULL, NULL, SOCK_NONBLOCK);
            if (c >= 0) {
                conn[n] = c;
                plen[n] = poff[n] = 0;
                ++n;
            }
        }
        for (int i = 0; i < n; ++i) {
            short ev = p[i + 1].revents;
            if (!ev) continue;
            ssize_t r;
            if (plen[i] > poff[i]) {
                r = write(conn[i], pend[i] + poff[i], plen[i] - poff[i]);
                if (r > 0) poff[i] += (size_t)r;
            } else {
                r = read(conn[i], pend[i], sizeof pend[i]);
                if (r > 0) plen[i] = (size_t)r, poff[i] = 0;
            }
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                if (r < 0) {
                    char e[16];
                    snprintf(e, sizeof e, "%d\n", errno);
                    put("conn_error", e);
                }
                close(conn[i]);
                conn[i] = conn[n - 1];
                memcpy(pend[i], pend[n - 1], plen[n - 1]);
                plen[i] = plen[n - 1];
                poff[i] = poff[n - 1];
                --n;
                --i;
            }
        }
    }

    char why[512] = "";
    struct sockaddr_storage now;
    socklen_t nl = sizeof now;
    if (getsockname(l, (struct sockaddr*)&now, &nl) != 0 || nl != bl || memcmp(&now, &bound, bl))
        snprintf(why, sizeof why, "the socket's address changed");
    for (int i = 0; i < nwant && !why[0]; ++i)
        if (getint(l, tcp_wants[i].level, tcp_wants[i].name) != tcp_wants[i].value)
            snprintf(why, sizeof why, "%s is %d, not %d", tcp_wants[i].text,
                     getint(l, tcp_wants[i].level, tcp_wants[i].name), tcp_wants[i].value);
    if (!udp && !why[0] && getint(l, SOL_SOCKET, SO_RCVBUF) != 65536)
        snprintf(why, sizeof why, "SO_RCVBUF is %d", getint(l, SOL_SOCKET, SO_RCVBUF));
    if (!udp && !why[0] && getint(l, SOL_SOCKET, SO_ACCEPTCONN) != 1)
        snprintf(why, sizeof why, "not listening");
    if (v6 && !why[0] && getint(l, IPPROTO_IPV6, IPV6_V6ONLY) != v6only)
        snprintf(why, sizeof why, "IPV6_V6ONLY is %d, not %d", getint(l, IPPROTO_IPV6, IPV6_V6ONLY),
                 v6only);
    if (why[0]) {
        char out[600];
        snprintf(out, sizeof out, "FAIL: %s\n", why);
        put("result", out);
    } else {
        put("result", "PASS\n");
    }
    return 0;
}
