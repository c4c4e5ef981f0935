/* fid: mlockall(MCL_FUTURE) (and MCL_ONFAULT) comes back: a mapping made
 * after the restore is locked (smaps VmFlags `lo`, and `lf` on fault), while
 * a mapping the task had before the call stays unlocked (state/mlockall.h). */
#include "probe.h"

#include <sys/mman.h>

static void* g_before;

static int flags_of(void* addr, int* lo, int* lf) {
    char line[1024];
    if (vm_flags_of(addr, line, sizeof line) != 0) return -1;
    *lo = strstr(line, " lo") != NULL;
    *lf = strstr(line, " lf") != NULL;
    return 0;
}

static void* map_page(void) {
    void* p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die("mmap");
    return p;
}

static void setup(int flags) {
    g_before = map_page();
    if (mlockall(flags) != 0) die("mlockall");
}
static void future_setup(void) {
    setup(MCL_FUTURE);
}
static void onfault_setup(void) {
    setup(MCL_FUTURE | MCL_ONFAULT);
}

static void check(int want_lf) {
    int lo = -1, lf = -1;
    if (flags_of(g_before, &lo, &lf) != 0)
        fail("the earlier page is not in smaps");
    else if (lo || lf)
        fail("the page mapped before mlockall is locked (lo %d lf %d)", lo, lf);
    void* p = map_page();
    if (flags_of(p, &lo, &lf) != 0)
        fail("the new page is not in smaps");
    else if (!lo || lf != want_lf)
        fail("a new mapping has lo %d lf %d, not 1 %d", lo, lf, want_lf);
    munmap(p, 4096);
}
static void future_check(void) {
    check(0);
}
static void onfault_check(void) {
    check(1);
}

static const struct variant kVariants[] = {
    {"future", future_setup, future_check, NULL},
    {"future_onfault", onfault_setup, onfault_check, NULL},
};
PROBE_MAIN(kVariants)
