#include "fs/reaper.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>

#include "common/procfs.h"
#include "tests/support/harness.h"

namespace crfs::fs {
namespace {

bool is_zombie(pid_t pid) {
    auto st = read_stat(pid);
    return st && st->state == 'Z';
}

// A process of ours that PTRACE_SEIZEs `target` and waits to be killed.
pid_t seize_from_another_process(pid_t target) {
    int ready[2];
    if (::pipe2(ready, O_CLOEXEC) < 0) return -1;
    pid_t tracer = ::fork();
    if (tracer == 0) {
        char ok = ::ptrace(PTRACE_SEIZE, target, nullptr, nullptr) == 0 ? 'y' : 'n';
        (void)!::write(ready[1], &ok, 1);
        for (;;) ::pause();
    }
    ::close(ready[1]);
    char ok = 0;
    if (tracer < 0 || ::read(ready[0], &ok, 1) != 1 || ok != 'y') {
        test::kill_and_reap(tracer);
        tracer = -1;
    }
    ::close(ready[0]);
    return tracer;
}

// A restored task that exits while another process traces it (a debugger,
// strace, or LeakSanitizer's own tracer at the exit of a sanitized program)
// is a zombie only its tracer sees: the pidfd turns readable at the exit, but
// waitid() of the parent finds nothing until the tracer lets go, and then
// the kernel wakes the pidfd again. The reaper must still reap it then (seen:
// a restored pid held as a zombie until crfsd ended, CI of d861e81, ASan).
TEST(Reaper, ReapsATaskThatExitedWhileAnotherProcessTracedIt) {
    ExitWatcher w;
    ASSERT_TRUE(w.start());
    Reaper r(w);
    pid_t child = test::spawn({"sleep", "1000"});
    ASSERT_GT(child, 0);
    pid_t tracer = seize_from_another_process(child);
    ASSERT_GT(tracer, 0);
    std::atomic<int> calls{0}, code{-1}, status{-1};
    r.adopt(child, [&](int c, int s) {
        code = c;
        status = s;
        ++calls;
    });
    ::kill(child, SIGKILL);
    ASSERT_TRUE(test::wait_until([&] { return is_zombie(child); }));
    // The exit woke the pidfd; the parent cannot wait for it yet.
    siginfo_t si{};
    ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(child), &si, WEXITED | WNOWAIT | WNOHANG), 0);
    EXPECT_EQ(si.si_pid, 0);
    EXPECT_EQ(calls, 0);
    test::kill_and_reap(tracer);  // the tracer lets go: the zombie is the parent's now
    EXPECT_TRUE(test::wait_until([&] { return calls == 1; }));
    EXPECT_EQ(code, CLD_KILLED);
    EXPECT_EQ(status, SIGKILL);
    ::waitpid(child, nullptr, 0);  // not a restored child: the test reaps it
}

}  // namespace
}  // namespace crfs::fs
