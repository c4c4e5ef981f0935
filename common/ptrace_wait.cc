#include "common/ptrace_wait.h"

#include <sched.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>

#include "common/strfmt.h"

namespace crfs {

namespace {
thread_local bool t_spin = true;
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
    for (;;) {
        int st = 0;
        pid_t r = waitpid(pid, &st, __WALL | WNOHANG);
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
