/* The kernel's cost of the ways a restorer could rebuild N one-page private
 * anonymous areas of alternating protections (read-write, read-only: what
 * bench/vma_holder makes), each holding a page taken from a shmem page store
 * (the slot's), measured as the CPU time of a fresh child process
 * (CLOCK_PROCESS_CPUTIME_ID: on a loaded machine the wall clock is mostly
 * waiting for a CPU). Every variant's result is checked: every page's bytes,
 * and the number of mappings in /proc/self/maps.
 *
 *   rebuild_paths [N [ROUNDS [VARIANTS]]]     (default 30000 5 all)
 *
 * Variants (letters), each in a fresh child, rounds interleaved:
 *   a  one mmap rw, one UFFDIO_COPY of everything, N/2 splitting mprotects
 *      (the blob: restorer/blob/blob.c, fill_uffd.h)
 *   b  the same, mprotects from the top down
 *   h  as a, the store's window mapped without MAP_POPULATE (the copy
 *      faults its pages in, a fault-around of 16 at a time)
 *   p  as a, the copy split between two threads (one UFFDIO_COPY each into
 *      the one mapping); also prints the fill's wall time, on stderr
 *   g  as a, in chunks of 256 areas: copy a chunk, split it, then the next
 *   c  one mmap rw, N/2 mprotects first (no pages yet), one UFFDIO_COPY per
 *      area (a copy may not cross a VMA: ENOENT)
 *   d  N mmaps with the final protection, one UFFDIO_COPY per area
 *   e  one mmap rw, MADV_POPULATE_WRITE + memcpy, N/2 mprotects
 *   f  one mmap rw, one pread (a zeroing fault per page), N/2 mprotects
 *   parts alone:
 *   s  N/2 splitting mprotects of an untouched mapping (no anon_vma)
 *   t  the same after one page is touched (the anon_vma exists)
 *   m  N mmaps with the final protection
 *   u  one UFFDIO_COPY of everything into one mapping (no split)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PG 4096ul
static long n = 30000;
static int store;
static char* const kBase = (char*)0x7e0000000000ul;
static char* const kWin = (char*)0x7f0000000000ul;

static double cpu_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void fail(const char* what) {
    perror(what);
    _exit(1);
}

static int prot_of(long i) {
    return (i & 1) ? PROT_READ : PROT_READ | PROT_WRITE;
}

static void map_one(void) {
    if (mmap(kBase, n * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
             0) != kBase)
        fail("mmap");
}
static void map_each(void) {
    for (long i = 0; i < n; ++i)
        if (mmap(kBase + i * PG, PG, prot_of(i), MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) !=
            kBase + i * PG)
            fail("mmap of an area");
}
static void split_part(long from, long to, int down) {
    for (long k = from; k < to; ++k) {
        long i = down ? to - 1 - (k - from) : k;
        if ((i & 1) && mprotect(kBase + i * PG, PG, PROT_READ)) fail("mprotect");
    }
}
static void split(int down) {
    split_part(0, n, down);
}
static void window_with(int flags) {
    if (mmap(kWin, n * PG, PROT_READ, MAP_SHARED | MAP_FIXED | flags, store, 0) != kWin)
        fail("window");
}
static void window(void) {
    window_with(MAP_POPULATE);
}
static int uffd(void) {
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | 1 /* UFFD_USER_MODE_ONLY */);
    struct uffdio_api api = {.api = UFFD_API};
    if (fd < 0 || ioctl(fd, UFFDIO_API, &api)) fail("userfaultfd");
    return fd;
}
struct half {
    int fd;
    long from, to;
};
static void* copy_half(void* arg) {
    const struct half* h = arg;
    struct uffdio_copy c = {.dst = (uint64_t)(kBase + h->from * PG),
                            .src = (uint64_t)(kWin + h->from * PG),
                            .len = (uint64_t)(h->to - h->from) * PG};
    if (ioctl(h->fd, UFFDIO_COPY, &c)) fail("UFFDIO_COPY");
    return NULL;
}
static double wall_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}
/* Copies everything with two threads at once, each half of it. */
static void copy_two(void) {
    int fd = uffd();
    struct uffdio_register r = {.range = {(uint64_t)kBase, n * PG},
                                .mode = UFFDIO_REGISTER_MODE_MISSING};
    if (ioctl(fd, UFFDIO_REGISTER, &r)) fail("UFFDIO_REGISTER");
    struct half h[2] = {{fd, 0, n / 2}, {fd, n / 2, n}};
    double t0 = wall_ms();
    pthread_t t;
    if (pthread_create(&t, NULL, copy_half, &h[1])) fail("pthread_create");
    copy_half(&h[0]);
    pthread_join(t, NULL);
    fprintf(stderr, "p: the fill took %.1f ms of wall\n", wall_ms() - t0);
    struct uffdio_range u = {(uint64_t)kBase, n * PG};
    if (ioctl(fd, UFFDIO_UNREGISTER, &u)) fail("UFFDIO_UNREGISTER");
    close(fd);
}

/* Copies [kWin, kWin + n pages) to kBase, `per` pages a call; with `chunk`,
 * splits each chunk of areas once it is copied. */
