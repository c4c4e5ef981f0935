/* names: anonymous memory named with prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME)
 * comes back named, per VMA: /proc/self/maps shows `[anon:NAME]` (private)
 * and `[anon_shmem:NAME]` (shared) on the same ranges, and neighbours that
 * differ only by their name stay separate areas (state/vma_names.cc). */
#include "probe.h"

#include <sys/mman.h>
#include <sys/prctl.h>

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif

#define PAGE 4096ul

static unsigned char* g_mem;

static void name(unsigned long off, unsigned long len, const char* n) {
    if (prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)g_mem + off, len, n) != 0)
        die("PR_SET_VMA_ANON_NAME");
}

static void map(unsigned long pages, int flags) {
    g_mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, flags | MAP_ANONYMOUS, -1, 0);
    if (g_mem == MAP_FAILED) die("mmap");
    for (unsigned long i = 0; i < pages * PAGE; i += 512) g_mem[i] = (unsigned char)(i / 512 + 7);
}

/* The maps line holding g_mem + off: its range (offsets from g_mem) and name. */
static int area(unsigned long off, unsigned long* s, unsigned long* e, char* nm, size_t nmlen) {
    FILE* f = fopen("/proc/self/maps", "r");
    if (!f) return -1;
    char line[1024];
    int found = -1;
    unsigned long at = (unsigned long)g_mem + off;
    while (fgets(line, sizeof line, f)) {
        unsigned long ls, le;
        int n = 0;
        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s%n", &ls, &le, &n) != 2 || at < ls || at >= le)
            continue;
        const char* p = line + n;
        while (*p == ' ') ++p;
        snprintf(nm, nmlen, "%s", p);
        nm[strcspn(nm, "\n")] = 0;
        *s = ls - (unsigned long)g_mem;
        *e = le - (unsigned long)g_mem;
        found = 0;
        break;
    }
    fclose(f);
    return found;
}

static void expect(unsigned long off, unsigned long len, const char* want) {
    unsigned long s, e;
    char nm[512];
    if (area(off, &s, &e, nm, sizeof nm) != 0) {
        fail("page +%lx is not in maps", off);
        return;
    }
    if (s != off || e != off + len)
        fail("the area of page +%lx is +%lx-+%lx, not +%lx-+%lx (%s)", off, s, e, off, off + len,
             nm);
    if (strcmp(nm, want) != 0) fail("page +%lx is named '%s', not '%s'", off, nm, want);
}

static void contents(unsigned long pages) {
    for (unsigned long i = 0; i < pages * PAGE; i += 512)
        if (g_mem[i] != (unsigned char)(i / 512 + 7)) {
            fail("byte +%lx is %u, not %u", i, g_mem[i], (unsigned)(unsigned char)(i / 512 + 7));
            return;
        }
}

/* Five pages: a guard page (other protection) at each end, two names side
 * by side, then an unnamed page. */
static void five_pages(int flags, int guard, const char* a, const char* b) {
    map(5, flags);
    if (mprotect(g_mem, PAGE, guard) || mprotect(g_mem + 4 * PAGE, PAGE, guard)) die("mprotect");
    name(PAGE, PAGE, a);
    name(2 * PAGE, PAGE, b);
}
static void five_check(const char* a, const char* b, const char* unnamed) {
    expect(PAGE, PAGE, a);
    expect(2 * PAGE, PAGE, b);
    expect(3 * PAGE, PAGE, unnamed);
    mprotect(g_mem, 5 * PAGE, PROT_READ | PROT_WRITE);
    contents(5);
}

/* Private anonymous memory; a space and a colon are names too. */
static void private_setup(void) {
    five_pages(MAP_PRIVATE, PROT_NONE, "crfs-a", "crfs b:x");
}
static void private_check(void) {
    five_check("[anon:crfs-a]", "[anon:crfs b:x]", "");
}

/* Shared anonymous memory: one object, two names and an unnamed page. */
static void shared_setup(void) {
    five_pages(MAP_SHARED, PROT_READ, "crfs-s1", "crfs-s2");
}
static void shared_check(void) {
    five_check("[anon_shmem:crfs-s1]", "[anon_shmem:crfs-s2]", "/dev/zero (deleted)");
}

/* The longest name the kernel takes (79 bytes). */
static char g_long[80];
static void long_setup(void) {
    memset(g_long, 'n', 79);
    map(3, MAP_PRIVATE);
    if (mprotect(g_mem, PAGE, PROT_NONE) || mprotect(g_mem + 2 * PAGE, PAGE, PROT_NONE))
        die("mprotect");
    name(PAGE, PAGE, g_long);
}
static void long_check(void) {
    char want[100];
    snprintf(want, sizeof want, "[anon:%s]", g_long);
    expect(PAGE, PAGE, want);
}

/* A memfd's mapping named: maps shows the name, not the memfd (refused). */
static void memfd_setup(int flags) {
    int fd = memfd_create("names", 0);
    if (fd < 0 || ftruncate(fd, 3 * PAGE) != 0) die("memfd");
    g_mem = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, flags, fd, 0);
    if (g_mem == MAP_FAILED) die("mmap memfd");
    name(PAGE, PAGE, "crfs-memfd");
}
static void memfd_shared_setup(void) {
    memfd_setup(MAP_SHARED);
}
static void memfd_private_setup(void) {
    memfd_setup(MAP_PRIVATE);
}
static void memfd_check(void) {
    expect(PAGE, PAGE, "[anon_shmem:crfs-memfd]");
}

static const struct variant kVariants[] = {
    {"named_private", private_setup, private_check, NULL},
    {"named_shared", shared_setup, shared_check, NULL},
    {"named_longest", long_setup, long_check, NULL},
    {"named_memfd_shared", memfd_shared_setup, memfd_check, NULL},
    {"named_memfd_private", memfd_private_setup, memfd_check, NULL},
};
PROBE_MAIN(kVariants)
