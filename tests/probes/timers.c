/* Timer probes: an itimer round-trips; a POSIX timer is refused. */
#include "probe.h" /* first: it defines _GNU_SOURCE */

#include <sys/time.h>
#include <time.h>

static void itimer_setup(void) {
    signal(SIGALRM, SIG_IGN);
    struct itimerval v = {.it_interval = {500, 0}, .it_value = {1000, 0}};
    if (setitimer(ITIMER_REAL, &v, NULL) != 0) die("setitimer");
}
static void itimer_check(void) {
    struct itimerval v;
    getitimer(ITIMER_REAL, &v);
    if (v.it_interval.tv_sec != 500) fail("interval %lds, want 500", (long)v.it_interval.tv_sec);
    if (v.it_value.tv_sec <= 0 || v.it_value.tv_sec > 1000)
        fail("remaining %lds, want (0, 1000]", (long)v.it_value.tv_sec);
}

static timer_t g_timer;
static void posix_setup(void) {
    struct sigevent ev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1};
    if (timer_create(CLOCK_MONOTONIC, &ev, &g_timer) != 0) die("timer_create");
    struct itimerspec t = {.it_value = {1000, 0}};
    timer_settime(g_timer, 0, &t, NULL);
}
static void posix_check(void) {
    struct itimerspec t;
    if (timer_gettime(g_timer, &t) != 0)
        fail("timer gone: %s", strerror(errno));
    else if (t.it_value.tv_sec <= 0)
        fail("timer disarmed");
}

static const struct variant kVariants[] = {
    {"itimer", itimer_setup, itimer_check, NULL},
    {"posix", posix_setup, posix_check, NULL},
};
PROBE_MAIN(kVariants)
