/* fid: a task checkpointed inside a syscall the kernel restarts comes back
 * inside it, and a handled signal ends that one call with EINTR, as it would
 * have without the checkpoint (state/restart.h). Each variant waits in ONE
 * call (no loop around it): a restored task that ran the handler and went back
 * into the call never writes its result.
 *
 * SIGTERM (run_probes.py) or SIGUSR1 (tests/cr/syscall_restart_test.py, sent
 * while the task is stopped, before SIGCONT) ends the call.
 */
#include "probe.h"

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>

static volatile sig_atomic_t g_usr1; /* how many times on_usr1 ran */
static int g_ret, g_errno;

static void on_usr1(int sig) {
    (void)sig;
    g_usr1 = g_usr1 + 1;
}

static void handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    if (sigaction(SIGUSR1, &sa, NULL) != 0) die("sigaction SIGUSR1");
}

static void check_eintr(void) {
    if (g_ret != -1 || g_errno != EINTR)
        fail("the call returned %d (errno %d), not -1 with EINTR", g_ret, g_errno);
    if (!g_term && !g_usr1) fail("no handler ran");
}

static void pause_wait(void) {
    g_ret = pause();
    g_errno = errno;
}

static void sigsuspend_wait(void) {
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR2); /* a mask of its own while it waits */
    g_ret = sigsuspend(&m);
    g_errno = errno;
    sigset_t now;
    sigprocmask(SIG_BLOCK, NULL, &now);
    if (sigismember(&now, SIGUSR2)) fail("sigsuspend's mask stayed after it returned");
}

static void nanosleep_wait(void) {
    /* -ERESTART_RESTARTBLOCK: EINTR with a handler, whatever is left. */
    struct timespec ts = {100000, 0}, left = {0, 0};
    g_ret = nanosleep(&ts, &left);
    g_errno = errno;
    if (g_ret == -1 && left.tv_sec == 0 && left.tv_nsec == 0) fail("no time left reported");
}

/* SCHED_IDLE: the blob's last instructions are slow to be scheduled under
 * load, so SIGTERM often lands between rt_sigreturn and the pause() it
 * re-executes (the case that was a known gap). The probe harness's own
 * wait loops around pause(): a lost EINTR would only cost one more pause,
 * so this variant waits in one call too. */
static void idle_setup(void) {
    struct sched_param p = {0};
    if (sched_setscheduler(0, SCHED_IDLE, &p) != 0) die("SCHED_IDLE");
}
static void idle_check(void) {
    if (sched_getscheduler(0) != SCHED_IDLE) fail("policy %d", sched_getscheduler(0));
    check_eintr();
}

/* A tree (state/tree_restore.cc): a child waits in ONE pause() too, and
 * exits 0 when that call ended with EINTR after its handler's one run: a
 * handler run outside the call (the signal handled before the restored child
 * was inside again) and the call entered again would need a second signal to
 * end, and counts two. The root waits as pause_eintr. Ended by SIGTERM (the
 * contract test, which signals the root only), its check sends the child
 * SIGUSR1; ended by SIGUSR1 (tests/cr/syscall_restart_test.py, which stops
 * both and signals the child first, its pid from DIR/kid), the child was
 * signalled already: a second SIGUSR1 could land during its handler and run
 * it twice. Then it reaps the child. */
static pid_t g_kid;

static void tree_setup(void) {
    handlers();
    g_kid = fork();
    if (g_kid < 0) die("fork");
    if (g_kid == 0) {
        int ret = pause();
        /* 0: EINTR after one handler run; else 1 + 2 x the runs, + 1 if not EINTR */
        int eintr = ret == -1 && errno == EINTR;
        _exit(eintr && g_usr1 == 1 ? 0 : 1 + 2 * g_usr1 + !eintr);
    }
    char text[32];
    snprintf(text, sizeof text, "%d\n", (int)g_kid);
    write_file(at("kid"), text);
}

static void tree_check(void) {
    check_eintr();
    if (g_term && kill(g_kid, SIGUSR1) != 0)
        fail("child %d: kill: %s", (int)g_kid, strerror(errno));
    int st = 0;
    /* bounded: a child asleep for good (in pause again) fails, not hangs */
    for (int i = 0; i < 20000; ++i) {
        pid_t w = waitpid(g_kid, &st, WNOHANG);
        if (w == g_kid) {
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                fail(
                    "child %d: its pause did not end with EINTR after one handler run "
                    "(status 0x%x: exit 1 + 2 x handler runs, + 1 if not EINTR)",
                    (int)g_kid, st);
            return;
        }
        if (w < 0) {
            fail("child %d: waitpid: %s", (int)g_kid, strerror(errno));
            return;
        }
        usleep(1000);
    }
    kill(g_kid, SIGKILL);
    waitpid(g_kid, &st, 0);
    fail("child %d still in its call", (int)g_kid);
}

/* A thread other than the main one (its own syscall-restart record): it
 * waits in ONE pause() with SIGUSR1 and SIGTERM let through (every other
 * signal blocked); the main thread blocks every signal and waits in pthread_join, so
 * the signal that ends the call (SIGUSR1 from tests/cr/
 * syscall_restart_test.py while the task is stopped, SIGTERM from the
 * contract test) is the thread's. The main thread has no hand-off of its own
 * (no handler can run on it): a stopped task restored before that stopped at
 * once and let its threads return to their frames only at SIGCONT, where the
 * pending signal ran the handler on the restarted registers and the pause()
 * was entered again, for good. The call must end with EINTR after one
 * handler run. */
