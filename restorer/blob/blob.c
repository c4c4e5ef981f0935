/* The restorer blob: freestanding code that turns the cloned task into the
 * image's task. It runs from its own area (code, argument struct, arrays,
 * stack and the prepared signal frame, all chosen by the driver to lie clear
 * of every image VMA) and does, in order:
 *
 *   block signals, drop the inherited rseq and alternate stack
 *   munmap everything except its own area and this kernel's vdso/vvar
 *   mremap vdso/vvar (via a scratch range) to where the image had them
 *   mmap every image VMA, pread its stored pages from the image, mprotect
 *   PR_SET_MM_MAP (mm layout, auxv, exe link)
 *   sigactions, re-queue pending signals, threads, pidfds of threads,
 *   credentials, itimers, fs/gs base
 *   seccomp filters (last: they may forbid what came before)
 *   report 'K' to the driver (the point of no return), rt_sigreturn
 *
 * Any failure before 'K' writes a crfs_ra_report to status_fd and exits the
 * task; the driver turns it into an error and reaps the task. No libc here:
 * every syscall goes through syscall.h; the build rejects undefined symbols.
 *
 *   0 ............ unmap ....... [blob area] ..... unmap ....... TASK_SIZE
 *                  image VMAs land here, around the blob area, never in it
 */
#include <stddef.h>

#include "crfs/restorer_args.h"
#include "syscall.h"

#define PROT_READ 1
#define PROT_WRITE 2
#define MAP_SHARED 1
#define MAP_FIXED 0x10
#define MAP_GROWSDOWN 0x100
#define MREMAP_MAYMOVE 1
#define MREMAP_FIXED 2
#define O_RDONLY 0
#define O_CLOEXEC 02000000
#define O_NONBLOCK 04000
#define S_IFMT 0170000
#define S_IFREG 0100000
#define ESTALE 116
#define EPERM 1
#define PR_SET_DUMPABLE 4
#define PR_SET_KEEPCAPS 8
#define PR_GET_SECUREBITS 27
#define PR_SET_SECUREBITS 28
#define PR_CAPBSET_DROP 24
#define PR_SET_MM 35
#define PR_SET_MM_MAP 14
#define PR_SET_NO_NEW_PRIVS 38
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#define ARCH_SET_GS 0x1001
#define ARCH_SET_FS 0x1002
#define RSEQ_FLAG_UNREGISTER 1
#define SS_DISABLE 2
#define NR_sigaltstack 131
#define EINVAL 22

/* The compiler may emit calls to these for struct copies; they must exist here. */
void* memcpy(void* dst, const void* src, size_t n) {
    unsigned char* d = dst;
    const unsigned char* s = src;
    while (n--) *d++ = *s++;
    return dst;
}
void* memset(void* dst, int c, size_t n) {
    unsigned char* d = dst;
    while (n--) *d++ = (unsigned char)c;
    return dst;
}

/* A task that is not restored ends. A tree's is held until the daemon kills
 * the tree (restorer/child.h), so that every parent outlives its children and
 * the daemon reaps them all; it keeps only its copy of the go pipe, on which
 * no go comes for a failed tree: end of file there (the daemon is gone) ends it. */
static __attribute__((noreturn)) void end_task(const struct crfs_restorer_args* a) {
    if (a->has_go) {
        if (a->go_fd > 0) sys3(NR_close_range, 0, (unsigned)a->go_fd - 1, 0);
        sys3(NR_close_range, (unsigned)a->go_fd + 1, ~0u, 0);
        for (;;) { /* every signal is blocked */
            char c;
            long r = sys3(NR_read, a->go_fd, &c, 1);
            if (r == 0 || (r < 0 && r != -4 /* EINTR */)) break;
        }
    }
    for (;;) sys1(NR_exit_group, 1);
}

static __attribute__((noreturn)) void die(const struct crfs_restorer_args* a, int step, long ret,
                                          uint64_t arg) {
    struct crfs_ra_report r;
    r.tag = CRFS_RA_REPORT_TAG;
    r.reserved = 0;
    r.err = (int32_t)(ret < 0 ? -ret : EINVAL);
    r.step = step;
    r.arg = arg;
    sys3(NR_write, a->status_fd, &r, sizeof r);
    end_task(a);
}

static int is_err(long ret) {
    return ret < 0 && ret > -4096;
}

#define ECANCELED 125
#define EEXIST 17
/* Fault injection: the tests prove every step's failure leaves nothing behind. */
static void fault(const struct crfs_restorer_args* a, int step) {
    if (a->fault_step == step) die(a, step, -ECANCELED, 0);
}

