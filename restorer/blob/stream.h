/* stream: the pages of a streamed restore (included by blob.c, after
 * fill_uffd.h). The slot that receives the image starts the restore at the
 * image's first pages record (fs/slot_stream.h): the task is made and its
 * VMAs mapped before any page arrives. Here every private anonymous VMA is
 * registered on a userfaultfd of the task's own (UFFD_USER_MODE_ONLY, as
 * fill_uffd.h), the blob reports ready with the fd's number (step 280, err
 * 0) and waits for one byte on stream_go_fd. Meanwhile the daemon takes the
 * fd (pidfd_getfd) and copies each page run into the task with UFFDIO_COPY
 * as its FUSE write arrives (other runs: process_vm_writev), and sends the
 * byte only once the whole image arrived and verified; meanwhile the blob
 * gives those VMAs their protections. End of file on the
 * go (the daemon gave up, or is gone) ends the task before any of the
 * image's own code runs (a tree's process is held until the daemon kills
 * the tree: end_task). A tree's processes each wait here, each with its own
 * userfaultfd and go (streamtree, state/tree_restore.h tree_stream_pages).
 * After the go the ranges are unregistered (no fault is ever served: a page
 * the image does not hold is a zero page again). */

/* Registers (reg) or unregisters the private anonymous VMAs, one call per
 * run of adjacent ones (the mappings map_from joined, or neighbours mapped
 * apart): a call per area would split the one mapping and merge it back for
 * each of 30,000 areas. */
static void stream_ranges(const struct crfs_restorer_args* a, long uffd, int reg) {
    const struct crfs_ra_vma* v = (const struct crfs_ra_vma*)a->vmas;
    for (uint64_t i = 0; i < a->nr_vmas;) {
        if (!joins_neighbours(&v[i])) {
            ++i;
            continue;
        }
        uint64_t start = v[i].start, end = v[i].end;
        for (++i; i < a->nr_vmas && v[i].start == end && joins_neighbours(&v[i]); ++i)
            end = v[i].end;
        long r;
        if (reg) {
            /* The mapping's anon_vma, made now by one page written and
             * dropped (before the registration, which would hold the fault):
             * the splits below then share it with every area, as they do
             * when the pages come first, and the daemon's copies do not make
             * one per area. Best effort: without it only slower. */
            if (!is_err(sys3(NR_madvise, start, 4096, 23 /* MADV_POPULATE_WRITE */))) {
                r = sys3(NR_madvise, start, 4096, 4 /* MADV_DONTNEED */);
                if (is_err(r)) die(a, CRFS_RA_STEP_STREAM_READY, r, start);
            }
            struct {
                struct uffd_range_ range;
                uint64_t mode, ioctls;
            } rg = {{start, end - start}, UFFDIO_REGISTER_MODE_MISSING, 0};
            r = sys3(NR_ioctl, uffd, UFFDIO_REGISTER_, &rg);
            if (is_err(r)) die(a, CRFS_RA_STEP_STREAM_READY, r, start);
        } else {
            struct uffd_range_ range = {start, end - start};
            r = sys3(NR_ioctl, uffd, UFFDIO_UNREGISTER_, &range);
            if (is_err(r)) die(a, CRFS_RA_STEP_STREAM_GO, r, start);
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
    if (sys3(NR_write, a->status_fd, &ready, sizeof ready) != (long)sizeof ready) end_task(a);
    /* While the daemon copies the pages in: the mprotects of the registered
     * VMAs, which split the one mapping into the image's areas (a third of
     * a 30,000-area restore). A page copied into an area already protected
     * gets the area's protection from the kernel (UFFDIO_COPY maps it with
     * the VMA's vm_page_prot, writable only in a writable VMA), as the
     * mprotect after it would have given it; each copy lies inside one area
     * (fs/slot_stream.cc), so no split cuts one. The other mappings are
     * written with process_vm_writev, which a read-only VMA refuses: they
     * are protected after the go. A failure is reported after the go, once
     * the daemon no longer copies into this task. */
    uint64_t protect_at = 0;
    long protect_err = a->fault_step == CRFS_RA_STEP_PROTECT /* CRFS_RESTORE_FAULT (tests) */
                           ? -ECANCELED
                           : protect_anon_vmas(a, &protect_at);
    char go = 0;
    for (;;) {
        r = sys3(NR_read, a->stream_go_fd, &go, 1);
        if (r != -4 /* EINTR */) break;
    }
    if (r != 1 || go != 'G') end_task(a); /* the daemon gave up */
    sys1(NR_close, a->stream_go_fd);
    stream_ranges(a, uffd, 0);
    sys1(NR_close, uffd);
    if (protect_err) die(a, CRFS_RA_STEP_PROTECT, protect_err, protect_at);
}
