/* Signal probes: handlers, flags and the blocked mask round-trip; a task
 * waiting in sigsuspend (temporary mask) is refused. */
#include "probe.h" /* first: it defines _GNU_SOURCE */

#include <poll.h>

static volatile sig_atomic_t g_usr1;
static void on_usr1(int sig) {
    (void)sig;
    g_usr1++;
}

static void handlers_setup(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART | SA_NODEFER;
    sigaddset(&sa.sa_mask, SIGHUP);
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR2);
    sigprocmask(SIG_BLOCK, &m, NULL);
    raise(SIGUSR2); /* stays pending */
}
static void handlers_check(void) {
    struct sigaction sa;
    sigaction(SIGUSR1, NULL, &sa);
    if (sa.sa_handler != on_usr1) fail("SIGUSR1 handler lost");
    if ((sa.sa_flags & (SA_RESTART | SA_NODEFER)) != (SA_RESTART | SA_NODEFER))
        fail("SIGUSR1 flags %x", sa.sa_flags);
    if (!sigismember(&sa.sa_mask, SIGHUP)) fail("SIGUSR1 sa_mask lost SIGHUP");
    sigaction(SIGPIPE, NULL, &sa);
    if (sa.sa_handler != SIG_IGN) fail("SIGPIPE no longer ignored");
    sigset_t m;
    sigprocmask(SIG_BLOCK, NULL, &m);
    if (!sigismember(&m, SIGUSR2)) fail("SIGUSR2 no longer blocked");
    sigpending(&m);
    if (!sigismember(&m, SIGUSR2)) fail("pending SIGUSR2 lost");
    raise(SIGUSR1);
    if (g_usr1 != 1) fail("SIGUSR1 handler did not run");
}

static void sigsuspend_setup(void) {
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR2);
    sigaddset(&m, SIGTERM);
    sigprocmask(SIG_BLOCK, &m, NULL);
}
static void sigsuspend_wait(void) {
    sigset_t tmp;
    sigemptyset(&tmp);
    while (!g_term) sigsuspend(&tmp); /* real mask: USR2 and TERM blocked */
}
static void sigsuspend_check(void) {
    sigset_t m;
    sigprocmask(SIG_BLOCK, NULL, &m);
    if (!sigismember(&m, SIGUSR2)) fail("real mask lost after sigsuspend");
}

static void ppoll_wait(void) {
    sigset_t tmp;
    sigemptyset(&tmp);
    while (!g_term) ppoll(NULL, 0, NULL, &tmp);
}

static const struct variant kVariants[] = {
    {"handlers", handlers_setup, handlers_check, NULL},
    {"sigsuspend", sigsuspend_setup, sigsuspend_check, sigsuspend_wait},
    {"ppoll", sigsuspend_setup, sigsuspend_check, ppoll_wait},
};
PROBE_MAIN(kVariants)