/* Opens a file the image names, never blocking (a FIFO where a file was
 * recorded must not hold the restore): O_NONBLOCK, then the type checked at
 * once. The task already holds the writer's credentials when the writer is
 * not root, so the kernel decides whether it may. */
static long open_regular(const struct crfs_restorer_args* a, uint64_t path, uint32_t flags,
                         int step, uint64_t arg) {
    long fd = sys3(NR_open, path, flags | O_NONBLOCK | O_CLOEXEC, 0);
    if (is_err(fd)) return fd;
    uint8_t st[144]; /* struct stat of x86-64: st_mode is the u32 at offset 24 */
    long ret = sys2(NR_fstat, fd, st);
    if (is_err(ret)) die(a, step, ret, arg);
    uint32_t mode;
    memcpy(&mode, st + 24, 4);
    if ((mode & S_IFMT) != S_IFREG) die(a, step, -ESTALE, arg);
    return fd;
}

/* Whether VMA `v` may share one mmap call with its neighbours: private
 * anonymous memory, which is mapped read-write until protect_vmas (the kernel
 * merges such neighbours anyway), so 30,000 areas cost one call, not 30,000. */
static int joins_neighbours(const struct crfs_ra_vma* v) {
    return v->kind == CRFS_RA_ANON && !(v->mmap_flags & (MAP_SHARED | MAP_GROWSDOWN));
}

/* sysv: attaches the System V segment of VMA i at its address, as the task
 * did (SHM_RDONLY, SHM_EXEC: open_flags), and removes it again when the task
 * had (state/sysv_shm.h). Its content is already in the segment. */
static uint64_t attach_sysv(const struct crfs_restorer_args* a, const struct crfs_ra_vma* v,
                            uint64_t i) {
    long ret = sys3(NR_shmat, (long)v[i].file_off, (long)v[i].start, (long)v[i].open_flags);
    if (is_err(ret)) die(a, CRFS_RA_STEP_SYSV_ATTACH, ret, i);
    if ((uint64_t)ret != v[i].start) die(a, CRFS_RA_STEP_SYSV_ATTACH, -EINVAL, i);
    if (v[i].mmap_flags & CRFS_RA_SYSV_RMID) {
        ret = sys3(NR_shmctl, (long)v[i].file_off, 0 /* IPC_RMID */, 0);
        if (is_err(ret)) die(a, CRFS_RA_STEP_SYSV_RMID, ret, i);
    }
    return v[i].end;
}

/* Maps VMA i, or the run of neighbours it starts (joins_neighbours), and
 * returns the end of what it mapped. */
/* The file the last file VMA was mapped from, kept open while the next VMAs
 * name the same path with the same flags (a library is mapped four or five
 * times in a row: one open, not five). */
struct open_file {
    long fd;
    uint64_t path;
    uint32_t flags;
};

static int same_path(uint64_t a, uint64_t b) {
    const char *x = (const char*)a, *y = (const char*)b;
    while (*x && *x == *y) ++x, ++y;
    return *x == *y;
}

static uint64_t map_from(const struct crfs_restorer_args* a, const struct crfs_ra_vma* v,
                         uint64_t i, struct open_file* f) {
    uint64_t end = v[i].end;
    if (joins_neighbours(&v[i]))
        for (uint64_t j = i + 1; j < a->nr_vmas && v[j].start == end && joins_neighbours(&v[j]) &&
                                 v[j].mmap_flags == v[i].mmap_flags;
             ++j)
            end = v[j].end;
    int shared_file = v[i].kind == CRFS_RA_FILE && (v[i].mmap_flags & MAP_SHARED);
    /* Private and anonymous mappings are filled first, protected after. */
    long prot = shared_file ? v[i].prot : (v[i].prot | PROT_READ | PROT_WRITE);
    if (v[i].kind == CRFS_RA_SYSV) return attach_sysv(a, v, i); /* sysv */
    long fd = -1;
    if (v[i].kind == CRFS_RA_FILE) {
        if (f->fd < 0 || f->flags != v[i].open_flags || !same_path(f->path, v[i].path)) {
            if (f->fd >= 0) sys1(NR_close, f->fd);
            f->fd = -1;
            fd = open_regular(a, v[i].path, v[i].open_flags, CRFS_RA_STEP_FILE_TYPE, i);
            if (is_err(fd)) die(a, CRFS_RA_STEP_OPEN_VMA_FILE, fd, i);
            f->fd = fd, f->path = v[i].path, f->flags = v[i].open_flags;
        }
        fd = f->fd;
    }
    long ret = sys6(NR_mmap, (long)v[i].start, (long)(end - v[i].start), prot,
                    v[i].mmap_flags | MAP_FIXED, fd, (long)v[i].file_off);
    if (is_err(ret)) die(a, CRFS_RA_STEP_MAP_VMA, ret, i);
    if ((uint64_t)ret != v[i].start) die(a, CRFS_RA_STEP_MAP_VMA, -EINVAL, i);
    return end;
}

