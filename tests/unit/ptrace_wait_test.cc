#include "common/ptrace_wait.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cstdio>

#include <thread>

namespace crfs {
namespace {

// A child that sleeps in pause() until killed, seized by this thread.
struct SeizedChild {
    pid_t pid = ::fork();
    SeizedChild() {
        if (pid == 0) {
            for (;;) ::pause();
        }
        seized = pid > 0 && ::ptrace(PTRACE_SEIZE, pid, nullptr, nullptr) == 0;
    }
    ~SeizedChild() {
        if (pid <= 0) return;
        ::kill(pid, SIGKILL);
        int st = 0;
        while (::waitpid(pid, &st, __WALL) < 0 && errno == EINTR) {
        }
    }
    bool seized = false;
};

TEST(PtraceWait, AnInterruptStopIsReturned) {
    SeizedChild c;
    ASSERT_TRUE(c.seized);
    ASSERT_EQ(::ptrace(PTRACE_INTERRUPT, c.pid, nullptr, nullptr), 0);
    auto st = wait_ptrace_stop(c.pid, 10'000'000'000ull);
    ASSERT_TRUE(st) << st.error().what;
    EXPECT_TRUE(WIFSTOPPED(*st));
    EXPECT_EQ(*st >> 16, PTRACE_EVENT_STOP);
}

// The wait blocks in waitpid: a tracee that never stops must still end it
// at its timeout, on a thread that blocks every signal too (libfuse's
// worker threads do, and the restore's hand-off runs on them).
TEST(PtraceWait, NoStopTimesOutEvenWithEverySignalBlocked) {
    for (bool blocked : {false, true}) {
        SCOPED_TRACE(blocked ? "every signal blocked" : "signals as they are");
        Result<int> st = 0;
        // ptrace belongs to the thread that seized: seize and wait on one.
        std::thread([&] {
            sigset_t all, old;
            sigfillset(&all);
            if (blocked) pthread_sigmask(SIG_SETMASK, &all, &old);
            SeizedChild c;
            if (!c.seized) {
                st = make_error(EIO, "seize");
                return;
            }
            st = wait_ptrace_stop(c.pid, 200'000'000ull);
            sigset_t now;
            pthread_sigmask(SIG_SETMASK, nullptr, &now);
            // The mask is the thread's own again.
            if (blocked && !sigismember(&now, SIGRTMIN + 6)) st = make_error(EIO, "mask changed");
        }).join();
        ASSERT_FALSE(st);
        EXPECT_EQ(st.error().code, ETIMEDOUT) << st.error().what;
    }
}

// A tree's restore runs in forks of crfsd: a process forked from a thread
// that already waited has that thread's state but not its timer.
TEST(PtraceWait, AForkOfAThreadThatWaitedWaitsToo) {
    {
        SeizedChild c;
        ASSERT_TRUE(c.seized);
        ASSERT_EQ(::ptrace(PTRACE_INTERRUPT, c.pid, nullptr, nullptr), 0);
        ASSERT_TRUE(wait_ptrace_stop(c.pid, 10'000'000'000ull));
    }
    pid_t fork_pid = ::fork();
    if (fork_pid == 0) {
        int code = 1;
        {
            SeizedChild c;
            if (c.seized && ::ptrace(PTRACE_INTERRUPT, c.pid, nullptr, nullptr) == 0) {
                auto st = wait_ptrace_stop(c.pid, 10'000'000'000ull);
                code = st && WIFSTOPPED(*st) ? 0 : 2;
                if (!st) ::fprintf(stderr, "%s\n", st.error().what.c_str());
            }
        }
        ::_exit(code);
    }
    ASSERT_GT(fork_pid, 0);
    int st = 0;
    ASSERT_EQ(::waitpid(fork_pid, &st, 0), fork_pid);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "status " << st;
}

TEST(PtraceWait, ATraceeThatExitsIsGone) {
    pid_t pid = ::fork();
    if (pid == 0) {
        ::pause();
        ::_exit(0);
    }
    ASSERT_GT(pid, 0);
    ASSERT_EQ(::ptrace(PTRACE_SEIZE, pid, nullptr, nullptr), 0);
    ::kill(pid, SIGKILL);
    bool gone = false;
    auto st = wait_ptrace_stop(pid, 10'000'000'000ull, &gone);
    ASSERT_FALSE(st);
    EXPECT_TRUE(gone);
    EXPECT_EQ(st.error().code, ESRCH);
}

}  // namespace
}  // namespace crfs
