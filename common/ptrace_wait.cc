#include "common/ptrace_wait.h"

#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <mutex>

#include "common/strfmt.h"

namespace crfs {

namespace {
thread_local bool t_spin = true;

// The blocking wait's wake-up: a per-thread POSIX timer that signals this
// thread (SIGEV_THREAD_ID) every kTickNs while a wait runs, so that a
// blocking waitpid returns EINTR and the deadline is checked. A tick that
// fires just before waitpid blocks is lost to the handler; the next one
// comes kTickNs later, so a wait overruns its timeout by one tick at most.
constexpr long kTickNs = 20'000'000;

int wake_signal() {
    return SIGRTMIN + 6;  // glibc takes the first ones; nothing else in crfs uses these
}

void on_wake(int) {}

// CRFS_PTRACE_WAIT_POLL=1: the old wait (waitpid WNOHANG, yields, backing-off
// sleeps), for before/after benches of the same binary.
bool poll_waits() {
    static const bool poll = [] {
        const char* v = getenv("CRFS_PTRACE_WAIT_POLL");
        return v && *v && *v != '0';
    }();
    return poll;
}

class WakeTimer {
  public:
    WakeTimer() = default;
    ~WakeTimer() {
        if (ok_ && owner_ == getpid()) timer_delete(id_);
    }
    WakeTimer(const WakeTimer&) = delete;
    WakeTimer& operator=(const WakeTimer&) = delete;
    // Whether this thread has its timer, made at the first wait. A process
    // forked from a thread that had one (a tree's restore runs in forks of
    // crfsd) has a copy of this object but no timer (timers are not
    // inherited): it makes its own.
    bool ready() {
        pid_t me = getpid();
        if (owner_ == me) return ok_;
        owner_ = me;
        ok_ = false;
        static std::once_flag installed;
        static bool handler = false;
        std::call_once(installed, [] {
            struct sigaction sa {};
            sa.sa_handler = on_wake;  // no SA_RESTART: waitpid returns EINTR
            sigemptyset(&sa.sa_mask);
            handler = sigaction(wake_signal(), &sa, nullptr) == 0;
        });
        if (!handler) return false;
        sigevent ev{};
        ev.sigev_notify = SIGEV_THREAD_ID;
        ev.sigev_signo = wake_signal();
        ev._sigev_un._tid = gettid();
        ok_ = timer_create(CLOCK_MONOTONIC, &ev, &id_) == 0;
        return ok_;
    }
    // Starts (tick) or stops (0) the ticks. Stopping returns to user space
    // after the timer is disarmed: a tick still pending is handled then, by
    // the handler that does nothing, before any other syscall can see it.
    bool set(long tick_ns) {
        itimerspec its{};
        its.it_value.tv_nsec = tick_ns;
        its.it_interval.tv_nsec = tick_ns;
        return timer_settime(id_, 0, &its, nullptr) == 0;
    }

  private:
    timer_t id_{};
    pid_t owner_ = 0;
    bool ok_ = false;
};

thread_local WakeTimer t_wake;

// One waitpid for `pid`'s next state change, blocking until then or until
// the next tick: the pid, 0 on a tick (EINTR), -1 with errno, or -2 when the
// timer cannot be set (the caller polls instead).
pid_t blocking_waitpid(pid_t pid, int* st) {
    sigset_t mine, old;
    sigemptyset(&mine);
    sigaddset(&mine, wake_signal());
    // A thread may block every signal (libfuse's workers do): the tick must
    // reach this one while it waits.
    if (pthread_sigmask(SIG_UNBLOCK, &mine, &old) != 0) return -2;
    if (!t_wake.set(kTickNs)) {
        pthread_sigmask(SIG_SETMASK, &old, nullptr);
        return -2;
    }
    pid_t r = waitpid(pid, st, __WALL);
    int err = errno;
    t_wake.set(0);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (r < 0 && err == EINTR) return 0;
    errno = err;
    return r;
}

}  // namespace

void set_ptrace_wait_spins(bool spin) {
    t_spin = spin;
}

uint64_t monotonic_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}

Result<int> wait_ptrace_stop(pid_t pid, uint64_t timeout_ns, bool* gone) {
    uint64_t deadline = monotonic_ns() + timeout_ns;
    unsigned sleep_us = 0;
    int yields = t_spin ? 0 : 5000;
    // Blocking: the waiter wakes as the tracee stops. Polling (a tree's
    // checkpoint of 64 processes: ~1,000 sleeps, each timer slack and
    // back-off past the stop) measured no slower within this VM's noise
    // (docs/performance.md, "Trees: the ptrace waits block"), but it took
    // CPU and wakeups for nothing, most of all while a task stays stuck.
    bool block = !poll_waits() && t_wake.ready();
    for (;;) {
        int st = 0;
        pid_t r = block ? blocking_waitpid(pid, &st) : waitpid(pid, &st, __WALL | WNOHANG);
        if (r == -2) {
            block = false;  // no timer: poll
            continue;
        }
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == ECHILD) {
                if (gone) *gone = true;
                return sys_error(ESRCH, strfmt("task {} is gone", pid));
            }
            return errno_error(strfmt("waitpid {}", pid));
        }
        if (r == pid) {
            if (WIFEXITED(st) || WIFSIGNALED(st)) {
                if (gone) *gone = true;
                return make_error(ESRCH, strfmt("task {} exited", pid));
            }
            return st;
        }
        if (monotonic_ns() > deadline)
            return make_error(
                ETIMEDOUT, strfmt("task {} did not stop within {} s (uninterruptible sleep?)", pid,
                                  timeout_ns / 1'000'000'000ull));
        if (block) continue;  // a tick: the deadline checked, wait again
        // The stop usually comes within microseconds: yield the CPU to the
        // tracee first, then back off to sleeping.
        if (yields < 5000) {
            ++yields;
            sched_yield();
            continue;
        }
        usleep(sleep_us);
        sleep_us = std::min(sleep_us * 2 + 1, 1000u);
    }
}

}  // namespace crfs
