/* timer: the POSIX timers that signal a thread other than the main one
 * (SIGEV_THREAD_ID; glibc's SIGEV_THREAD helper thread is one), made by the
 * main thread once every thread exists: the kernel takes as target only a
 * thread of the creator's group. Each gets its id (PR_TIMER_CREATE_RESTORE_IDS,
 * which stage 1 found to work), then its time (computed by state/timers.cc).
 * A signal that fires now stays pending: every thread blocks all signals
 * until its rt_sigreturn. Included by blob.c. */
#ifndef CRFS_BLOB_THREAD_TIMERS_H
#define CRFS_BLOB_THREAD_TIMERS_H

#define PR_TIMER_CREATE_RESTORE_IDS 77
#define SIGEV_THREAD_ID 4

struct kernel_sigevent { /* the kernel's struct sigevent (64 bytes) */
    uint64_t value;
    int32_t signo, notify, tid;
    int32_t pad[11];
};

static void make_thread_timers(const struct crfs_restorer_args* a) {
    const struct crfs_ra_posix_timer* t = (const struct crfs_ra_posix_timer*)a->thread_timers;
    if (!a->nr_thread_timers) return;
    long ret = sys2(NR_prctl, PR_TIMER_CREATE_RESTORE_IDS, 1);
    if (is_err(ret)) die(a, CRFS_RA_STEP_THREAD_TIMER, ret, (uint64_t)t[0].id);
    for (uint64_t i = 0; i < a->nr_thread_timers; ++i) {
        struct kernel_sigevent sev;
        memset(&sev, 0, sizeof sev);
        sev.value = t[i].sigval;
        sev.signo = t[i].signo;
        sev.notify = SIGEV_THREAD_ID;
        sev.tid = t[i].tid;
        int32_t id = t[i].id;
        ret = sys3(NR_timer_create, t[i].clockid, &sev, &id);
        if (is_err(ret)) die(a, CRFS_RA_STEP_THREAD_TIMER, ret, (uint64_t)t[i].id);
        if (id != t[i].id) die(a, CRFS_RA_STEP_THREAD_TIMER, -EEXIST, (uint64_t)t[i].id);
        ret = sys4(NR_timer_settime, id, t[i].settime_flags, t[i].its, 0);
        if (is_err(ret)) die(a, CRFS_RA_STEP_THREAD_TIMER, ret, (uint64_t)t[i].id);
    }
    sys2(NR_prctl, PR_TIMER_CREATE_RESTORE_IDS, 0);
}

#endif
