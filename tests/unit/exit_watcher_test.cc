#include "fs/exit_watcher.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "common/procfs.h"
#include "common/unique_fd.h"
#include "tests/support/harness.h"

namespace crfs::fs {
namespace {

// A `sleep` child, killed and reaped at the end of the test.
struct Child {
    pid_t pid = test::spawn({"sleep", "1000"});
    UniqueFd pidfd{static_cast<int>(::syscall(SYS_pidfd_open, pid, 0))};
    ~Child() { test::kill_and_reap(pid); }
    // SIGKILL without reaping: the pidfd turns readable with a zombie.
    void kill() const { ::kill(pid, SIGKILL); }
};

TEST(ExitWatcher, CallsBackOnceWithItsIdWhenTheProcessExits) {
    ExitWatcher w;
    ASSERT_TRUE(w.start());
    Child c;
    ASSERT_TRUE(c.pidfd);
    std::atomic<int> calls{0};
    std::atomic<ExitWatcher::Id> got{0};
    auto id = w.watch(c.pidfd.get(), [&](ExitWatcher::Id i) {
        got = i;
        ++calls;
    });
    ASSERT_TRUE(id);
    EXPECT_NE(*id, 0u);
    EXPECT_EQ(w.size(), 1u);
    c.kill();
    ASSERT_TRUE(test::wait_until([&] { return calls == 1; }));
    EXPECT_EQ(got, *id);
    EXPECT_EQ(w.size(), 0u);
    // The caller's fd stays its own: still open, still readable.
    EXPECT_EQ(::fcntl(c.pidfd.get(), F_GETFD), FD_CLOEXEC);
    w.cancel(*id);  // finished: a no-op
    EXPECT_EQ(calls, 1);
}

TEST(ExitWatcher, RegistrationsBeforeStartAndOfExitedProcessesAreServed) {
    ExitWatcher w;
    Child gone, later;
    gone.kill();
    ASSERT_TRUE(test::wait_until([&] {
        auto st = read_stat(gone.pid);
        return st && st->state == 'Z';
    }));
    std::atomic<int> calls{0};
    ASSERT_TRUE(w.watch(gone.pidfd.get(), [&](ExitWatcher::Id) { ++calls; }));
    ASSERT_TRUE(w.watch(later.pidfd.get(), [&](ExitWatcher::Id) { ++calls; }));
    ASSERT_TRUE(w.start());
    ASSERT_TRUE(test::wait_until([&] { return calls == 1; }));  // the zombie, at once
    later.kill();
    ASSERT_TRUE(test::wait_until([&] { return calls == 2; }));
    EXPECT_EQ(w.size(), 0u);
}

TEST(ExitWatcher, CancelledRegistrationIsNeverCalled) {
    ExitWatcher w;
    ASSERT_TRUE(w.start());
    Child c;
    std::atomic<bool> cancelled_called{false}, other_called{false};
    auto a = w.watch(c.pidfd.get(), [&](ExitWatcher::Id) { cancelled_called = true; });
    ASSERT_TRUE(a);
    w.cancel(*a);
    EXPECT_EQ(w.size(), 0u);
    // A second registration on the same process: once it fired, the
    // cancelled one would have too.
    ASSERT_TRUE(w.watch(c.pidfd.get(), [&](ExitWatcher::Id) { other_called = true; }));
    c.kill();
    ASSERT_TRUE(test::wait_until([&] { return other_called.load(); }));
    EXPECT_FALSE(cancelled_called);
}

TEST(ExitWatcher, CancelWaitsForItsRunningCallback) {
    ExitWatcher w;
    ASSERT_TRUE(w.start());
    Child c;
    std::atomic<bool> entered{false}, finished{false}, cancel_returned{false};
    std::promise<void> release;
    auto released = release.get_future();
    auto id = w.watch(c.pidfd.get(), [&](ExitWatcher::Id) {
        entered = true;
        released.wait();
        finished = true;
    });
    ASSERT_TRUE(id);
    c.kill();
    ASSERT_TRUE(test::wait_until([&] { return entered.load(); }));
    bool finished_at_return = false;
    std::thread canceller([&] {
        w.cancel(*id);
        finished_at_return = finished;
        cancel_returned = true;
    });
    // A cancel that does not wait returns while the callback is held; a
    // correct one cannot return, so this wait always runs to its end.
    EXPECT_FALSE(
        test::wait_until([&] { return cancel_returned.load(); }, std::chrono::milliseconds(200)));
    release.set_value();
    canceller.join();
    EXPECT_TRUE(finished_at_return);
}

TEST(ExitWatcher, CallbackMayCancelAndWatchWithoutDeadlock) {
    ExitWatcher w;
    ASSERT_TRUE(w.start());
    Child first, second, third;
    std::atomic<int> calls{0};
    ExitWatcher::Id second_id = 0;
    std::atomic<bool> third_called{false};
    auto a = w.watch(first.pidfd.get(), [&](ExitWatcher::Id self) {
        w.cancel(self);       // itself, running: must not wait for itself
        w.cancel(second_id);  // another: dropped
        auto again = w.watch(third.pidfd.get(), [&](ExitWatcher::Id) { third_called = true; });
        EXPECT_TRUE(again);
        ++calls;
    });
    ASSERT_TRUE(a);
    auto b = w.watch(second.pidfd.get(), [&](ExitWatcher::Id) { ++calls; });
    ASSERT_TRUE(b);
    second_id = *b;
    first.kill();
    ASSERT_TRUE(test::wait_until([&] { return calls == 1; }));
    EXPECT_EQ(w.size(), 1u);  // third's
    second.kill();
    third.kill();
    ASSERT_TRUE(test::wait_until([&] { return third_called.load(); }));
    EXPECT_EQ(calls, 1);  // second was cancelled
}

TEST(ExitWatcher, StopWithRegistrationsPendingDropsThemUncalled) {
    Child c;
    std::atomic<int> calls{0};
    {
        ExitWatcher w;
        ASSERT_TRUE(w.start());
        for (int i = 0; i < 3; ++i)
            ASSERT_TRUE(w.watch(c.pidfd.get(), [&](ExitWatcher::Id) { ++calls; }));
        EXPECT_EQ(w.size(), 3u);
        w.stop();
        EXPECT_EQ(w.size(), 0u);
        w.stop();  // twice is fine
        c.kill();
    }
    // Unstarted, with registrations: the destructor frees them too.
    {
        ExitWatcher w;
        ASSERT_TRUE(w.watch(c.pidfd.get(), [&](ExitWatcher::Id) { ++calls; }));
    }
    EXPECT_EQ(calls, 0);
}

TEST(ExitWatcher, BoundedWithEmfile) {
    ExitWatcher w(2);
    Child c;
    ASSERT_TRUE(w.watch(c.pidfd.get(), [](ExitWatcher::Id) {}));
    auto b = w.watch(c.pidfd.get(), [](ExitWatcher::Id) {});
    ASSERT_TRUE(b);
    auto r = w.watch(c.pidfd.get(), [](ExitWatcher::Id) {});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EMFILE);
    EXPECT_NE(r.error().what.find("exit watcher: 2 processes"), std::string::npos);
    w.cancel(*b);
    EXPECT_TRUE(w.watch(c.pidfd.get(), [](ExitWatcher::Id) {}));
}

TEST(ExitWatcher, BadFdIsAnError) {
    ExitWatcher w;
    auto r = w.watch(-1, [](ExitWatcher::Id) {});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EBADF);
}

}  // namespace
}  // namespace crfs::fs
