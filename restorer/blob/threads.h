/* The blob's thread step (included by blob.c; state/threads.h has the
 * driver's half). The main thread creates every other thread with clone3 and
 * its original tid and waits until each thread did its own steps (every
 * signal is blocked in the new thread: it inherits the main thread's mask,
 * so the private signals it queues to itself stay pending):
 *
 *   main thread                         thread (its blob stack)
 *   clone3(set_tid) ------------------> fs/gs base, robust list, rseq,
 *   wait until ready == nr_threads      tid address, comm, its private
 *                                       signals, credentials, slack,
 *                                       ioprio, pdeathsig, frame
 *                                       onto its own stack
 *   ...                       <-------- ready++ (only registers from here)
 *   'K', munmap the area                wait for go (on the sync page)
 *   [SIGSTOP itself]
 *   go = 1, wake -------------------->  rt_sigreturn through its frame
 *   rt_sigreturn
 *
 * A thread that fails reports on status_fd like the main thread and takes
 * the whole group down (exit_group): nothing of the task runs before 'K'. */
#ifndef CRFS_BLOB_THREADS_H
#define CRFS_BLOB_THREADS_H

#define CLONE_THREAD_FLAGS                                                       \
    (0x100 /* VM */ | 0x200 /* FS */ | 0x400 /* FILES */ | 0x800 /* SIGHAND */ | \
     0x10000 /* THREAD */ | 0x40000 /* SYSVSEM */)
#define FUTEX_WAIT_PRIVATE 128
#define FUTEX_WAKE_PRIVATE 129
#define PR_SET_NAME 15

struct clone_args_v1 { /* CLONE_ARGS_SIZE_VER1: set_tid */
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
        set_tid_size;
};

/* What every thread registers for itself: the kernel forgot it with the old
 * task. `strict`: the values come from the image, a failure is an error. */
static void own_registrations(const struct crfs_restorer_args* a, uint64_t robust_head,
                              uint64_t robust_len, uint64_t rseq_area, uint32_t rseq_len,
                              uint32_t rseq_sig, int strict, uint64_t cctid, uint64_t tid) {
    long ret;
    if (robust_head) {
        ret = sys2(NR_set_robust_list, robust_head, robust_len);
        if (is_err(ret)) die(a, CRFS_RA_STEP_THREAD_STATE, ret, tid);
    }
    if (rseq_area) {
        ret = sys4(NR_rseq, rseq_area, rseq_len, 0, rseq_sig);
        if (is_err(ret) && strict) die(a, CRFS_RA_STEP_THREAD_STATE, ret, tid);
    }
    sys1(NR_set_tid_address, cctid);
}

/* fid: what a thread holds of its own (state/thread_attrs.h), set after its
 * credentials (a credential change clears pdeathsig). */
#define PR_SET_PDEATHSIG 1
#define PR_SET_TIMERSLACK 29
static void own_attrs(const struct crfs_restorer_args* a, const struct crfs_ra_thread_attrs* t) {
    if (!t->present) return;
    uint64_t tag = (uint64_t)(uint32_t)t->tid << 8;
    long ret;
    if (t->timer_slack_ns) { /* 0: real-time, which has none */
        ret = sys2(NR_prctl, PR_SET_TIMERSLACK, t->timer_slack_ns);
        if (is_err(ret)) die(a, CRFS_RA_STEP_THREAD_ATTRS, ret, tag | 1);
    }
    ret = sys3(NR_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, 0, t->ioprio);
    /* No CONFIG_BLOCK: no I/O priorities, and none (0) is what every task has. */
    if (is_err(ret) && !(ret == -38 /* ENOSYS */ && t->ioprio == 0))
        die(a, CRFS_RA_STEP_THREAD_ATTRS, ret, tag | 2);
    if (t->pdeathsig) {
        ret = sys2(NR_prctl, PR_SET_PDEATHSIG, t->pdeathsig);
        if (is_err(ret)) die(a, CRFS_RA_STEP_THREAD_ATTRS, ret, tag | 3);
    }
    /* Set by restore_creds where it ran (with CAP_SETPCAP held for it);
     * else the thread's own rights decide. */
    if (securebits_differ(t)) set_securebits(a, t);
}