static void copy_split(long per, long chunk) {
    int fd = uffd();
    struct uffdio_register r = {.range = {(uint64_t)kBase, n * PG},
                                .mode = UFFDIO_REGISTER_MODE_MISSING};
    if (ioctl(fd, UFFDIO_REGISTER, &r)) fail("UFFDIO_REGISTER");
    for (long i = 0; i < n; i += per) {
        long len = (i + per > n ? n - i : per) * PG;
        struct uffdio_copy c = {.dst = (uint64_t)(kBase + i * PG),
                                .src = (uint64_t)(kWin + i * PG),
                                .len = (uint64_t)len};
        if (ioctl(fd, UFFDIO_COPY, &c)) fail("UFFDIO_COPY");
        if (chunk) split_part(i, i + per > n ? n : i + per, 0);
    }
    struct uffdio_range u = {(uint64_t)kBase, n * PG};
    if (ioctl(fd, UFFDIO_UNREGISTER, &u)) fail("UFFDIO_UNREGISTER");
    close(fd);
}
static void copy(long per) {
    copy_split(per, 0);
}

static long maps_lines(void) {
    FILE* f = fopen("/proc/self/maps", "r");
    if (!f) fail("maps");
    long lines = 0;
    for (int c; (c = fgetc(f)) != EOF;) lines += c == '\n';
    fclose(f);
    return lines;
}

/* Runs variant v in this (fresh) process; prints "v ms" or exits non-zero. */
static void run(char v) {
    long before = maps_lines();
    double t0 = cpu_ms();
    int filled = 1;
    switch (v) {
        case 'a':
        case 'b':
            map_one(), window(), copy(n), split(v == 'b');
            break;
        case 'p':
            map_one(), window(), copy_two(), split(0);
            break;
        case 'h':
            map_one(), window_with(0), copy(n), split(0);
            break;
        case 'g':
            map_one(), window(), copy_split(256, 1);
            break;
        case 'c':
            map_one(), split(0), window(), copy(1);
            break;
        case 'd':
            map_each(), window(), copy(1);
            break;
        case 'e':
            map_one(), window();
            if (madvise(kBase, n * PG, MADV_POPULATE_WRITE)) fail("MADV_POPULATE_WRITE");
            memcpy(kBase, kWin, n * PG);
            split(0);
            break;
        case 'f':
            map_one();
            if (pread(store, kBase, n * PG, 0) != (ssize_t)(n * PG)) fail("pread");
            split(0);
            break;
        case 's':
            map_one(), split(0), filled = 0;
            break;
        case 't':
            map_one(), kBase[0] = 1, split(0), filled = 0;
            break;
        case 'm':
            map_each(), filled = 0;
            break;
        case 'u': {
            map_one(), window();
            double w0 = wall_ms();
            copy(n);
            fprintf(stderr, "u: the fill took %.1f ms of wall\n", wall_ms() - w0);
            filled = 0;
            break;
        }
        default:
            fprintf(stderr, "no variant %c\n", v);
            _exit(2);
    }
    double took = cpu_ms() - t0;
    if (filled) {
        for (long i = 0; i < n; ++i)
            if (*(uint32_t*)(kBase + i * PG) != (uint32_t)i + 1 || kBase[i * PG + PG - 1] != 0) {
                fprintf(stderr, "%c: area %ld holds the wrong bytes\n", v, i);
                _exit(3);
            }
        /* The window (one more line when it exists) and n areas instead of none. */
        /* p: and the second thread's stack and guard, kept by glibc. */
        long want = before + 1 + n + (v == 'p' ? 2 : 0);
        if (maps_lines() != want && v != 'f') {
            fprintf(stderr, "%c: %ld mappings, want %ld\n", v, maps_lines(), want);
            _exit(3);
        }
    }
    printf("%c %.2f\n", v, took);
    fflush(stdout);
}

static int cmp(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return (x > y) - (x < y);
}

int main(int argc, char** argv) {
    if (argc > 1) n = atol(argv[1]);
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    const char* vs = argc > 3 ? argv[3] : "abhgcdefstmu";
    if (n < 2 || n > 60000 || rounds < 1 || rounds > 50) return 2;
    store = memfd_create("store", 0);
    if (store < 0 || ftruncate(store, n * PG)) fail("memfd");
    /* Written as crfsd's spool writes it: pwrite, never mapped. */
    static char page[PG];
    for (long i = 0; i < n; ++i) {
        *(uint32_t*)page = (uint32_t)i + 1;
        if (pwrite(store, page, PG, i * PG) != PG) fail("pwrite of the store");
    }
    size_t nv = strlen(vs);
    double* ms = calloc(nv * (size_t)rounds, sizeof *ms);
    for (int r = 0; r < rounds; ++r)
        for (size_t k = 0; k < nv; ++k) {
            int pfd[2];
            if (pipe(pfd)) fail("pipe");
            pid_t c = fork();
            if (c == 0) {
                dup2(pfd[1], 1);
                run(vs[k]);
                _exit(0);
            }
            close(pfd[1]);
            char buf[64] = {0};
            ssize_t got = read(pfd[0], buf, sizeof buf - 1);
            close(pfd[0]);
            int st;
            waitpid(c, &st, 0);
            if (got <= 2 || !WIFEXITED(st) || WEXITSTATUS(st)) {
                fprintf(stderr, "variant %c failed\n", vs[k]);
                return 1;
            }
            ms[k * (size_t)rounds + (size_t)r] = atof(buf + 2);
        }
    double load[1] = {0};
    getloadavg(load, 1);
    printf("%ld areas, %d rounds, load %.1f: CPU ms of each variant (median, us/area)\n", n, rounds,
           load[0]);
    for (size_t k = 0; k < nv; ++k) {
        double* m = ms + k * (size_t)rounds;
        printf("%c:", vs[k]);
        for (int r = 0; r < rounds; ++r) printf(" %6.1f", m[r]);
        qsort(m, (size_t)rounds, sizeof *m, cmp);
        double med = m[rounds / 2];
        printf("  | median %6.1f  %5.2f us/area\n", med, med * 1e3 / (double)n);
    }
    return 0;
}
