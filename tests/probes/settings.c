/* fidelity: per-task settings restored exactly through the settings record
 * (checkpoint/settings.cc, restorer/settings.cc). The single settings of
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

static const struct variant kVariants[] = {
    {"subreaper", subreaper_setup, subreaper_check, NULL},
    {"nodump_root", nodump_root_setup, nodump_root_check, NULL},
    {"membarrier", membarrier_setup, membarrier_check, NULL},
    {"sched_rr", rr_setup, rr_check, NULL},
};
PROBE_MAIN(kVariants)
