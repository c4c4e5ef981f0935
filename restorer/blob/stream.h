/* stream: the pages of a streamed restore (included by blob.c, after
 * fill_uffd.h). The slot that receives the image starts the restore at the
 * image's first pages record (fs/slot_stream.h): the task is made and its
 * VMAs mapped before any page arrives. Here every private anonymous VMA is
 * registered on a userfaultfd of the task's own (UFFD_USER_MODE_ONLY, as
 * fill_uffd.h), the blob reports ready with the fd's number (step 280, err
 * 0) and waits for one byte on stream_go_fd. Meanwhile the daemon takes the
 * fd (pidfd_getfd) and copies each page run into the task with UFFDIO_COPY
 * as its FUSE write arrives (other runs: process_vm_writev), and sends the
 * byte only once the whole image arrived and verified. End of file on the
 * go (the daemon gave up, or is gone) ends the task before any of the
 * image's own code runs. After the go the ranges are unregistered (no fault
 * is ever served: a page the image does not hold is a zero page again). */

static void stream_ranges(const struct crfs_restorer_args* a, long uffd, int reg) {
    const struct crfs_ra_vma* v = (const struct crfs_ra_vma*)a->vmas;
    for (uint64_t i = 0; i < a->nr_vmas; ++i) {
        if (!joins_neighbours(&v[i])) continue;
        long r;
        if (reg) {
            struct {
                struct uffd_range_ range;
                uint64_t mode, ioctls;
            } rg = {{v[i].start, v[i].end - v[i].start}, UFFDIO_REGISTER_MODE_MISSING, 0};
            r = sys3(NR_ioctl, uffd, UFFDIO_REGISTER_, &rg);
            if (is_err(r)) die(a, CRFS_RA_STEP_STREAM_READY, r, v[i].start);
        } else {
            struct uffd_range_ range = {v[i].start, v[i].end - v[i].start};
            r = sys3(NR_ioctl, uffd, UFFDIO_UNREGISTER_, &range);
            if (is_err(r)) die(a, CRFS_RA_STEP_STREAM_GO, r, v[i].start);
        }
    }
}

static void stream_wait(const struct crfs_restorer_args* a) {
    long uffd = sys1(NR_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
    if (is_err(uffd)) die(a, CRFS_RA_STEP_STREAM_READY, uffd, 0);
    struct {
        uint64_t api, features, ioctls;
    } api = {0xAA, 0, 0};
    long r = sys3(NR_ioctl, uffd, UFFDIO_API_, &api);
    if (is_err(r)) die(a, CRFS_RA_STEP_STREAM_READY, r, 0);
    stream_ranges(a, uffd, 1);
    struct crfs_ra_report ready;
    ready.tag = CRFS_RA_REPORT_TAG;
    ready.err = 0;
    ready.step = CRFS_RA_STEP_STREAM_READY;
    ready.reserved = 0;
    ready.arg = (uint64_t)uffd;
    if (sys3(NR_write, a->status_fd, &ready, sizeof ready) != (long)sizeof ready)
        sys1(NR_exit_group, 1);
    char go = 0;
    for (;;) {
        r = sys3(NR_read, a->stream_go_fd, &go, 1);
        if (r != -4 /* EINTR */) break;
    }
    if (r != 1 || go != 'G') sys1(NR_exit_group, 1); /* the daemon gave up */
    sys1(NR_close, a->stream_go_fd);
    stream_ranges(a, uffd, 0);
    sys1(NR_close, uffd);
}
