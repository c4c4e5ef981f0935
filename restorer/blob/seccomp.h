/* The blob's seccomp step (included by blob.c; state/seccomp.cc has the
 * driver's half). The task's filters go in oldest first, as the very last
 * step before the 'K' report and rt_sigreturn: they may forbid what the blob
 * did before. The driver has checked that they let the syscalls after this
 * one through (state::check_seccomp_allows). The kernel decides whether the
 * writer's task may install them (no_new_privs, or CAP_SYS_ADMIN). */
#ifndef CRFS_BLOB_SECCOMP_H
#define CRFS_BLOB_SECCOMP_H

#define NR_seccomp 317
#define SECCOMP_SET_MODE_FILTER 1

static void install_seccomp(const struct crfs_restorer_args* a) {
    const struct crfs_ra_seccomp* f = (const struct crfs_ra_seccomp*)a->seccomp;
    for (uint64_t i = 0; i < a->nr_seccomp; ++i) {
        struct { /* struct sock_fprog */
            uint16_t len;
            uint16_t pad[3];
            uint64_t filter;
        } prog = {(uint16_t)f[i].len, {0, 0, 0}, f[i].insns};
        long ret = sys3(NR_seccomp, SECCOMP_SET_MODE_FILTER, f[i].flags, &prog);
        if (is_err(ret)) die(a, CRFS_RA_STEP_SECCOMP, ret, i);
    }
}

#endif
