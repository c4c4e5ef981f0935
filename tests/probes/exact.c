/* Probes of state restored exactly where it used to be refused (issue 9,
 * "prefer exact restore"): seccomp filters, and the variants that stay
 * refused. */
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "probe.h"

/* A filter returning `err` for syscall `nr`, allowing everything else. */
static void add_filter(int nr, int err, unsigned flags) {
    struct sock_filter f[] = {BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
                              BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
                              BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)err),
                              BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
    struct sock_fprog prog = {sizeof f / sizeof f[0], f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die("PR_SET_NO_NEW_PRIVS");
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog) != 0) die("seccomp");
}

static void expect_errno(const char* what, long nr, int err) {
    errno = 0;
    long r = syscall(nr);
    if (r != -1 || errno != err)
        fail("%s returned %ld errno %d, not -1 errno %d: the filter is gone", what, r, errno, err);
}

static unsigned status_field(const char* name) {
    FILE* f = fopen("/proc/self/status", "r");
    char line[256];
    unsigned v = ~0u;
    size_t n = strlen(name);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, name, n) == 0 && line[n] == ':')
            v = (unsigned)strtoul(line + n + 1, 0, 10);
    if (f) fclose(f);
    return v;
}

/* getpid answers EACCES: the filter acts after the restore. */
static void getpid_setup(void) {
    add_filter(SYS_getpid, EACCES, 0);
}
static void getpid_check(void) {
    expect_errno("getpid", SYS_getpid, EACCES);
    if (status_field("NoNewPrivs") != 1) fail("no_new_privs is %u", status_field("NoNewPrivs"));
    if (status_field("Seccomp_filters") != 1)
        fail("%u filters, not 1", status_field("Seccomp_filters"));
}

/* Two filters on one syscall, the older with SECCOMP_FILTER_FLAG_LOG: of two
 * SECCOMP_RET_ERRNO answers the newest filter's wins, so the order shows. */
static void stacked_setup(void) {
    add_filter(SYS_getppid, EPERM, SECCOMP_FILTER_FLAG_LOG);
    add_filter(SYS_getppid, ENOENT, 0);
    add_filter(SYS_getuid, ESRCH, 0);
}
static void stacked_check(void) {
    expect_errno("getppid", SYS_getppid, ENOENT);
    expect_errno("getuid", SYS_getuid, ESRCH);
    if (status_field("Seccomp_filters") != 3)
        fail("%u filters, not 3", status_field("Seccomp_filters"));
    if (status_field("Seccomp") != 2) fail("seccomp mode %u", status_field("Seccomp"));
}

static const struct variant kVariants[] = {
    {"seccomp_getpid", getpid_setup, getpid_check, NULL},
    {"seccomp_stacked", stacked_setup, stacked_check, NULL},
};
PROBE_MAIN(kVariants)
