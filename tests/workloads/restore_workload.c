// A self-checking restore workload (CRIU zdtm style), for state the
// checkpoint workload (ckpt_workload.c) does not cover:
//
//   restore_workload DIR BIG_MIB [ARGS...]     (env CRFS_WL_ENV must be set)
//
// Sets up: a BIG_MIB MiB buffer with a checksum, sparse and zero-page anon
// patterns, cwd DIR/sub, nice 5, RLIMIT_CORE, an x87 control word, a file read
// at an offset and an O_APPEND log, a standard signal pending while blocked,
// an SA_SIGINFO | SA_ONSTACK handler with a mask (raised after the restore),
// and (until SIGTERM) a pattern held in zmm17 (AVX-512) or ymm9 (AVX) inside
// one asm loop. Writes DIR/ready, waits for SIGTERM, then checks everything
// (argv through /proc/self/cmdline, env through /proc/self/environ), unblocks
// the pending signal (its handler must run), reads and appends after the
// restore, and writes DIR/result: PASS or FAIL: <mismatches>.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/rseq.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../support/put_file.h"

#define PAGE 4096

static volatile int g_term;
static volatile sig_atomic_t g_usr2;
static char g_dir[512];
static char g_fail[4096];

static void fail(const char* fmt, ...) {
    size_t n = strlen(g_fail);
    if (n > sizeof g_fail - 200) return;
    if (n) g_fail[n++] = ';', g_fail[n++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_fail + n, sizeof g_fail - n, fmt, ap);
    va_end(ap);
}

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}
static uint64_t sum(const void* p, size_t n) {
    const uint64_t* w = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n / 8; ++i) h = (h ^ w[i]) * 1099511628211ull;
    return h;
}

static void on_term(int s) {
    (void)s;
    g_term = 1;
}
static void on_usr2(int s) {
    (void)s;
    g_usr2++;
}

// SIGUSR1: SA_SIGINFO | SA_ONSTACK with SIGHUP in its mask; raised after the
// restore, it must run on the alternate stack with the mask and the siginfo.
static char g_altstack[64 * 1024];
static volatile int g_usr1_on_alt, g_usr1_masked, g_usr1_value = -1;
static void on_usr1(int s, siginfo_t* si, void* uc) {
    (void)s;
    (void)uc;
    char here;
    g_usr1_on_alt = &here >= g_altstack && &here < g_altstack + sizeof g_altstack;
    sigset_t cur;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    g_usr1_masked = sigismember(&cur, SIGHUP) && sigismember(&cur, SIGUSR1);
    g_usr1_value = si->si_code == SI_QUEUE ? si->si_value.sival_int : -2;
}

static void write_file(const char* name, const char* text) {
    if (put_file(g_dir, name, text) != 0) _exit(3);
}

static size_t read_proc(const char* name, char* buf, size_t cap) {
    int fd = open(name, O_RDONLY);
    if (fd < 0) return 0;
    size_t n = 0;
    ssize_t r;
    while (n < cap && (r = read(fd, buf + n, cap - n)) > 0) n += (size_t)r;
    close(fd);
    return n;
}

// Holds `pat` in a vector register until g_term, in one asm block.
__attribute__((target("avx512f"))) static int zmm_hold_ok(const uint64_t pat[8]) {
    uint64_t out[8];
    __asm__ volatile(
        "vmovdqu64 (%1), %%zmm17\n"
        "1: pause\n"
        "cmpl $0, (%2)\n"
        "je 1b\n"
        "vmovdqu64 %%zmm17, (%0)\n"
        :
        : "r"(out), "r"(pat), "r"(&g_term)
        : "xmm17", "memory", "cc");
    return memcmp(out, pat, sizeof out) == 0;
}
__attribute__((target("avx"))) static int ymm_hold_ok(const uint64_t pat[4]) {
    uint64_t out[4];
    __asm__ volatile(
        "vmovdqu (%1), %%ymm9\n"
        "1: pause\n"
        "cmpl $0, (%2)\n"
        "je 1b\n"
        "vmovdqu %%ymm9, (%0)\n"
        :
        : "r"(out), "r"(pat), "r"(&g_term)
        : "xmm9", "memory", "cc");
    return memcmp(out, pat, sizeof out) == 0;
}

