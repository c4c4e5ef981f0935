/* restore: filling private anonymous memory with UFFDIO_COPY (included by
 * blob.c, after fill_part). A slot keeps every page run's data page-aligned
 * in its page store (common/image_spool.h); the blob maps a window of that
 * store read-only into its own area and copies each larger run, or each
 * group of small runs that follow one another in the task and in the store
 * (thousands of one-page areas), with UFFDIO_COPY into the task's
 * still-empty pages: the kernel allocates each page and copies into it
 * without zeroing it first (a page fault, or MADV_POPULATE_WRITE, zeroes the
 * page and then pread copies over it).
 *
 * The task's own userfaultfd, UFFD_USER_MODE_ONLY (which any user may make
 * when vm.unprivileged_userfaultfd is 0), registered on one run or group at
 * a time and unregistered before anything else touches it. Anything it
 * cannot do (no userfaultfd, a page already present, a window that does not
 * map) leaves the run, or its rest, to pread: the same bytes either way. */

#define UFFD_USER_MODE_ONLY 1
#define UFFDIO_API_ 0xc018aa3fUL
#define UFFDIO_REGISTER_ 0xc020aa00UL
#define UFFDIO_UNREGISTER_ 0x8010aa01UL
#define UFFDIO_COPY_ 0xc028aa03UL
#define UFFDIO_REGISTER_MODE_MISSING 1
#define EAGAIN 11
#define UFFD_MIN_PAGES 16               /* smaller runs: the batched preadv */
#define UFFD_WINDOW_ALIGN (16ull << 20) /* the largest pages record */

struct uffd_fill {
    long fd;       /* -1: pread only */
    uint64_t base; /* page store offset mapped at a->window, or ~0: none */
    /* treecost: [lo, hi) of the store holds this task's runs; a tree's
     * members share one store, so a window holds other members' pages too. */
    uint64_t lo, hi;
};

struct uffd_range_ {
    uint64_t start, len;
};

/* Whether run p lies in a private anonymous mapping (mapped read-write and
 * joined with its like by map_from): the decoder keeps each run inside one
 * VMA, and the VMAs are in address order. */
static int uffd_anon_run(const struct crfs_restorer_args* a, const struct crfs_ra_pages* p) {
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

/* The runs from p[i] on that follow one another both in the task and in the
 * page store (the store keeps runs in image order, packed: 30,000 one-page
 * areas are one stretch), each in a private anonymous mapping, as one run
 * *g (0 pages if p[i] is not such a run), within one window of the store and
 * at most `max_pages` long. Its runs leave no hole, so one UFFDIO_REGISTER
 * covers it, across the VMAs it spans. Returns the first run not in it. */
static uint64_t uffd_group(const struct crfs_restorer_args* a, const struct uffd_fill* uf,
                           const struct crfs_ra_pages* p, uint64_t i, uint64_t n,
                           uint64_t max_pages, struct crfs_ra_pages* g) {
    *g = p[i];
    if (!uffd_anon_run(a, &p[i])) {
        g->nr_pages = 0;
        return i + 1;
    }
    uint64_t first_end = p[i].file_off + p[i].nr_pages * 4096;
    uint64_t base =
        uf->base != ~0ull && p[i].file_off >= uf->base && first_end <= uf->base + a->window_len
            ? uf->base
            : p[i].file_off & ~(UFFD_WINDOW_ALIGN - 1);
    uint64_t j = i + 1;
    for (; j < n && g->nr_pages < max_pages && !a->fill_by_run; ++j) {
        uint64_t len = g->nr_pages * 4096;
        if (p[j].vaddr != g->vaddr + len || p[j].file_off != g->file_off + len ||
            p[j].file_off + p[j].nr_pages * 4096 > base + a->window_len || !uffd_anon_run(a, &p[j]))
            break;
        g->nr_pages += p[j].nr_pages;
    }
    return j;
}

/* Whether the group starting at run i is one the UFFDIO_COPY path takes:
 * large enough (smaller ones: the batched preadv). */
static int uffd_fill_takes(const struct crfs_restorer_args* a, const struct uffd_fill* uf,
                           const struct crfs_ra_pages* p, uint64_t i, uint64_t n) {
    if (uf->fd < 0) return 0;
    struct crfs_ra_pages g;
    uffd_group(a, uf, p, i, n, UFFD_MIN_PAGES, &g);
    return g.nr_pages >= UFFD_MIN_PAGES;
}

static void uffd_fill_open(const struct crfs_restorer_args* a, struct uffd_fill* uf) {
    uf->fd = -1;
    uf->base = ~0ull;
    uf->lo = ~0ull;
    uf->hi = 0;
    if (!a->window_len || !a->window) return;
    const struct crfs_ra_pages* p = (const struct crfs_ra_pages*)a->pages;
    for (uint64_t i = 0; i < a->nr_pages; ++i) {
        if (p[i].file_off < uf->lo) uf->lo = p[i].file_off;
        if (p[i].file_off + p[i].nr_pages * 4096 > uf->hi)
            uf->hi = p[i].file_off + p[i].nr_pages * 4096;
    }
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

/* Fills the group of runs starting at p[i] (uffd_group) with UFFDIO_COPY
 * (the rest with pread if the copy stops early); returns the index of the
 * first run it did not fill: i when not taken, the caller reads it. */
static uint64_t uffd_fill_run(const struct crfs_restorer_args* a, struct uffd_fill* uf,
                              const struct crfs_ra_pages* runs, uint64_t i, uint64_t n) {
    if (!uffd_fill_takes(a, uf, runs, i, n)) return i;
    struct crfs_ra_pages group;
    uint64_t next = uffd_group(a, uf, runs, i, n, ~0ull, &group);
    const struct crfs_ra_pages* p = &group;
    uint64_t len = p->nr_pages * 4096;
    if (uf->base == ~0ull || p->file_off < uf->base ||
        p->file_off + len > uf->base + a->window_len) {
        uint64_t base = p->file_off & ~(UFFD_WINDOW_ALIGN - 1);
        if (p->file_off + len > base + a->window_len) return i;
        long r = sys6(NR_mmap, (long)a->window, (long)a->window_len, PROT_READ,
                      MAP_SHARED | MAP_FIXED, a->pages_fd, (long)base);
        if (is_err(r)) {
            /* The window's range may now be unmapped: nothing is there to keep. */
            uf->base = ~0ull;
            return i;
        }
        uf->base = base;
        /* Populated in one call, not one fault per page inside the copy; only
         * this task's part of the window (treecost: a 1 MiB member of a tree
         * populated, and unmapped again, the whole 32 MiB window of others'
         * pages). Best effort: without MADV_POPULATE_READ the copy faults. */
        uint64_t from = uf->lo > base ? uf->lo : base;
        uint64_t to = uf->hi < base + a->window_len ? uf->hi : base + a->window_len;
        if (from < to)
            sys3(NR_madvise, (long)(a->window + (from - base)), (long)(to - from),
                 22 /* MADV_POPULATE_READ */);
    }
    struct {
        struct uffd_range_ range;
        uint64_t mode, ioctls;
    } reg = {{p->vaddr, len}, UFFDIO_REGISTER_MODE_MISSING, 0};
    if (is_err(sys3(NR_ioctl, uf->fd, UFFDIO_REGISTER_, &reg))) return i;
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
    /* The group is contiguous in the task and in the store: one read. */
    if (done < len) fill_part(a, p->vaddr + done, len - done, p->file_off + done);
    return next;
}
