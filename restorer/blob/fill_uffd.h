/* restore: filling private anonymous memory with UFFDIO_COPY (included by
 * blob.c, after fill_part). A slot keeps every page run's data page-aligned
 * in its page store (common/image_spool.h); the blob maps a window of that
 * store read-only into its own area and copies each larger run with
 * UFFDIO_COPY into the task's still-empty pages: the kernel allocates each
 * page and copies into it without zeroing it first (a page fault, or
 * MADV_POPULATE_WRITE, zeroes the page and then pread copies over it).
 *
 * The task's own userfaultfd, UFFD_USER_MODE_ONLY (which any user may make
 * when vm.unprivileged_userfaultfd is 0), registered on one run at a time
 * and unregistered before anything else touches it. Anything it cannot do
 * (no userfaultfd, a page already present, a window that does not map)
 * leaves the run, or its rest, to pread: the same bytes either way. */

#define UFFD_USER_MODE_ONLY 1
#define UFFDIO_API_ 0xc018aa3fUL
#define UFFDIO_REGISTER_ 0xc020aa00UL
#define UFFDIO_UNREGISTER_ 0x8010aa01UL
#define UFFDIO_COPY_ 0xc028aa03UL
#define UFFDIO_REGISTER_MODE_MISSING 1
#define MAP_POPULATE 0x8000
#define EAGAIN 11
#define UFFD_MIN_PAGES 16                  /* smaller runs: the batched preadv */
#define UFFD_WINDOW_ALIGN (16ull << 20)    /* the largest pages record */

struct uffd_fill {
    long fd;              /* -1: pread only */
    uint64_t base;        /* page store offset mapped at a->window, or ~0: none */
};

struct uffd_range_ {
    uint64_t start, len;
};

/* Whether run p is one the UFFDIO_COPY path takes: large enough, and inside
 * one private anonymous mapping (the VMAs are in address order). */
static int uffd_fill_takes(const struct crfs_restorer_args* a, const struct uffd_fill* uf,
                           const struct crfs_ra_pages* p) {
    if (uf->fd < 0 || p->nr_pages < UFFD_MIN_PAGES) return 0;
    const struct crfs_ra_vma* v = (const struct crfs_ra_vma*)a->vmas;
    uint64_t lo = 0, hi = a->nr_vmas; /* the last VMA starting at or below vaddr */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (v[mid].start <= p->vaddr)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0) return 0;
    const struct crfs_ra_vma* m = &v[lo - 1];
    return joins_neighbours(m) && p->vaddr + p->nr_pages * 4096 <= m->end;
}

static void uffd_fill_open(const struct crfs_restorer_args* a, struct uffd_fill* uf) {
    uf->fd = -1;
    uf->base = ~0ull;
    if (!a->window_len || !a->window) return;
    long fd = sys1(NR_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    if (is_err(fd)) return;
    struct {
        uint64_t api, features, ioctls;
    } api = {0xAA, 0, 0};
    if (is_err(sys3(NR_ioctl, fd, UFFDIO_API_, &api))) {
        sys1(NR_close, fd);
        return;
    }
    uf->fd = fd;
}

static void uffd_fill_close(const struct crfs_restorer_args* a, struct uffd_fill* uf) {
    if (uf->base != ~0ull) sys2(NR_munmap, a->window, a->window_len);
    if (uf->fd >= 0) sys1(NR_close, uf->fd);
    uf->fd = -1;
}

/* Fills run p with UFFDIO_COPY (the rest with pread if the copy stops
 * early); 0: not taken, the caller reads it. */
static int uffd_fill_run(const struct crfs_restorer_args* a, struct uffd_fill* uf,
                         const struct crfs_ra_pages* p) {
    if (!uffd_fill_takes(a, uf, p)) return 0;
    uint64_t len = p->nr_pages * 4096;
    if (uf->base == ~0ull || p->file_off < uf->base ||
        p->file_off + len > uf->base + a->window_len) {
        uint64_t base = p->file_off & ~(UFFD_WINDOW_ALIGN - 1);
        if (p->file_off + len > base + a->window_len) return 0;
        long r = sys6(NR_mmap, (long)a->window, (long)a->window_len, PROT_READ,
                      MAP_SHARED | MAP_FIXED | MAP_POPULATE, a->pages_fd, (long)base);
        if (is_err(r)) {
            /* The window's range may now be unmapped: nothing is there to keep. */
            uf->base = ~0ull;
            return 0;
        }
        uf->base = base;
    }
    struct {
        struct uffd_range_ range;
        uint64_t mode, ioctls;
    } reg = {{p->vaddr, len}, UFFDIO_REGISTER_MODE_MISSING, 0};
    if (is_err(sys3(NR_ioctl, uf->fd, UFFDIO_REGISTER_, &reg))) return 0;
    uint64_t done = 0;
    for (int tries = 0; done < len && tries < 64; ++tries) {
        struct {
            uint64_t dst, src, len, mode;
            int64_t copy;
        } c = {p->vaddr + done, a->window + (p->file_off - uf->base) + done, len - done, 0, 0};
        long r = sys3(NR_ioctl, uf->fd, UFFDIO_COPY_, &c);
        if (c.copy > 0) done += (uint64_t)c.copy;
        if (r == 0 || (r != -EAGAIN && r != -4 /* EINTR */)) break;
    }
    /* Nothing may touch a registered range (no one serves its faults). */
    struct uffd_range_ range = {p->vaddr, len};
    long r = sys3(NR_ioctl, uf->fd, UFFDIO_UNREGISTER_, &range);
    if (is_err(r)) die(a, CRFS_RA_STEP_FILL_PAGES, r, p->vaddr);
    if (done < len) fill_part(a, p->vaddr + done, len - done, p->file_off + done);
    return 1;
}
