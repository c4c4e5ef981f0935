/* An event loop of the kind systemd-style services run: one epoll over a
 * periodic timerfd, an eventfd work queue, a signalfd (SIGUSR1, SIGTERM) and
 * a one-shot CLOCK_REALTIME deadline a day ahead. Every timer tick queues
 * work on the eventfd; the loop drains it. It checks itself on SIGTERM:
 *
 *   - every period since the start is one tick, counted once
 *     (tests/cr/kobj_loop_test.py checkpoints, kills and restores it meanwhile);
 *   - every tick's work went through the eventfd and was done;
 *   - each SIGUSR1 was read once from the signalfd;
 *   - the deadline still falls on its date.
 *
 *   event_loop DIR     writes DIR/ready after the first tick, DIR/usr1.N after
 *                      the Nth SIGUSR1, DIR/result "PASS" or "FAIL: ..." at the end */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "wl_files.h"

enum { kTick = 1, kWork = 2, kSignal = 3, kDeadline = 4 };
static const uint64_t kPeriod = 5000000; /* 5 ms */
static const char* g_dir;

static uint64_t now_ns(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void put(const char* name, const char* text) {
    wl_put(g_dir, name, text);
}

static void die(const char* what) {
    wl_die(what);
}

int main(int argc, char** argv) {
    if (argc != 2) return 2;
    g_dir = argv[1];
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR1);
    sigaddset(&m, SIGTERM);
    sigprocmask(SIG_BLOCK, &m, NULL);
    int sfd = signalfd(-1, &m, SFD_NONBLOCK | SFD_CLOEXEC);
    int tick = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    int work = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int deadline = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (sfd < 0 || tick < 0 || work < 0 || deadline < 0 || ep < 0) die("setup");
    uint64_t start = now_ns(CLOCK_MONOTONIC);
    struct itimerspec p = {{0, (long)kPeriod}, {0, (long)kPeriod}};
    uint64_t date = now_ns(CLOCK_REALTIME) + 86400ull * 1000000000ull;
    struct itimerspec d = {{0, 0}, {(time_t)(date / 1000000000ull), (long)(date % 1000000000ull)}};
    if (timerfd_settime(tick, 0, &p, NULL) < 0 ||
        timerfd_settime(deadline, TFD_TIMER_ABSTIME, &d, NULL) < 0)
        die("settime");
    uint64_t started = now_ns(CLOCK_MONOTONIC); /* the kernel's start: start..started */
    struct {
        int fd;
        uint64_t tag;
    } w[] = {{tick, kTick}, {work, kWork}, {sfd, kSignal}, {deadline, kDeadline}};
    for (size_t i = 0; i < sizeof w / sizeof w[0]; ++i) {
        struct epoll_event ev = {EPOLLIN, {.u64 = w[i].tag}};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, w[i].fd, &ev) < 0) die("epoll_ctl");
    }

    uint64_t ticks = 0, queued = 0, done = 0, usr1 = 0, deadline_hits = 0;
    char fail[1024] = "";
    for (int running = 1; running;) {
        struct epoll_event ev[8];
        int n = epoll_wait(ep, ev, 8, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("epoll_wait");
        for (int i = 0; i < n; ++i) {
            uint64_t v = 0;
            switch (ev[i].data.u64) {
                case kTick:
                    if (read(tick, &v, 8) == 8) {
                        if (!ticks) put("ready", "ready\n");
                        ticks += v;
                        queued += v;
                        if (write(work, &v, 8) != 8) die("queue work");
                    }
                    break;
                case kWork:
                    if (read(work, &v, 8) == 8) done += v;
                    break;
                case kDeadline:
                    if (read(deadline, &v, 8) == 8) deadline_hits += v;
                    break;
                case kSignal: {
                    struct signalfd_siginfo si;
                    while (read(sfd, &si, sizeof si) == sizeof si) {
                        if (si.ssi_signo == SIGUSR1) {
                            char name[32];
                            snprintf(name, sizeof name, "usr1.%llu", (unsigned long long)++usr1);
                            put(name, "\n");
                        } else if (si.ssi_signo == SIGTERM) {
                            running = 0;
                        }
                    }
                    break;
                }
            }
        }
    }
    /* The last ticks, bracketed by the clock: every period since start, once. A read
       counts up to the kernel's "now" only once the timer's interrupt ran for the latest
       period it owes (after a restore the ticks set by TFD_IOC_SET_TICKS come alone until
       then), and on a loaded VM that interrupt can be late: so the count is taken at a
       read poll() says that interrupt made ready. The phase is kept across a restore to
       within 100 us (state/timerfd.cc). */
    size_t k = 0;
    struct pollfd pfd = {.fd = tick, .events = POLLIN};
    if (poll(&pfd, 1, 10000) != 1)
        k += (size_t)snprintf(fail + k, sizeof fail - k, "no tick within 10 s; ");
    uint64_t v = 0, before = now_ns(CLOCK_MONOTONIC);
    if (read(tick, &v, 8) == 8) ticks += v, queued += v, done += v;
    uint64_t after = now_ns(CLOCK_MONOTONIC);
    uint64_t lo = (before - started - 100000) / kPeriod, hi = (after - start) / kPeriod;
    if (read(work, &v, 8) == 8) done += v;
    if (ticks < lo || ticks > hi)
        k += (size_t)snprintf(fail + k, sizeof fail - k, "%llu ticks, expected %llu..%llu; ",
                              (unsigned long long)ticks, (unsigned long long)lo,
                              (unsigned long long)hi);
    if (done != queued)
        k += (size_t)snprintf(fail + k, sizeof fail - k, "work %llu of %llu done; ",
                              (unsigned long long)done, (unsigned long long)queued);
    if (usr1 != 1)
        k += (size_t)snprintf(fail + k, sizeof fail - k, "%llu SIGUSR1 read; ",
                              (unsigned long long)usr1);
    struct itimerspec cur;
    timerfd_gettime(deadline, &cur);
    uint64_t due = now_ns(CLOCK_REALTIME) + (uint64_t)cur.it_value.tv_sec * 1000000000ull +
                   (uint64_t)cur.it_value.tv_nsec;
    if (deadline_hits || due + 10000000000ull < date || due > date + 10000000000ull)
        k += (size_t)snprintf(fail + k, sizeof fail - k, "deadline moved by %lld ns; ",
                              (long long)(due - date));
    char out[1200];
    snprintf(out, sizeof out, "%s%s\n", k ? "FAIL: " : "PASS", fail);
    put("result", out);
    return k ? 1 : 0;
}