static void map_vmas(const struct crfs_restorer_args* a) {
    const struct crfs_ra_vma* v = (const struct crfs_ra_vma*)a->vmas;
    uint64_t mapped_to = 0; /* the end of the last mapping made */
    struct open_file f = {-1, 0, 0};
    for (uint64_t i = 0; i < a->nr_vmas; ++i) {
        if (v[i].end > mapped_to) mapped_to = map_from(a, v, i, &f);
        /* Steps per VMA go here: they run for every VMA, joined or not. */
    }
    if (f.fd >= 0) sys1(NR_close, f.fd);
}

struct iovec {
    void* base;
    uint64_t len;
};
#define FILL_IOV 512 /* of IOV_MAX 1024 */
#define FILL_GAP 64  /* record header bytes between two runs' data, read into scratch */
#define POPULATE_MIN_PAGES 16

/* Reads page runs [i, *next) with one preadv where the image holds them one
 * after another, their record headers (a few bytes each) read into `scratch`:
 * thousands of one-page runs are then a few calls. Returns the bytes the
 * batch covers in the image; *next is the first run it does not hold. */
struct uffd_fill;
static int uffd_fill_takes(const struct crfs_restorer_args* a, const struct uffd_fill* uf,
                           const struct crfs_ra_pages* p, uint64_t i, uint64_t n);
static uint64_t batch_runs(const struct crfs_restorer_args* a, const struct uffd_fill* uf,
                           const struct crfs_ra_pages* p, uint64_t i, uint64_t n, char* scratch,
                           struct iovec* iov, int* iovcnt, uint64_t* next) {
    uint64_t pos = p[i].file_off + p[i].nr_pages * 4096;
    int k = 0;
    iov[k].base = (void*)p[i].vaddr;
    iov[k++].len = p[i].nr_pages * 4096;
    uint64_t j = i + 1;
    for (; j < n && k + 2 <= FILL_IOV; ++j) {
        if (p[j].file_off < pos || p[j].file_off - pos > FILL_GAP) break;
        if (uffd_fill_takes(a, uf, p, j, n)) break;
        if (p[j].file_off > pos) {
            iov[k].base = scratch;
            iov[k++].len = p[j].file_off - pos;
        }
        iov[k].base = (void*)p[j].vaddr;
        iov[k++].len = p[j].nr_pages * 4096;
        pos = p[j].file_off + p[j].nr_pages * 4096;
    }
    *iovcnt = k;
    *next = j;
    return pos - p[i].file_off;
}

/* pread of [vaddr, vaddr + len) from the page data at `off`. */
static void fill_part(const struct crfs_restorer_args* a, uint64_t vaddr, uint64_t len,
                      uint64_t off) {
    char* dst = (char*)vaddr;
    while (len) {
        long n = sys4(NR_pread64, a->pages_fd, dst, len, off);
        if (n == -4 /* EINTR */) continue;
        if (is_err(n)) die(a, CRFS_RA_STEP_FILL_PAGES, n, vaddr);
        if (n == 0) die(a, CRFS_RA_STEP_FILL_PAGES, -5 /* EIO: image shorter */, vaddr);
        dst += n, off += (uint64_t)n, len -= (uint64_t)n;
    }
}

/* The mprotects that give mapped-read-write VMAs their own protection (private
 * and anonymous ones were mapped read-write to be filled), of the private
 * anonymous VMAs (anon: 1), the others (0) or all (-1). Returns 0, or the
 * first failure with its VMA in *at. */