static pthread_t g_thread;
static volatile int g_thread_ret, g_thread_errno;
static volatile pid_t g_thread_tid;

static void* thread_wait(void* arg) {
    (void)arg;
    g_thread_tid = (pid_t)syscall(SYS_gettid);
    int ret = pause();
    g_thread_errno = errno;
    g_thread_ret = ret;
    return NULL;
}

static int thread_in_pause(void) {
    char path[64], text[32] = "";
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)g_thread_tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("the thread's syscall");
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    return n > 3 && strncmp(text, "34 ", 3) == 0;
}

static void thread_setup(void) {
    handlers();
    sigset_t mask;
    sigfillset(&mask);
    sigdelset(&mask, SIGUSR1);
    sigdelset(&mask, SIGTERM);
    pthread_sigmask(SIG_SETMASK, &mask, NULL); /* the thread's: SIGUSR1 and SIGTERM only */
    if (pthread_create(&g_thread, NULL, thread_wait, NULL) != 0) die("pthread_create");
    /* the main thread's: none, glibc's SIGSETXID (a handler) too, which
     * pthread_sigmask would let through */
    uint64_t all = ~0ull;
    if (syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, NULL, sizeof all) != 0)
        die("rt_sigprocmask");
    while (!g_thread_tid) sched_yield();
    while (!thread_in_pause()) sched_yield(); /* ready once it is inside pause (34) */
}

static void thread_join(void) {
    /* the test waits for this thread in futex (202): for good if the thread's
     * pause() never ends (the verdict is then missing, the test fails) */
    if (pthread_join(g_thread, NULL) != 0) fail("pthread_join");
}

static void thread_check(void) {
    if (g_thread_ret != -1 || g_thread_errno != EINTR)
        fail("the thread's pause returned %d (errno %d), not -1 with EINTR", g_thread_ret,
             g_thread_errno);
    if (g_usr1 + g_term != 1)
        fail("%d SIGUSR1 and %d SIGTERM handler runs, not one", (int)g_usr1, (int)g_term);
}

/* A process that ends, or execs, right after its restore, while the
 * hand-offs of its threads are still being followed (tests/cr/
 * syscall_restart_test.py, not the contract test): kThreads threads in
 * pause() with a SIGUSR1 handler (each handed its syscall back, one after
 * another), the main thread with every signal blocked (traced only, so it
 * runs first) waiting for DIR/go, which the test makes before it restores.
 * Then it returns from main (exit_group) or execs this probe ("exec_done"),
 * which kills the threads still traced. A restore that took a thread killed
 * so for its own failure reported an error for a process that ran. */
enum { kThreads = 16 };
static volatile pid_t g_tids[kThreads];

static void* thread_sleep(void* arg) {
    g_tids[(intptr_t)arg] = (pid_t)syscall(SYS_gettid);
    for (;;) pause();
    return NULL;
}

static void threads_setup(void) {
    handlers();
    sigset_t mask;
    sigfillset(&mask);
    sigdelset(&mask, SIGUSR1);
    pthread_sigmask(SIG_SETMASK, &mask, NULL); /* the threads': SIGUSR1 only */
    for (intptr_t i = 0; i < kThreads; ++i) {
        pthread_t t;
        if (pthread_create(&t, NULL, thread_sleep, (void*)i) != 0) die("pthread_create");
    }
    uint64_t all = ~0ull; /* the main thread's: none (see thread_setup) */
    if (syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, NULL, sizeof all) != 0)
        die("rt_sigprocmask");
    for (int i = 0; i < kThreads; ++i) {
        while (!g_tids[i]) sched_yield();
        g_thread_tid = g_tids[i];
        while (!thread_in_pause()) sched_yield();
    }
}

static void wait_go(void) {
    while (access(at("go"), F_OK) != 0) usleep(1000);
}

static void exec_go(void) {
    wait_go();
    execl("/proc/self/exe", "probe_restart", "exec_done", g_dir, (char*)NULL);
    fail("execl: %s", strerror(errno));
}

static void nothing(void) {}

/* The same, ended by a thread of its own with no hand-off (every signal
 * blocked), while the main thread, in pause() with its handlers, is still
 * being followed or just was. */
static void* exit_on_go(void* arg) {
    (void)arg;
    uint64_t all = ~0ull;
    if (syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, NULL, sizeof all) != 0) _exit(3);
    wait_go();
    write_file(at("result"), "PASS\n");
    exit(0);
}

static void thread_exits_setup(void) {
    threads_setup();
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL); /* the main thread's: its handlers run */
    pthread_t t;
    if (pthread_create(&t, NULL, exit_on_go, NULL) != 0) die("pthread_create");
}

static const struct variant kVariants[] = {
    {"pause_eintr", handlers, check_eintr, pause_wait},
    {"sigsuspend_eintr", handlers, check_eintr, sigsuspend_wait},
    {"nanosleep_eintr", handlers, check_eintr, nanosleep_wait},
    {"sched_idle", idle_setup, idle_check, pause_wait},
    {"tree_pause", tree_setup, tree_check, pause_wait},
    {"thread_pause", thread_setup, thread_check, thread_join},
    {"threads_exit", threads_setup, nothing, wait_go},
    {"threads_exec", threads_setup, nothing, exec_go},
    {"exec_done", nothing, nothing, nothing},
    {"thread_exits", thread_exits_setup, nothing, NULL},
};
PROBE_MAIN(kVariants)