int main(int argc, char** argv) {
    if (argc < 3 || !getenv("CRFS_WL_ENV")) {
        fprintf(stderr, "usage: CRFS_WL_ENV=x restore_workload DIR BIG_MIB [ARGS...]\n");
        return 2;
    }
    snprintf(g_dir, sizeof g_dir, "%s", argv[1]);
    size_t big_bytes = (size_t)atoi(argv[2]) << 20;
    char cmdline[8192], environ_before[65536];
    size_t cmdline_len = read_proc("/proc/self/cmdline", cmdline, sizeof cmdline);
    size_t env_len = read_proc("/proc/self/environ", environ_before, sizeof environ_before);
    char env_value[256];
    snprintf(env_value, sizeof env_value, "%s", getenv("CRFS_WL_ENV"));

    // --- memory -----------------------------------------------------------
    char* big = mmap(NULL, big_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (size_t i = 0; i < big_bytes / 8; ++i) ((uint64_t*)big)[i] = rnd();
    uint64_t big_sum = sum(big, big_bytes);
    size_t sparse_len = 1024 * PAGE;
    char* sparse =
        mmap(NULL, sparse_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (size_t p = 0; p < sparse_len / PAGE; p += 3) sparse[p * PAGE + p % PAGE] = (char)(p | 1);
    memset(sparse + 10 * PAGE, 0, PAGE);  // touched but zero
    uint64_t sparse_sum = sum(sparse, sparse_len);
    char* ro = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(ro, 0x5a, 4 * PAGE);
    mprotect(ro, 4 * PAGE, PROT_READ);
    mprotect(ro + PAGE, PAGE, PROT_READ | PROT_EXEC);

    // --- fs context, scheduling, limits -------------------------------------
    char sub[600];
    snprintf(sub, sizeof sub, "%s/sub", g_dir);
    mkdir(sub, 0755);
    if (chdir(sub) != 0) return 3;
    setpriority(PRIO_PROCESS, 0, 5);
    struct rlimit core = {12345 * 4096, RLIM_INFINITY};
    setrlimit(RLIMIT_CORE, &core);
    umask(0062);
    unsigned short cw = 0x0f7f, cw2 = 0;  // x87: extended precision, round up, masked
    __asm__ volatile("fldcw %0" : : "m"(cw));

    // --- files ------------------------------------------------------------
    char path[700];
    snprintf(path, sizeof path, "%s/in", g_dir);
    int in = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    char pattern[8192];
    for (size_t i = 0; i < sizeof pattern; ++i) pattern[i] = (char)('a' + i % 26);
    if (write(in, pattern, sizeof pattern) != (ssize_t)sizeof pattern) return 3;
    lseek(in, 100, SEEK_SET);
    char first[10];
    if (read(in, first, sizeof first) != (ssize_t)sizeof first) return 3;  // now at 110
    snprintf(path, sizeof path, "%s/log", g_dir);
    int log = open("../log", O_WRONLY | O_CREAT | O_APPEND | O_TRUNC, 0600);
    if (write(log, "before\n", 7) != 7) return 3;
    lseek(log, 0, SEEK_SET);  // O_APPEND writes still go to the end

    // --- signals ----------------------------------------------------------
    stack_t ss = {.ss_sp = g_altstack, .ss_size = sizeof g_altstack, .ss_flags = 0};
    sigaltstack(&ss, NULL);
    struct sigaction sa = {0};
    sa.sa_sigaction = on_usr1;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGHUP);
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGTERM, on_term);
    signal(SIGUSR2, on_usr2);
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    sigprocmask(SIG_BLOCK, &usr2, NULL);
    kill(getpid(), SIGUSR2);  // pending, blocked: must survive and be delivered later

    write_file("ready", "ready\n");

    int avx512 = __builtin_cpu_supports("avx512f");
    uint64_t pat[8];
    for (int i = 0; i < 8; ++i) pat[i] = rnd();
    int reg_ok = avx512 ? zmm_hold_ok(pat) : ymm_hold_ok(pat);

    // --- check ------------------------------------------------------------
    if (!reg_ok) fail("%s register changed", avx512 ? "zmm17" : "ymm9");
    if (sum(big, big_bytes) != big_sum) fail("big buffer checksum");
    if (sum(sparse, sparse_len) != sparse_sum) fail("sparse pattern");
    for (int i = 0; i < 4 * PAGE; ++i)
        if (ro[i] != 0x5a) {
            fail("read-only pages");
            break;
        }
    char now[8192];
    size_t now_len = read_proc("/proc/self/cmdline", now, sizeof now);
    if (now_len != cmdline_len || memcmp(now, cmdline, now_len)) fail("/proc/self/cmdline differs");
    static char env_now[65536];
    size_t env_now_len = read_proc("/proc/self/environ", env_now, sizeof env_now);
    if (env_now_len != env_len || memcmp(env_now, environ_before, env_len))
        fail("/proc/self/environ differs");
    if (!getenv("CRFS_WL_ENV") || strcmp(getenv("CRFS_WL_ENV"), env_value)) fail("getenv");
    char cwd[700];
    if (!getcwd(cwd, sizeof cwd) || strcmp(cwd, sub)) fail("cwd %s, expected %s", cwd, sub);
    errno = 0;
    if (getpriority(PRIO_PROCESS, 0) != 5) fail("nice %d", getpriority(PRIO_PROCESS, 0));
    struct rlimit c2;
    getrlimit(RLIMIT_CORE, &c2);
    if (c2.rlim_cur != core.rlim_cur || c2.rlim_max != core.rlim_max) fail("RLIMIT_CORE");
    mode_t um = umask(0);
    if (um != 0062) fail("umask %o", um);
    __asm__ volatile("fnstcw %0" : "=m"(cw2));
    if (cw2 != cw) fail("x87 control word %#x", cw2);
    char next[10];
    if (read(in, next, sizeof next) != 10 || memcmp(next, pattern + 110, 10))
        fail("read at offset 110");
    if (write(log, "after\n", 6) != 6) fail("append after restore");
    char logbuf[64] = {0};
    if (pread(in, logbuf, 0, 0) < 0) fail("pread");
    int lr = open("../log", O_RDONLY);
    ssize_t ln = read(lr, logbuf, sizeof logbuf - 1);
    if (ln != 13 || strcmp(logbuf, "before\nafter\n")) fail("log holds '%s'", logbuf);
    // glibc registered rseq in our TLS; the restore must have registered it
    // again (a second registration of the same area is EBUSY).
    if (__rseq_size > 0) {
        void* area = (char*)__builtin_thread_pointer() + __rseq_offset;
        long r = syscall(SYS_rseq, area, __rseq_size < 32 ? 32 : __rseq_size, 0, RSEQ_SIG);
        if (r == 0 || errno != EBUSY)
            fail("rseq not registered after restore (%ld, errno %d)", r, errno);
    }
    union sigval v = {.sival_int = 4242};
    sigqueue(getpid(), SIGUSR1, v);
    if (g_usr1_value != 4242) fail("SA_SIGINFO handler saw value %d", g_usr1_value);
    if (!g_usr1_on_alt) fail("SIGUSR1 handler not on the alternate stack");
    if (!g_usr1_masked) fail("SIGUSR1 handler ran without its mask");
    sigset_t pend;
    sigpending(&pend);
    if (!sigismember(&pend, SIGUSR2)) fail("SIGUSR2 no longer pending");
    sigprocmask(SIG_UNBLOCK, &usr2, NULL);
    if (g_usr2 != 1) fail("SIGUSR2 handler ran %d times after unblocking", (int)g_usr2);

    char result[4200];
    snprintf(result, sizeof result, "%s%s\n", g_fail[0] ? "FAIL: " : "PASS", g_fail);
    write_file("result", result);
    return 0;
}