static long protect_some(const struct crfs_restorer_args* a, int anon, uint64_t* at) {
    const struct crfs_ra_vma* v = (const struct crfs_ra_vma*)a->vmas;
    for (uint64_t i = 0; i < a->nr_vmas; ++i) {
        if (v[i].kind == CRFS_RA_FILE && (v[i].mmap_flags & MAP_SHARED)) continue;
        if ((v[i].prot | PROT_READ | PROT_WRITE) == v[i].prot) continue;
        if (anon >= 0 && joins_neighbours(&v[i]) != anon) continue;
        long ret = sys3(NR_mprotect, v[i].start, v[i].end - v[i].start, v[i].prot);
        if (is_err(ret)) {
            *at = i;
            return ret;
        }
    }
    return 0;
}

/* stream: the private anonymous VMAs, while their pages arrive (stream.h). */
static long protect_anon_vmas(const struct crfs_restorer_args* a, uint64_t* at) {
    return protect_some(a, 1, at);
}

/* The rest (stream: its anonymous VMAs are protected already). */
static void protect_vmas(const struct crfs_restorer_args* a) {
    uint64_t at = 0;
    long ret = protect_some(a, a->stream ? 0 : -1, &at);
    if (is_err(ret)) die(a, CRFS_RA_STEP_PROTECT, ret, at);
}

#include "fill_uffd.h" /* restore: UFFDIO_COPY from the aligned page store */
#include "stream.h"    /* stream: the pages arrive while the task waits */

static void fill_pages(const struct crfs_restorer_args* a) {
    const struct crfs_ra_pages* p = (const struct crfs_ra_pages*)a->pages;
    struct iovec iov[FILL_IOV]; /* 8 KiB of the blob's 64 KiB stack */
    char scratch[FILL_GAP];
    struct uffd_fill uf;
    uffd_fill_open(a, &uf);
    for (uint64_t i = 0; i < a->nr_pages;) {
        uint64_t filled = uffd_fill_run(a, &uf, p, i, a->nr_pages);
        if (filled > i) {
            i = filled;
            continue;
        }
        int iovcnt;
        uint64_t next;
        uint64_t bytes = batch_runs(a, &uf, p, i, a->nr_pages, scratch, iov, &iovcnt, &next);
        /* Populate larger runs in one call instead of one fault per page
         * inside the read (best effort: older kernels lack it). */
        for (uint64_t j = i; j < next; ++j)
            if (p[j].nr_pages >= POPULATE_MIN_PAGES)
                sys3(NR_madvise, p[j].vaddr, p[j].nr_pages * 4096, 23 /* MADV_POPULATE_WRITE */);
        long n = iovcnt > 1 ? sys5(NR_preadv, a->pages_fd, iov, iovcnt, p[i].file_off, 0) : -1;
        if (n < 0 || (uint64_t)n != bytes) /* one run, or a short read: run by run */
            for (uint64_t j = i; j < next; ++j)
                fill_part(a, p[j].vaddr, p[j].nr_pages * 4096, p[j].file_off);
        i = next;
    }
    uffd_fill_close(a, &uf);
}

/* fidelity: madvise/mlock flags of each mapping, after fill and protect (a
 * locked or MADV_DONTFORK range must already hold its final pages). */
static void advise_vmas(const struct crfs_restorer_args* a) {
    static const struct {
        uint32_t bit;
        int advice;
    } kAdvice[] = {{CRFS_RA_MADV_DONTFORK, 10},
                   {CRFS_RA_MADV_WIPEONFORK, 18},
                   {CRFS_RA_MADV_HUGEPAGE, 14},
                   {CRFS_RA_MADV_NOHUGEPAGE, 15},
                   {CRFS_RA_MADV_DONTDUMP, 16}};
    const struct crfs_ra_vma* v = (const struct crfs_ra_vma*)a->vmas;
    for (uint64_t i = 0; i < a->nr_vmas; ++i) {
        uint64_t len = v[i].end - v[i].start;
        long ret;
        for (unsigned k = 0; k < sizeof kAdvice / sizeof kAdvice[0]; ++k) {
            if (!(v[i].madv & kAdvice[k].bit)) continue;
            ret = sys3(NR_madvise, v[i].start, len, kAdvice[k].advice);
            if (is_err(ret)) die(a, CRFS_RA_STEP_ADVISE, ret, i);
        }
        if (v[i].madv & (CRFS_RA_MADV_LOCK | CRFS_RA_MADV_LOCKONFAULT)) {
            ret = sys3(NR_mlock2, v[i].start, len,
                       (v[i].madv & CRFS_RA_MADV_LOCKONFAULT) ? 1 /* MLOCK_ONFAULT */ : 0);
            if (is_err(ret)) die(a, CRFS_RA_STEP_ADVISE, ret, i);
        }
    }
}

