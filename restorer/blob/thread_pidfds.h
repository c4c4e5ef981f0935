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
 * Included by blob.c. */
#ifndef CRFS_BLOB_THREAD_PIDFDS_H
#define CRFS_BLOB_THREAD_PIDFDS_H

#define ESRCH 3
#define ENOENT 2

static void make_thread_pidfds(const struct crfs_restorer_args* a) {
    if (a->has_threads_made) sys1(NR_close, a->threads_made_fd); /* our threads exist */
    const struct crfs_ra_thread_pidfd* p = (const struct crfs_ra_thread_pidfd*)a->thread_pidfds;
    for (uint64_t i = 0; i < a->nr_thread_pidfds; ++i) {
        long fd, ret;
        int step = CRFS_RA_STEP_THREAD_PIDFD;
        if (p[i].dup_of >= 0) {
            ret = sys3(NR_dup3, p[i].dup_of, p[i].fd, p[i].cloexec ? O_CLOEXEC : 0);
            if (is_err(ret)) die(a, step, ret, (uint64_t)p[i].fd);
            continue;
        }
        if (p[i].wait) { /* until end of file: no one writes on it */
            char c;
            do ret = sys3(NR_read, p[i].fd, &c, 1);
            while (ret > 0 || ret == -4 /* EINTR */);
            if (is_err(ret)) die(a, CRFS_RA_STEP_THREAD_PIDFD_WAIT, ret, (uint64_t)p[i].fd);
        }
        fd = sys2(NR_pidfd_open, p[i].tid, p[i].flags);
        /* No such thread after the wait: its member failed before making it. */
        if (is_err(fd) && p[i].wait && (fd == -ESRCH || fd == -ENOENT))
            step = CRFS_RA_STEP_THREAD_PIDFD_WAIT;
        if (is_err(fd)) die(a, step, fd, (uint64_t)p[i].fd);
        ret = sys3(NR_dup3, fd, p[i].fd, p[i].cloexec ? O_CLOEXEC : 0);
        sys1(NR_close, fd);
        if (is_err(ret)) die(a, step, ret, (uint64_t)p[i].fd);
    }
}

#endif
