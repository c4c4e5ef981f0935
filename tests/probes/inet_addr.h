/* The inet probes' addresses (net.c, net_b.c): port 0 on the IPv4 loopback,
 * or on the IPv6 loopback or any address. */
#ifndef CRFS_PROBE_INET_ADDR_H
#define CRFS_PROBE_INET_ADDR_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

static socklen_t probe_addr(int family, int v6_any, struct sockaddr_storage* ss) {
    memset(ss, 0, sizeof *ss);
    if (family == AF_INET6) {
        struct sockaddr_in6* a = (struct sockaddr_in6*)ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = v6_any ? in6addr_any : in6addr_loopback;
        return sizeof *a;
    }
    struct sockaddr_in* a = (struct sockaddr_in*)ss;
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sizeof *a;
}

#endif