/* names: each anonymous area's PR_SET_VMA_ANON_NAME, last: a name is per
 * VMA, so naming splits an area the mappings above merged with a neighbour. */
static void name_vmas(const struct crfs_restorer_args* a) {
    const struct crfs_ra_vma* v = (const struct crfs_ra_vma*)a->vmas;
    for (uint64_t i = 0; i < a->nr_vmas; ++i) {
        if (!v[i].name) continue;
        long ret = sys5(NR_prctl, 0x53564d41 /* PR_SET_VMA */, 0 /* PR_SET_VMA_ANON_NAME */,
                        v[i].start, v[i].end - v[i].start, v[i].name);
        if (is_err(ret)) die(a, CRFS_RA_STEP_VMA_NAME, ret, i);
    }
}

/* kobj: each memfd's seals once every mapping of it is made (F_SEAL_WRITE
 * and F_SEAL_FUTURE_WRITE decide which mappings may exist), then its fd goes. */
static void seal_memfds(const struct crfs_restorer_args* a) {
    const struct crfs_ra_memfd* m = (const struct crfs_ra_memfd*)a->memfds;
    for (uint64_t i = 0; i < a->nr_memfds; ++i) {
        if (m[i].seals) {
            long ret = sys3(NR_fcntl, m[i].fd, 1033 /* F_ADD_SEALS */, m[i].seals);
            if (is_err(ret)) die(a, CRFS_RA_STEP_MEMFD_SEAL, ret, i);
        }
        sys1(NR_close, m[i].fd);
    }
}

/* capset(2) of this task, version 3 (two 32-bit halves). */
struct cap_header {
    uint32_t version;
    int32_t pid;
};
struct cap_data {
    uint32_t eff, prm, inh;
};
static void set_caps(const struct crfs_restorer_args* a, int step, uint64_t arg, uint64_t eff,
                     uint64_t prm, uint64_t inh) {
    struct cap_header hdr = {0x20080522, 0};
    struct cap_data data[2] = {
        {(uint32_t)eff, (uint32_t)prm, (uint32_t)inh},
        {(uint32_t)(eff >> 32), (uint32_t)(prm >> 32), (uint32_t)(inh >> 32)}};
    long ret = sys2(NR_capset, &hdr, data);
    if (is_err(ret)) die(a, step, ret, arg);
}

/* fid: whether a thread's securebits (its record's) differ from the ones it
 * has now (crfsd's, inherited); none to set without a record. */
static int securebits_differ(const struct crfs_ra_thread_attrs* t) {
    return t->present && (uint32_t)sys1(NR_prctl, PR_GET_SECUREBITS) != t->securebits;
}

/* PR_SET_SECUREBITS needs CAP_SETPCAP: the kernel decides (EPERM). */
static void set_securebits(const struct crfs_restorer_args* a,
                           const struct crfs_ra_thread_attrs* t) {
    long ret = sys2(NR_prctl, PR_SET_SECUREBITS, t->securebits);
    if (is_err(ret)) die(a, CRFS_RA_STEP_THREAD_ATTRS, ret, (uint64_t)(uint32_t)t->tid << 8 | 4);
}

/* The image's credentials, in the calling thread; `t`: its own attributes
 * (securebits). */
