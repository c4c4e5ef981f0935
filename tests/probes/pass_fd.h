/* Passing one fd between the processes of a probe's tree (unix_tree.c,
 * unix_dgram.c): a child that made a socket gives it to the probe. */
#ifndef CRFS_PASS_FD_H
#define CRFS_PASS_FD_H

#include "probe.h"

#include <sys/socket.h>

/* One fd over a unix socket (SCM_RIGHTS, one byte); pass_fd returns 0 when
 * sent, take_fd the fd received or -1. */
static int pass_fd(int chan, int fd) {
    char byte = 'F';
    struct iovec iov = {&byte, 1};
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(sizeof(int))];
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b};
    struct cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    return sendmsg(chan, &m, 0) == 1 ? 0 : -1;
}
static int take_fd(int chan) {
    char byte;
    struct iovec iov = {&byte, 1};
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b};
    struct cmsghdr* c;
    int fd = -1;
    if (recvmsg(chan, &m, MSG_CMSG_CLOEXEC) != 1 || !(c = CMSG_FIRSTHDR(&m)) ||
        c->cmsg_type != SCM_RIGHTS)
        return -1;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
}

#endif
