/* Probe: many memory areas side by side (issue 13: restore is linear in
 * areas and page runs; the restorer maps neighbouring private anonymous
 * areas in one call and reads many runs in one preadv). Each variant checks
 * every area's protection in /proc/self/maps and every byte it stored. */
#include <stdint.h>
#include <sys/mman.h>

#include "probe.h"

#define PAGE 4096
#define BIG_PAGES 40

static size_t g_areas; /* set by the variant */
static int g_dense;    /* every area touched, none zero, the big run right after */
static unsigned char* g_base;
static unsigned char* g_big;

static int prot_of(size_t i) {
    static const int kProts[] = {PROT_READ | PROT_WRITE, PROT_READ, PROT_READ | PROT_WRITE,
                                 PROT_NONE};
    return kProts[i % 4];
}
static const char* perms_of(size_t i) {
    static const char* kPerms[] = {"rw-p", "r--p", "rw-p", "---p"};
    return kPerms[i % 4];
}
static unsigned char byte_at(size_t area, size_t off) {
    return (unsigned char)(area * 131 + off * 7 + 1);
}
/* Every fifth area stays untouched (no page stored), every seventh holds
 * only zeros (stored pages dropped as zero): runs come with gaps. */
static int touched(size_t i) {
    return g_dense || i % 5 != 0;
}
static int zeros(size_t i) {
    return !g_dense && i % 7 == 0;
}

static void areas_setup(size_t n) {
    g_areas = n;
    /* Room for the big run right after the areas (dense). */
    g_base = mmap(NULL, (g_areas + (g_dense ? BIG_PAGES : 0)) * PAGE, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g_base == MAP_FAILED) die("mmap areas");
    for (size_t i = 0; i < g_areas; ++i) {
        unsigned char* p = g_base + i * PAGE;
        if (touched(i))
            for (size_t k = 0; k < PAGE; k += 64) p[k] = zeros(i) ? 0 : byte_at(i, k);
        if (mprotect(p, PAGE, prot_of(i)) != 0) die("mprotect area");
    }
    /* A run long enough to be populated in one call, between two areas of
     * its own protection but another flag (MAP_NORESERVE): not merged. */
    g_big = mmap(g_dense ? g_base + g_areas * PAGE : NULL, BIG_PAGES * PAGE, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | (g_dense ? MAP_FIXED : 0), -1, 0);
    if (g_big == MAP_FAILED) die("mmap big");
    for (size_t k = 0; k < BIG_PAGES * PAGE; k += 8) g_big[k] = byte_at(g_areas, k);
}

static void many_setup(void) {
    areas_setup(3000);
}
/* Tens of thousands, as JVMs and browsers hold: the live stream reads and
 * un-protects neighbouring areas together, the restorer maps them together;
 * every area must still come back alone, with its protection and bytes. */
static void twenty_thousand_setup(void) {
    areas_setup(20000);
}

/* Every area holds a page and so do its neighbours: the image's page runs
 * follow one another in the task and in the slot's page store, 35 MiB of
 * them, past the restorer's 32 MiB window, then straight into the big run
 * (another VMA: MAP_NORESERVE). The restorer copies such runs together
 * (restorer/blob/fill_uffd.h) before it splits them by protection. */
static void dense_setup(void) {
    g_dense = 1;
    areas_setup(9000);
}

static void check_maps(void) {
    FILE* f = fopen("/proc/self/maps", "r");
    if (!f) {
        fail("open maps: %s", strerror(errno));
        return;
    }
    char line[512];
    size_t seen = 0;
    uintptr_t lo = (uintptr_t)g_base, hi = lo + g_areas * PAGE;
    while (fgets(line, sizeof line, f)) {
        uintptr_t s, e;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &s, &e, perms) != 3 || e <= lo || s >= hi) continue;
        /* Neighbours of equal protection (0 and 2 of every 4 are not
         * neighbours) never merge here: each area is one line. */
        if (e - s != PAGE || (s - lo) % PAGE) {
            fail("area line %lx-%lx is not one page of the areas", s, e);
            break;
        }
        size_t i = (s - lo) / PAGE;
        if (strcmp(perms, perms_of(i)) != 0) fail("area %zu: %s, want %s", i, perms, perms_of(i));
        ++seen;
    }
    fclose(f);
    if (seen != g_areas) fail("%zu area lines in maps, want %zu", seen, g_areas);
}

static void many_check(void) {
    check_maps();
    for (size_t i = 0; i < g_areas && !g_fail[0]; ++i) {
        unsigned char* p = g_base + i * PAGE;
        if (prot_of(i) == PROT_NONE && mprotect(p, PAGE, PROT_READ) != 0) {
            fail("mprotect area %zu to read it: %s", i, strerror(errno));
            continue;
        }
        for (size_t k = 0; k < PAGE; ++k) {
            unsigned char want = touched(i) && !zeros(i) && k % 64 == 0 ? byte_at(i, k) : 0;
            if (p[k] != want) {
                fail("area %zu byte %zu: %u, want %u", i, k, p[k], want);
                break;
            }
        }
    }
    for (size_t k = 0; k < BIG_PAGES * PAGE && !g_fail[0]; ++k)
        if (g_big[k] != (k % 8 ? 0 : byte_at(g_areas, k))) fail("big run byte %zu differs", k);
}

static const struct variant kVariants[] = {
    {"many", many_setup, many_check, NULL},
    {"twenty_thousand", twenty_thousand_setup, many_check, NULL},
    {"dense", dense_setup, many_check, NULL},
};
PROBE_MAIN(kVariants)