static void restore_creds(const struct crfs_restorer_args* a,
                          const struct crfs_ra_thread_attrs* t) {
    long ret;
    /* The bounding set first: dropping needs CAP_SETPCAP, lost with the uid. */
    for (uint32_t c = 0; c <= a->last_cap && c < 64; ++c)
        if (!(a->cap_bnd & (1ull << c))) {
            ret = sys2(NR_prctl, PR_CAPBSET_DROP, c);
            if (is_err(ret)) die(a, CRFS_RA_STEP_CREDS, ret, 1);
        }
    ret = sys2(NR_setgroups, a->nr_groups, a->groups);
    if (is_err(ret)) die(a, CRFS_RA_STEP_CREDS, ret, 2);
    ret = sys3(NR_setresgid, a->gid[0], a->gid[1], a->gid[2]);
    if (is_err(ret)) die(a, CRFS_RA_STEP_CREDS, ret, 3);
    sys1(NR_setfsgid, a->gid[3]);
    ret = sys2(NR_prctl, PR_SET_KEEPCAPS, 1);
    if (is_err(ret)) die(a, CRFS_RA_STEP_CREDS, ret, 4);
    ret = sys3(NR_setresuid, a->uid[0], a->uid[1], a->uid[2]);
    if (is_err(ret)) die(a, CRFS_RA_STEP_CREDS, ret, 5);
    sys1(NR_setfsuid, a->uid[3]);
    /* Securebits to set need CAP_SETPCAP, which the image's sets may lack:
     * it stays in them (from the permitted set kept across setresuid) until
     * the securebits are set, last (after PR_SET_KEEPCAPS, which is one of
     * them, and the ambient raise, which one of them forbids), and then goes. */
    const uint64_t setpcap = securebits_differ(t) ? 1ull << 8 : 0;
    set_caps(a, CRFS_RA_STEP_CREDS, 6, a->cap_eff | setpcap, a->cap_prm | setpcap, a->cap_inh);
    sys5(NR_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    for (uint32_t c = 0; c < 64; ++c)
        if (a->cap_amb & (1ull << c)) {
            ret = sys5(NR_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0);
            if (is_err(ret)) die(a, CRFS_RA_STEP_CREDS, ret, 7);
        }
    sys2(NR_prctl, PR_SET_KEEPCAPS, 0);
    if (setpcap) {
        set_securebits(a, t);
        set_caps(a, CRFS_RA_STEP_CREDS, 9, a->cap_eff, a->cap_prm, a->cap_inh);
    }
    if (a->no_new_privs) {
        ret = sys5(NR_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        if (is_err(ret)) die(a, CRFS_RA_STEP_CREDS, ret, 8);
    }
}

/* A non-root writer's task: nothing may remain of the capability kept for the
 * exe link. Checked with capget, not assumed. */
static void drop_caps(const struct crfs_restorer_args* a) {
    set_caps(a, CRFS_RA_STEP_DROP_CAPS, 0, 0, 0, 0);
    struct cap_header hdr = {0x20080522, 0};
    struct cap_data data[2];
    long ret = sys2(NR_capget, &hdr, data);
    if (is_err(ret)) die(a, CRFS_RA_STEP_DROP_CAPS, ret, 1);
    if (data[0].prm | data[0].eff | data[1].prm | data[1].eff)
        die(a, CRFS_RA_STEP_DROP_CAPS, -EPERM, 2);
    if (a->no_new_privs) {
        ret = sys5(NR_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        if (is_err(ret)) die(a, CRFS_RA_STEP_DROP_CAPS, ret, 3);
    }
}

#include "seccomp.h"
#include "thread_pidfds.h" /* thpidfd */
#include "thread_timers.h" /* timer */
#include "threads.h"

__attribute__((section(".text.entry"), noreturn, used)) void crfs_restorer_entry(
    struct crfs_restorer_args* a) {
    long ret;
    uint64_t all = ~0ull;
    sys4(NR_rt_sigprocmask, 2 /* SIG_SETMASK */, &all, 0, 8);
    if (a->magic != CRFS_RA_MAGIC || a->size != sizeof *a)
        die(a, CRFS_RA_STEP_BAD_ARGS, -EINVAL, 0);

    /* The kernel writes the rseq area on every return to user space: it lies in
     * memory about to be unmapped, so the registration goes first. */
    if (a->rseq_area) {
        ret = sys4(NR_rseq, a->rseq_area, a->rseq_len, RSEQ_FLAG_UNREGISTER, a->rseq_sig);
        if (is_err(ret) && a->rseq_len != 32)
            ret = sys4(NR_rseq, a->rseq_area, 32, RSEQ_FLAG_UNREGISTER, a->rseq_sig);
        if (is_err(ret) && ret != -38 /* ENOSYS */) die(a, CRFS_RA_STEP_UNMAP, ret, 1);
    }
    struct {
        uint64_t sp;
        int32_t flags;
        uint64_t size;
    } ss_off = {0, SS_DISABLE, 0};
    sys2(NR_sigaltstack, &ss_off, 0);

    fault(a, CRFS_RA_STEP_UNMAP);
    const struct crfs_ra_range* u = (const struct crfs_ra_range*)a->unmap;
    for (uint64_t i = 0; i < a->nr_unmap; ++i) {
        ret = sys2(NR_munmap, u[i].start, u[i].end - u[i].start);
        if (is_err(ret)) die(a, CRFS_RA_STEP_UNMAP, ret, u[i].start);
    }
    fault(a, CRFS_RA_STEP_MOVE_SPECIAL);
    const struct crfs_ra_move* m = (const struct crfs_ra_move*)a->moves;
    for (uint64_t i = 0; i < a->nr_moves; ++i) {
        ret =
            sys5(NR_mremap, m[i].cur, m[i].len, m[i].len, MREMAP_MAYMOVE | MREMAP_FIXED, m[i].tmp);
        if (is_err(ret)) die(a, CRFS_RA_STEP_MOVE_SPECIAL, ret, m[i].cur);
    }
    for (uint64_t i = 0; i < a->nr_moves; ++i) {
        if (m[i].tmp == m[i].dst) continue;
        ret =
            sys5(NR_mremap, m[i].tmp, m[i].len, m[i].len, MREMAP_MAYMOVE | MREMAP_FIXED, m[i].dst);
        if (is_err(ret)) die(a, CRFS_RA_STEP_MOVE_SPECIAL, ret, m[i].dst);
    }

    fault(a, CRFS_RA_STEP_MAP_VMA);
    map_vmas(a);
    fault(a, CRFS_RA_STEP_STREAM_READY);
    if (a->stream) stream_wait(a); /* stream */
    fault(a, CRFS_RA_STEP_FILL_PAGES);
    fill_pages(a);
    fault(a, CRFS_RA_STEP_PROTECT);
    protect_vmas(a);
    fault(a, CRFS_RA_STEP_ADVISE);
    advise_vmas(a); /* fidelity */
    name_vmas(a);   /* names */
    seal_memfds(a); /* kobj */
    fault(a, CRFS_RA_STEP_MM_MAP);

    struct crfs_ra_mm_map mm = a->mm;
    mm.exe_fd = (uint32_t)-1;
    long exe_fd = -1;
    if (a->exe_path) {
        exe_fd = open_regular(a, a->exe_path, O_RDONLY, CRFS_RA_STEP_OPEN_EXE, 0);
        if (is_err(exe_fd)) die(a, CRFS_RA_STEP_OPEN_EXE, exe_fd, 0);
        mm.exe_fd = (uint32_t)exe_fd;
    }
    ret = sys5(NR_prctl, PR_SET_MM, PR_SET_MM_MAP, &mm, sizeof mm, 0);
    if (is_err(ret)) die(a, CRFS_RA_STEP_MM_MAP, ret, 0);
    if (exe_fd >= 0) sys1(NR_close, exe_fd);
    /* With threads, the capability to choose their tids stays until they exist. */
    if (a->drop_caps && !a->nr_threads) drop_caps(a);

    fault(a, CRFS_RA_STEP_SIGACTION);
    for (int i = 0; i < 64; ++i) {
        int sig = i + 1;
        if (sig == 9 || sig == 19) continue;
        ret = sys4(NR_rt_sigaction, sig, &a->sigactions[i], 0, 8);
        if (is_err(ret)) die(a, CRFS_RA_STEP_SIGACTION, ret, (uint64_t)sig);
    }
    /* All signals are blocked here, so the re-queued ones stay pending until
     * rt_sigreturn installs the image's mask. */
    const struct crfs_ra_siginfo* si = (const struct crfs_ra_siginfo*)a->siginfo;
    fault(a, CRFS_RA_STEP_SIGQUEUE);
    long pid = sys0(NR_getpid), tid = sys0(NR_gettid);
    for (uint64_t i = 0; i < a->nr_siginfo; ++i) {
        if (si[i].shared)
            ret = sys3(NR_rt_sigqueueinfo, pid, si[i].signo, si[i].info);
        else
            ret = sys4(NR_rt_tgsigqueueinfo, pid, tid, si[i].signo, si[i].info);
        if (is_err(ret)) die(a, CRFS_RA_STEP_SIGQUEUE, ret, (uint64_t)si[i].signo);
    }

    fault(a, CRFS_RA_STEP_THREAD);
    if (a->nr_threads) {
        create_threads(a);
        if (a->drop_caps) drop_caps(a);
    }
    fault(a, CRFS_RA_STEP_THREAD_PIDFD);
    make_thread_pidfds(a); /* thpidfd: once the threads (ours, others') exist */
    fault(a, CRFS_RA_STEP_THREAD_TIMER);
    make_thread_timers(a); /* timer: once their threads exist */
    fault(a, CRFS_RA_STEP_CREDS);
    if (a->set_creds) restore_creds(a, &a->main_attrs);
    fault(a, CRFS_RA_STEP_ITIMER);

    for (int w = 0; w < 3; ++w) {
        ret = sys3(NR_setitimer, w, a->itimers[w], 0);
        if (is_err(ret)) die(a, CRFS_RA_STEP_ITIMER, ret, (uint64_t)w);
    }
    ret = sys2(NR_arch_prctl, ARCH_SET_FS, a->fs_base);
    if (is_err(ret)) die(a, CRFS_RA_STEP_TLS, ret, 0);
    ret = sys2(NR_arch_prctl, ARCH_SET_GS, a->gs_base);
    if (is_err(ret)) die(a, CRFS_RA_STEP_TLS, ret, 1);

    /* Best effort for an old image's guessed rseq area (without it glibc reads a
     * stale cpu); exact for version 3, whose thread record holds it. */
    own_registrations(a, a->robust_head, a->robust_len, a->task_rseq_area, a->task_rseq_len,
                      a->task_rseq_sig, a->task_rseq_strict, a->clear_child_tid, (uint64_t)pid);
    own_attrs(a, &a->main_attrs); /* fid: after the credentials */
    /* Last: every credential change above reset it. */
    ret = sys2(NR_prctl, PR_SET_DUMPABLE, a->dumpable);
    if (is_err(ret)) die(a, CRFS_RA_STEP_SIGRETURN, ret, 1);
    fault(a, CRFS_RA_STEP_SIGRETURN);
    uint64_t frame = a->sigframe;
    if (a->sigframe_dst) {
        memcpy((void*)a->sigframe_dst, (const void*)a->sigframe, a->sigframe_len);
        frame = a->sigframe_dst;
    }
    /* fid: after every mapping of the image, so only the task's later ones lock. */
    if (a->mlockall_flags) {
        ret = sys1(NR_mlockall, a->mlockall_flags);
        if (is_err(ret)) die(a, CRFS_RA_STEP_MLOCKALL, ret, a->mlockall_flags);
    }
    fault(a, CRFS_RA_STEP_SECCOMP);
    install_seccomp(a); /* fid-exact: last, see seccomp.h */
    uint64_t unmap = a->self_unmap, unmap_len = a->self_unmap_len;

    uint64_t stop = a->stop_self != 0;
    register uint64_t go_reg __asm__("r12") =
        a->sync ? (uint64_t) & ((struct crfs_ra_sync*)a->sync)->go : 0;

    /* The point of no return: the driver reports success on this byte, once
     * the status pipe also reads EOF. So both descriptors are gone before
     * anyone (a checkpoint right after the restore) can look at the task. */
    sys1(NR_close, a->image_fd);
    if (a->pages_fd != a->image_fd) sys1(NR_close, a->pages_fd);
    char ok = 'K';
    sys3(NR_write, a->status_fd, &ok, 1);
    sys1(NR_close, a->status_fd);
    if (a->has_go) { /* trees: every process resumes only once all are built */
        char go = 0;
        if (sys3(NR_read, a->go_fd, &go, 1) != 1) sys1(NR_exit_group, 1);
        sys1(NR_close, a->go_fd);
    }
    /* From here on only registers: the munmap may take this very stack (and
     * `a`) away; only the code pages stay. A task that was stopped stops here,
     * before rt_sigreturn, with SIGSTOP from itself (getpid: its pid in its
     * own namespace); SIGCONT resumes it into its own code. */
    __asm__ volatile(
        "test %%rsi, %%rsi\n"
        "jz 1f\n"
        "mov $11, %%eax\n" /* munmap(unmap, unmap_len) */
        "syscall\n"
        "1:\n"
        "test %%rdx, %%rdx\n"
        "jz 2f\n"
        "mov $39, %%eax\n" /* getpid() */
        "syscall\n"
        "mov %%eax, %%edi\n"
        "mov $19, %%esi\n" /* SIGSTOP */
        "mov $62, %%eax\n" /* kill(pid, SIGSTOP) */
        "syscall\n"
        "2:\n"
        "test %%r12, %%r12\n"
        "jz 3f\n"
        "movl $1, (%%r12)\n" /* go = 1: the threads return to the task too */
        "mov %%r12, %%rdi\n" /* futex(&go, FUTEX_WAKE_PRIVATE, INT_MAX) */
        "mov $129, %%esi\n"
        "mov $0x7fffffff, %%edx\n"
        "mov $202, %%eax\n"
        "syscall\n"
        "3:\n"
        "mov %%rbx, %%rsp\n"
        "mov $15, %%eax\n" /* rt_sigreturn */
        "syscall\n"
        "ud2\n"
        :
        : "b"(frame + 8), "D"(unmap), "S"(unmap_len), "d"(stop), "r"(go_reg)
        : "memory", "rax", "rcx", "r11");
    __builtin_unreachable();
}
