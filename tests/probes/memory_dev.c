/* Memory probes: mappings of /dev/zero (state/memory.cc).
 *
 * devzero_shared: MAP_SHARED of /dev/zero is shared anonymous memory (the
 * kernel gives it a shmem file, "/dev/zero (deleted)" in maps): its content
 * round-trips, and it stays shared, not private.
 * devzero_private: MAP_PRIVATE of /dev/zero is anonymous memory that maps
 * still names "/dev/zero", a character device: the restore maps file
 * mappings of regular files only, so it is a reason. */
#include "probe.h" /* first: it defines _GNU_SOURCE */

#include <sys/mman.h>
#include <sys/wait.h>

#define PAGE 4096
#define LEN (16 * PAGE)
static unsigned char* g_mem;

static void fill(unsigned char* p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; ++i) p[i] = (unsigned char)(i * 13 + seed);
}
static int same(const unsigned char* p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; ++i)
        if (p[i] != (unsigned char)(i * 13 + seed)) return 0;
    return 1;
}

static void map_zero(int flags) {
    int fd = open("/dev/zero", O_RDWR | O_CLOEXEC);
    if (fd < 0) die("open /dev/zero");
    g_mem = mmap(NULL, LEN, PROT_READ | PROT_WRITE, flags, fd, 0);
    if (g_mem == MAP_FAILED) die("mmap /dev/zero");
    close(fd);
    fill(g_mem, LEN / 2, 5); /* the second half stays untouched: zero */
}

static void shared_setup(void) {
    map_zero(MAP_SHARED);
}
static void private_setup(void) {
    map_zero(MAP_PRIVATE);
}

static void check_content(void) {
    if (!same(g_mem, LEN / 2, 5)) fail("written half differs");
    for (size_t i = LEN / 2; i < LEN; ++i)
        if (g_mem[i]) {
            fail("untouched half is not zero at %zu", i);
            break;
        }
}

/* Shared: a child forked now sees the parent's writes (and the parent its). */
static void shared_check(void) {
    check_content();
    pid_t c = fork();
    if (c < 0) die("fork");
    if (c == 0) {
        g_mem[LEN - 1] = 0x5a;
        _exit(0);
    }
    if (waitpid(c, NULL, 0) != c) die("waitpid");
    if (g_mem[LEN - 1] != 0x5a) fail("the mapping is no longer MAP_SHARED");
}

static const struct variant kVariants[] = {
    {"devzero_shared", shared_setup, shared_check, NULL},
    {"devzero_private", private_setup, check_content, NULL},
};
PROBE_MAIN(kVariants)
