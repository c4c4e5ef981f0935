/* fidelity: per-task settings restored exactly through the settings record
 * (state/settings.cc). The single settings of
 * task.c (thp, timerslack, oom, sched_batch, affinity) are supported rows
 * too; these are the ones only the task can see, and real-time scheduling. */
#include "probe.h" /* first: it defines _GNU_SOURCE */

#include <linux/membarrier.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

static void subreaper_setup(void) {
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) die("PR_SET_CHILD_SUBREAPER");
}
static void subreaper_check(void) {
    int v = 0;
    prctl(PR_GET_CHILD_SUBREAPER, &v);
    if (v != 1) fail("child subreaper %d", v);
}

/* Run as root: a root task's dumpable flag does not show outside it. */
static void nodump_root_setup(void) {
    if (prctl(PR_SET_DUMPABLE, 0) != 0) die("PR_SET_DUMPABLE");
}
static void nodump_root_check(void) {
    if (prctl(PR_GET_DUMPABLE) != 0) fail("dumpable %d", prctl(PR_GET_DUMPABLE));
}

static void membarrier_setup(void) {
    if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) != 0)
        die("membarrier register");
}
static void membarrier_check(void) {
    long got = syscall(SYS_membarrier, 1 << 9 /* GET_REGISTRATIONS */, 0, 0);
    if (got != MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) fail("registrations 0x%lx", got);
    if (syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0)
        fail("MEMBARRIER_CMD_PRIVATE_EXPEDITED: %s", strerror(errno));
}

/* Run as root (CAP_SYS_NICE): SCHED_RR priority 7, reset on fork. */
static void rr_setup(void) {
    struct sched_param p = {.sched_priority = 7};
    if (sched_setscheduler(0, SCHED_RR | SCHED_RESET_ON_FORK, &p) != 0) die("SCHED_RR");
}
static void rr_check(void) {
    struct sched_param p;
    int pol = sched_getscheduler(0);
    sched_getparam(0, &p);
    if (pol != (SCHED_RR | SCHED_RESET_ON_FORK) || p.sched_priority != 7)
        fail("policy 0x%x priority %d", pol, p.sched_priority);
}

/* Mapping flags the blob applies again (crfs_ra_vma.madv): six adjacent
 * two-page ranges of one anonymous mapping, each with its own flag, so each
 * must come back as its own VMA with its flag and its bytes. */
#include <sys/mman.h>
#define PG 4096
static unsigned char* g_map;
static const struct {
    int advice; /* -1: mlock */
    const char* flag;
} kAdvised[] = {{MADV_DONTFORK, "dc"},   {MADV_WIPEONFORK, "wf"}, {MADV_HUGEPAGE, "hg"},
                {MADV_NOHUGEPAGE, "nh"}, {MADV_DONTDUMP, "dd"},   {-1, "lo"}};
#define NADV (sizeof kAdvised / sizeof kAdvised[0])

static void madvise_setup(void) {
    g_map = mmap(NULL, 2 * NADV * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g_map == MAP_FAILED) die("mmap");
    for (size_t i = 0; i < 2 * NADV * PG; ++i) g_map[i] = (unsigned char)(i * 13 + 7);
    for (size_t k = 0; k < NADV; ++k) {
        unsigned char* p = g_map + 2 * k * PG;
        /* The syscalls themselves: ASan makes mlock() a no-op. */
        long r = kAdvised[k].advice < 0 ? syscall(SYS_mlock, p, 2 * PG)
                                        : syscall(SYS_madvise, p, 2 * PG, kAdvised[k].advice);
        if (r != 0) die(kAdvised[k].flag);
    }
}

/* The VmFlags line of the VMA that starts at `start`, or "" if none does. */
static const char* vmflags_at(unsigned long start) {
    static char buf[1 << 20];
    static char line[512];
    int fd = open("/proc/self/smaps", O_RDONLY);
    size_t n = 0;
    ssize_t r;
    while (fd >= 0 && n < sizeof buf - 1 && (r = read(fd, buf + n, sizeof buf - 1 - n)) > 0)
        n += (size_t)r;
    if (fd >= 0) close(fd);
    buf[n] = 0;
    char head[32];
    snprintf(head, sizeof head, "%lx-", start);
    for (char* p = buf; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, head, strlen(head)) != 0) continue;
        char* f = strstr(p, "VmFlags:");
        if (!f) return "";
        size_t len = strcspn(f, "\n");
        snprintf(line, sizeof line, "%.*s ", (int)len, f);
        return line;
    }
    return "";
}

static void madvise_check(void) {
    for (size_t i = 0; i < 2 * NADV * PG; ++i)
        if (g_map[i] != (unsigned char)(i * 13 + 7)) {
            fail("byte %zu differs", i);
            break;
        }
    for (size_t k = 0; k < NADV; ++k) {
        char want[8];
        snprintf(want, sizeof want, " %s ", kAdvised[k].flag);
        const char* got = vmflags_at((unsigned long)(g_map + 2 * k * PG));
        if (!*got)
            fail("no VMA starts at range %zu (%s): merged", k, kAdvised[k].flag);
        else if (!strstr(got, want))
            fail("range %zu lost %s: %s", k, kAdvised[k].flag, got);
    }
}

static const struct variant kVariants[] = {
    {"madvise", madvise_setup, madvise_check, NULL},
    {"subreaper", subreaper_setup, subreaper_check, NULL},
    {"nodump_root", nodump_root_setup, nodump_root_check, NULL},
    {"membarrier", membarrier_setup, membarrier_check, NULL},
    {"sched_rr", rr_setup, rr_check, NULL},
};
PROBE_MAIN(kVariants)