static __attribute__((noreturn, used)) void thread_main(const struct crfs_restorer_args* a,
                                                        const struct crfs_ra_thread* t) {
    long ret = sys2(NR_arch_prctl, ARCH_SET_FS, t->fs_base);
    if (is_err(ret)) die(a, CRFS_RA_STEP_TLS, ret, (uint64_t)t->tid);
    ret = sys2(NR_arch_prctl, ARCH_SET_GS, t->gs_base);
    if (is_err(ret)) die(a, CRFS_RA_STEP_TLS, ret, (uint64_t)t->tid);
    own_registrations(a, t->robust_head, t->robust_len, t->rseq_area, t->rseq_len, t->rseq_sig, 1,
                      t->clear_child_tid, (uint64_t)t->tid);
    sys2(NR_prctl, PR_SET_NAME, t->comm);
    /* Its private signals, queued by itself: the kernel takes a tkill-like
     * siginfo (SI_TKILL, si_code >= 0) only from the thread it is for. */
    const struct crfs_ra_siginfo* si = (const struct crfs_ra_siginfo*)t->siginfo;
    long pid = sys0(NR_getpid);
    for (uint64_t k = 0; k < t->nr_siginfo; ++k) {
        ret = sys4(NR_rt_tgsigqueueinfo, pid, t->tid, si[k].signo, si[k].info);
        if (is_err(ret)) die(a, CRFS_RA_STEP_SIGQUEUE, ret, (uint64_t)si[k].signo);
    }
    /* Credentials are per thread: each one takes the image's (or drops the
     * capability a non-root writer's task kept to create it). */
    if (a->set_creds) restore_creds(a, &t->attrs);
    if (a->drop_caps) drop_caps(a);
    own_attrs(a, &t->attrs);
    uint64_t frame = t->sigframe;
    if (t->sigframe_dst) {
        memcpy((void*)t->sigframe_dst, (const void*)t->sigframe, t->sigframe_len);
        frame = t->sigframe_dst;
    }
    struct crfs_ra_sync* s = (struct crfs_ra_sync*)a->sync;
    /* Only registers and the sync page from here on: the main thread unmaps
     * this stack (and `a`, `t`) once every thread is ready. */
    register uint64_t ready __asm__("r12") = (uint64_t)&s->ready;
    register uint64_t go __asm__("r13") = (uint64_t)&s->go;
    register uint64_t sp __asm__("r14") = frame + 8;
    __asm__ volatile(
        "lock incl (%%r12)\n"
        "mov %%r12, %%rdi\n" /* futex(&ready, FUTEX_WAKE_PRIVATE, 1) */
        "mov $129, %%esi\n"
        "mov $1, %%edx\n"
        "mov $202, %%eax\n"
        "syscall\n"
        "1:\n"
        "mov (%%r13), %%eax\n"
        "test %%eax, %%eax\n"
        "jnz 2f\n"
        "mov %%r13, %%rdi\n" /* futex(&go, FUTEX_WAIT_PRIVATE, 0, NULL) */
        "mov $128, %%esi\n"
        "xor %%edx, %%edx\n"
        "xor %%r10d, %%r10d\n"
        "mov $202, %%eax\n"
        "syscall\n"
        "jmp 1b\n"
        "2:\n"
        "mov %%r14, %%rsp\n"
        "mov $15, %%eax\n" /* rt_sigreturn */
        "syscall\n"
        "ud2\n"
        :
        : "r"(ready), "r"(go), "r"(sp)
        : "memory", "rax", "rcx", "rdx", "rsi", "rdi", "r10", "r11");
    __builtin_unreachable();
}

/* clone3 of one thread that starts in thread_main(a, t) on its blob stack. */
static long spawn_thread(struct clone_args_v1* ca, const struct crfs_restorer_args* a,
                         const struct crfs_ra_thread* t) {
    long ret;
    register uint64_t ra __asm__("r12") = (uint64_t)a;
    register uint64_t rt __asm__("r13") = (uint64_t)t;
    register uint64_t fn __asm__("r14") = (uint64_t)&thread_main;
    __asm__ volatile(
        "syscall\n"
        "test %%rax, %%rax\n"
        "jnz 1f\n"
        "mov %%r12, %%rdi\n" /* the new thread: its own stack, no way back */
        "mov %%r13, %%rsi\n"
        "xor %%ebp, %%ebp\n"
        "call *%%r14\n"
        "ud2\n"
        "1:\n"
        : "=a"(ret)
        : "0"((long)NR_clone3), "D"(ca), "S"(sizeof *ca), "r"(ra), "r"(rt), "r"(fn)
        : "memory", "rcx", "r11");
    return ret;
}

static void create_threads(const struct crfs_restorer_args* a) {
    const struct crfs_ra_thread* t = (const struct crfs_ra_thread*)a->threads;
    struct crfs_ra_sync* s = (struct crfs_ra_sync*)a->sync;
    for (uint64_t i = 0; i < a->nr_threads; ++i) {
        int32_t tid = t[i].tid;
        struct clone_args_v1 ca;
        memset(&ca, 0, sizeof ca);
        ca.flags = CLONE_THREAD_FLAGS;
        ca.stack = t[i].stack_top - 4096;
        ca.stack_size = 4096;
        ca.set_tid = (uint64_t)&tid;
        ca.set_tid_size = 1;
        /* The last thread of a killed process gives its tid back to the
         * pid allocator only after the exit was reported to the parent
         * (free_pids() runs after the tasklist lock: kernels 6.15+), so a
         * restore right after the reap can find the number still taken for
         * an instant. EEXIST is retried a bounded while (at most 200 x
         * 0.5 ms, nothing made meanwhile); a tid a live task holds still
         * fails, as before. */
        long ret;
        for (int tries = 0;; ++tries) {
            ret = spawn_thread(&ca, a, &t[i]);
            if (ret != -EEXIST || tries == 200) break;
            struct {
                long sec, nsec;
            } pause = {0, 500000};
            sys2(NR_nanosleep, &pause, 0);
        }
        if (is_err(ret)) die(a, CRFS_RA_STEP_THREAD, ret, (uint64_t)tid);
    }
    for (;;) {
        uint32_t n = __atomic_load_n(&s->ready, __ATOMIC_ACQUIRE);
        if (n >= a->nr_threads) break;
        sys4(NR_futex, &s->ready, FUTEX_WAIT_PRIVATE, n, 0);
    }
}

#endif
