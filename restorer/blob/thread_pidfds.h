/* thpidfd: the pidfds of threads (PIDFD_THREAD, Linux 6.9) the task held,
 * made by the main thread once the threads exist (a tree's threads are made
 * by the blobs, after every fd of the tree: state/pidfd.h). Stage 1 left a
 * placeholder at each fd so later fds kept their numbers; here each becomes
 * pidfd_open(tid, flags), dup3'd over it with its close-on-exec flag.
 *
 * A thread of another member: the placeholder is the read end of that
 * member's pipe, whose write end only that member's blob holds (every other
 * copy was closed in stage 1 or at the root's clone). It closes it right
 * after its threads are made, before it waits on any pipe itself, so nothing
 * waits in a cycle; end of file means its threads exist, or it failed (then
 * pidfd_open finds no such thread, and the tree is killed as for any failure).
 *
 * thpidfd2: a description several members hold (a fork after the
 * pidfd_open) is made by the first of them in image order, which sends it,
 * once made, on a channel whose receiving end is each later holder's
 * placeholder; a later holder receives it there (end of file: the maker
 * failed) and dup3s it over. A maker receives only from earlier members and
 * waits only on pipes every blob closes first, so nothing waits in a cycle.
 * Then the epoll watches of these fds, which stage 1 left out.
 * Included by blob.c. */
#ifndef CRFS_BLOB_THREAD_PIDFDS_H
#define CRFS_BLOB_THREAD_PIDFDS_H

#define ESRCH 3
#define ENOENT 2
#define EPIPE_ERR 32

struct tp_iovec {
    void* base;
    uint64_t len;
};
struct tp_msghdr {
    void* name;
    uint32_t namelen;
    struct tp_iovec* iov;
    uint64_t iovlen;
    void* control;
    uint64_t controllen;
    int32_t flags;
};
struct tp_cmsg { /* one fd: struct cmsghdr and its int */
    uint64_t len;
    int32_t level, type;
    int32_t fd, pad;
};
#define TP_SOL_SOCKET 1
#define TP_SCM_RIGHTS 1
#define TP_MSG_NOSIGNAL 0x4000
#define TP_MSG_CMSG_CLOEXEC 0x40000000
#define TP_EPOLL_CTL_ADD 1

/* One message on `chan`: a byte and `*fd` (send: fd >= 0) or into *fd. */
static long tp_msg(int chan, int* fd, int send) {
    char c = 'p';
    struct tp_iovec iov = {&c, 1};
    struct tp_cmsg cm = {16 + 4, TP_SOL_SOCKET, TP_SCM_RIGHTS, send ? *fd : -1, 0};
    struct tp_msghdr m = {0, 0, &iov, 1, &cm, sizeof cm, 0};
    long ret;
    if (send) {
        m.controllen = 16 + 8; /* CMSG_SPACE(sizeof(int)) */
        do ret = sys3(NR_sendmsg, chan, &m, TP_MSG_NOSIGNAL);
        while (ret == -4 /* EINTR */);
        return ret;
    }
    do ret = sys3(NR_recvmsg, chan, &m, TP_MSG_CMSG_CLOEXEC);
    while (ret == -4);
    if (is_err(ret)) return ret;
    if (ret == 0 || m.controllen < 16 + 4 || cm.level != TP_SOL_SOCKET ||
        cm.type != TP_SCM_RIGHTS || cm.fd < 0)
        return -EPIPE_ERR; /* end of file: the maker failed */
    *fd = cm.fd;
    return 0;
}

static void make_thread_pidfds(const struct crfs_restorer_args* a) {
    if (a->has_threads_made) sys1(NR_close, a->threads_made_fd); /* our threads exist */
    const struct crfs_ra_thread_pidfd* p = (const struct crfs_ra_thread_pidfd*)a->thread_pidfds;
    for (uint64_t i = 0; i < a->nr_thread_pidfds; ++i) {
        long ret;
        int fd, step = CRFS_RA_STEP_THREAD_PIDFD;
        if (p[i].epfd >= 0) { /* a watch, once its fd is made (the list's end) */
            struct {
                uint32_t events;
                uint32_t data_lo, data_hi; /* struct epoll_event is packed on x86-64 */
            } __attribute__((packed))
            ev = {p[i].events, (uint32_t)p[i].data, (uint32_t)(p[i].data >> 32)};
            ret = sys4(NR_epoll_ctl, p[i].epfd, TP_EPOLL_CTL_ADD, p[i].fd, &ev);
            if (is_err(ret)) die(a, CRFS_RA_STEP_THREAD_PIDFD_WATCH, ret, (uint64_t)p[i].fd);
            continue;
        }
        if (p[i].dup_of >= 0) {
            ret = sys3(NR_dup3, p[i].dup_of, p[i].fd, p[i].cloexec ? O_CLOEXEC : 0);
            if (is_err(ret)) die(a, step, ret, (uint64_t)p[i].fd);
            continue;
        }
        if (p[i].recv) { /* made by an earlier member: on the placeholder */
            ret = tp_msg(p[i].fd, &fd, 0);
            if (is_err(ret)) die(a, CRFS_RA_STEP_THREAD_PIDFD_RECV, ret, (uint64_t)p[i].fd);
        } else {
            if (p[i].wait) { /* until end of file: no one writes on it */
                char c;
                do ret = sys3(NR_read, p[i].fd, &c, 1);
                while (ret > 0 || ret == -4 /* EINTR */);
                if (is_err(ret)) die(a, CRFS_RA_STEP_THREAD_PIDFD_WAIT, ret, (uint64_t)p[i].fd);
            }
            ret = sys2(NR_pidfd_open, p[i].tid, p[i].flags);
            /* No such thread after the wait: its member failed before making it. */
            if (is_err(ret) && p[i].wait && (ret == -ESRCH || ret == -ENOENT))
                step = CRFS_RA_STEP_THREAD_PIDFD_WAIT;
            if (is_err(ret)) die(a, step, ret, (uint64_t)p[i].fd);
            fd = (int)ret;
        }
        ret = sys3(NR_dup3, fd, p[i].fd, p[i].cloexec ? O_CLOEXEC : 0);
        sys1(NR_close, fd);
        if (is_err(ret)) die(a, step, ret, (uint64_t)p[i].fd);
        if (p[i].give < 0) continue;
        for (uint32_t g = 0; g < p[i].gives; ++g) { /* to each later holder */
            fd = p[i].fd;
            ret = tp_msg(p[i].give, &fd, 1);
            if (is_err(ret)) die(a, CRFS_RA_STEP_THREAD_PIDFD_GIVE, ret, (uint64_t)p[i].fd);
        }
        sys1(NR_close, p[i].give);
    }
}

#endif
