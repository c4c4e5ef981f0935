/* fid: what each thread holds of its own comes back per thread
 * (state/thread_attrs.h): timer slack, I/O priority, pdeathsig and
 * securebits.
 *
 *   per_thread  the main thread and two others, each with its own timer slack,
 *            I/O priority (best-effort 5, idle, best-effort 2 with a
 *            hint) and securebits (one with a lock).
 *   child    the same in a child process and its thread, which also have
 *            a pdeathsig each (SIGKILL, SIGUSR1): their parent is in the
 *            image, so it comes back. The child checks itself on SIGTERM
 *            from the parent's check and writes DIR/child_result.
 * The image's root has no pdeathsig: it would not come back (its restored
 * parent is crfsd; docs/state.md). */
#include "probe.h"

#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define IOPRIO(cls, hint, level) (((cls) << 13) | ((hint) << 3) | (level))
enum { kBestEffort = 2, kIdle = 3 };

/* linux/securebits.h */
enum {
    kNoroot = 1 << 0,
    kNorootLocked = 1 << 1,
    kNoSetuidFixup = 1 << 2,
    kKeepCaps = 1 << 4,
    kNoCapAmbientRaise = 1 << 6,
};

struct want {
    unsigned long slack;
    int ioprio;
    int pdeathsig;
    int securebits;
};
struct got {
    long slack;
    int ioprio;
    int pdeathsig;
    int securebits;
};

static void set_own(const struct want* w) {
    if (prctl(PR_SET_TIMERSLACK, w->slack) != 0) die("PR_SET_TIMERSLACK");
    if (syscall(SYS_ioprio_set, 1, 0, w->ioprio) != 0) die("ioprio_set");
    if (w->pdeathsig && prctl(PR_SET_PDEATHSIG, w->pdeathsig) != 0) die("PR_SET_PDEATHSIG");
    if (prctl(PR_SET_SECUREBITS, w->securebits) != 0) die("PR_SET_SECUREBITS");
}

static void get_own(struct got* g) {
    g->slack = prctl(PR_GET_TIMERSLACK);
    g->ioprio = (int)syscall(SYS_ioprio_get, 1, 0);
    g->pdeathsig = -1;
    prctl(PR_GET_PDEATHSIG, &g->pdeathsig);
    g->securebits = prctl(PR_GET_SECUREBITS);
}

static void compare(const char* who, const struct want* w, const struct got* g,
                    void (*report)(const char*, ...)) {
    if (g->slack != (long)w->slack) report("%s: timer slack %ld, not %lu", who, g->slack, w->slack);
    if (g->ioprio != w->ioprio) report("%s: ioprio 0x%x, not 0x%x", who, g->ioprio, w->ioprio);
    if (g->pdeathsig != w->pdeathsig)
        report("%s: pdeathsig %d, not %d", who, g->pdeathsig, w->pdeathsig);
    if (g->securebits != w->securebits)
        report("%s: securebits 0x%x, not 0x%x", who, g->securebits, w->securebits);
}

/* Threads that set their own values, then read them again when asked. */
#define kMaxThreads 2
static pthread_barrier_t g_ready, g_ask, g_told;
static struct want g_want[kMaxThreads];
static struct got g_got[kMaxThreads];
static pthread_t g_threads[kMaxThreads];
static int g_nthreads;

/* A thread with SIGTERM blocked: it is for the main thread's pause. */
static void create(pthread_t* t, void* (*body)(void*), void* arg) {
    sigset_t term, old;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &term, &old);
    if (pthread_create(t, NULL, body, arg) != 0) die("pthread_create");
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void* thread_main(void* arg) {
    long i = (long)arg;
    set_own(&g_want[i]);
    pthread_barrier_wait(&g_ready);
    pthread_barrier_wait(&g_ask);
    get_own(&g_got[i]);
    pthread_barrier_wait(&g_told);
    return NULL;
}

static void start_threads(const struct want* w, int n) {
    g_nthreads = n;
    pthread_barrier_init(&g_ready, NULL, (unsigned)n + 1);
    pthread_barrier_init(&g_ask, NULL, (unsigned)n + 1);
    pthread_barrier_init(&g_told, NULL, (unsigned)n + 1);
    for (long i = 0; i < n; ++i) {
        g_want[i] = w[i];
        create(&g_threads[i], thread_main, (void*)i);
    }
    pthread_barrier_wait(&g_ready);
}

static void check_threads(const char* where, void (*report)(const char*, ...)) {
    pthread_barrier_wait(&g_ask);
    pthread_barrier_wait(&g_told);
    for (int i = 0; i < g_nthreads; ++i) {
        pthread_join(g_threads[i], NULL);
        char who[64];
        snprintf(who, sizeof who, "%s thread %d", where, i + 1);
        compare(who, &g_want[i], &g_got[i], report);
    }
}

static const struct want kMain = {111111, IOPRIO(kBestEffort, 0, 5), 0,
                                  kNoSetuidFixup | kKeepCaps};
static const struct want kOthers[kMaxThreads] = {
    {222222, IOPRIO(kIdle, 0, 0), 0, kNoroot},
    {333333, IOPRIO(kBestEffort, 1, 2), 0, kNoroot | kNorootLocked | kNoCapAmbientRaise}};

static void threads_setup(void) {
    set_own(&kMain);
    start_threads(kOthers, 2);
}
static void threads_check(void) {
    struct got g;
    get_own(&g);
    compare("main thread", &kMain, &g, fail);
    check_threads("", fail);
}

/* The child: its own values and one thread's, each with a pdeathsig. */
static const struct want kChildMain = {444444, IOPRIO(kIdle, 0, 0), SIGKILL, kKeepCaps};
static const struct want kChildThread[1] = {{555555, IOPRIO(kBestEffort, 0, 7), SIGUSR1, 0}};
static pid_t g_child;

static void child_main(int ready) {
    set_own(&kChildMain);
    start_threads(kChildThread, 1);
    close(ready);
    wait_pause();
    struct got g;
    get_own(&g);
    compare("child main thread", &kChildMain, &g, fail);
    check_threads("child", fail);
    write_file(at("child_result"), g_fail[0] ? g_fail : "PASS");
    _exit(0);
}

static void child_setup(void) {
    set_own(&kMain);
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) die("pipe");
    g_child = fork();
    if (g_child < 0) die("fork");
    if (g_child == 0) {
        close(p[0]);
        child_main(p[1]);
    }
    close(p[1]);
    char x;
    (void)!read(p[0], &x, 1); /* end of file: the child is set up */
    close(p[0]);
}
static void child_check(void) {
    struct got g;
    get_own(&g);
    compare("main thread", &kMain, &g, fail);
    kill(g_child, SIGTERM);
    int st = 0;
    if (waitpid(g_child, &st, 0) != g_child || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fail("child %d: wait status 0x%x", (int)g_child, st);
        return;
    }
    char buf[4096] = {0};
    int fd = open(at("child_result"), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, buf, sizeof buf - 1) < 0) {
        fail("no child_result");
    } else if (strcmp(buf, "PASS") != 0) {
        fail("%s", buf);
    }
    if (fd >= 0) close(fd);
    unlink(at("child_result"));
}

/* Refused: a thread with SCHED_RESET_ON_FORK of its own (a new thread never
 * has it), and a main thread with it and a negative nice whose threads share
 * that nice (created again, they would get nice 0). */
static void* reset_thread(void* arg) {
    (void)arg;
    struct sched_param sp = {0};
    if (sched_setscheduler(0, SCHED_OTHER | SCHED_RESET_ON_FORK, &sp) != 0)
        die("sched_setscheduler");
    pthread_barrier_wait(&g_ready);
    pthread_barrier_wait(&g_ask);
    return NULL;
}
static void* nice_thread(void* arg) {
    (void)arg;
    if (setpriority(PRIO_PROCESS, 0, -3) != 0) die("setpriority");
    pthread_barrier_wait(&g_ready);
    pthread_barrier_wait(&g_ask);
    return NULL;
}
static void start_one(void* (*body)(void*)) {
    pthread_barrier_init(&g_ready, NULL, 2);
    pthread_barrier_init(&g_ask, NULL, 2);
    create(&g_threads[0], body, NULL);
    pthread_barrier_wait(&g_ready);
}
static void end_one(void) {
    pthread_barrier_wait(&g_ask);
    pthread_join(g_threads[0], NULL);
}
static void reset_thread_setup(void) {
    start_one(reset_thread);
}
static void reset_nice_setup(void) {
    start_one(nice_thread);
    struct sched_param sp = {0};
    if (setpriority(PRIO_PROCESS, 0, -3) != 0 ||
        sched_setscheduler(0, SCHED_OTHER | SCHED_RESET_ON_FORK, &sp) != 0)
        die("nice -3 with reset-on-fork");
}

/* A user's task with securebits a root process gave it before setuid (as
 * capsh --secbits does): no capabilities, so no right to set them itself.
 * The root writer sets them, holding CAP_SETPCAP only for that. */
static void securebits_user_setup(void) {
    if (chmod(g_dir, 0777) != 0) die("chmod"); /* its ready and result files */
    for (int fd = 0; fd <= 2; ++fd) { /* the runner's files, which the restore opens as it */
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && fchown(fd, 65534, 65534) != 0)
            die("fchown");
    }
    if (prctl(PR_SET_SECUREBITS, kNoroot | kNorootLocked) != 0) die("PR_SET_SECUREBITS");
    if (setgroups(0, NULL) != 0 || setresgid(65534, 65534, 65534) != 0 ||
        setresuid(65534, 65534, 65534) != 0)
        die("setresuid 65534");
    if (prctl(PR_SET_DUMPABLE, 1) != 0) die("PR_SET_DUMPABLE"); /* cleared by setuid */
}
static void securebits_user_check(void) {
    int bits = prctl(PR_GET_SECUREBITS);
    if (bits != (kNoroot | kNorootLocked))
        fail("securebits 0x%x, not 0x%x", bits, kNoroot | kNorootLocked);
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) != 0) {
        fail("capget: %s", strerror(errno));
        return;
    }
    if (d[0].effective | d[1].effective | d[0].permitted | d[1].permitted)
        fail("capabilities left: permitted 0x%x%08x effective 0x%x%08x", d[1].permitted,
             d[0].permitted, d[1].effective, d[0].effective);
    if (getuid() != 65534 || geteuid() != 65534) fail("uid %d euid %d", getuid(), geteuid());
}

static const struct variant kVariants[] = {
    {"per_thread", threads_setup, threads_check, NULL},
    {"child", child_setup, child_check, NULL},
    {"reset_thread", reset_thread_setup, end_one, NULL},
    {"reset_nice", reset_nice_setup, end_one, NULL},
    {"securebits_user", securebits_user_setup, securebits_user_check, NULL},
};
PROBE_MAIN(kVariants)
