// restore_image from a multi-threaded process, as from crfsd's FUSE workers:
// several restores at once while other threads hammer malloc (a lock the
// cloned task must never need), and the reaping contract.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <thread>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "checkpoint/task_attrs.h"
#include "common/io.h"
#include "restorer/restore.h"
#include "tests/support/image_child.h"

using namespace crfs;

namespace {

// A paused child with some memory and only /dev/null open.
pid_t spawn_holder() {
    return test::spawn_paused_child([] {
        static char buf[1 << 20];
        std::memset(buf, 0x3c, sizeof buf);
    });
}

UniqueFd image_of(pid_t pid) {
    auto img = test::checkpoint_to_memfd(pid);
    EXPECT_TRUE(img) << (img ? "" : img.error().what);
    return img ? std::move(*img) : UniqueFd();
}

}  // namespace

TEST(RestoreThreads, ConcurrentRestoresWhileOtherThreadsAllocate) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    pid_t holder = spawn_holder();
    UniqueFd img = image_of(holder);
    kill(holder, SIGKILL);
    waitpid(holder, nullptr, 0);

    std::atomic<bool> stop{false};
    std::vector<std::thread> noise;
    for (int i = 0; i < 3; ++i)
        noise.emplace_back([&] {
            while (!stop) {
                std::vector<std::unique_ptr<char[]>> v;
                for (int j = 0; j < 64; ++j) v.emplace_back(new char[1 + j * 997]);
            }
        });
    constexpr int kRestores = 4;
    std::vector<pid_t> pids(kRestores, -1);
    std::vector<std::string> errors(kRestores);
    std::vector<std::thread> workers;
    for (int i = 0; i < kRestores; ++i)
        workers.emplace_back([&, i] {
            // Each worker its own fd: restore_image reads the image from offset 0.
            UniqueFd mine(
                open(("/proc/self/fd/" + std::to_string(img.get())).c_str(), O_RDONLY | O_CLOEXEC));
            RestoreRequest req;
            req.image_fd = mine.get();
            req.writer_is_root = true;
            auto r = restore_image(req);
            if (r)
                pids[i] = *r;
            else
                errors[i] = r.error().what;
        });
    for (auto& w : workers) w.join();
    stop = true;
    for (auto& t : noise) t.join();

    for (int i = 0; i < kRestores; ++i) {
        ASSERT_GT(pids[i], 0) << errors[i];
        // Alive and not a zombie: it runs the holder's pause loop.
        auto st = read_task_stat(pids[i]);
        ASSERT_TRUE(st);
        EXPECT_NE(st->state, 'Z');
    }
    auto live = restored_children();
    for (pid_t p : pids) EXPECT_NE(std::find(live.begin(), live.end(), p), live.end());
    EXPECT_TRUE(reap_restored_children().empty());  // none exited yet
    for (pid_t p : pids) kill(p, SIGKILL);
    // Ended but held (not released): zombies under their pids, not reaped.
    for (pid_t p : pids)
        for (int i = 0; i < 6000; ++i) {
            auto st = read_task_stat(p);
            if (st && st->state == 'Z') break;
            usleep(10000);
        }
    EXPECT_TRUE(reap_restored_children().empty());
    for (pid_t p : pids) {
        auto st = read_task_stat(p);
        ASSERT_TRUE(st);
        EXPECT_EQ(st->state, 'Z');
    }
    for (pid_t p : pids) release_restored_child(p);
    std::vector<pid_t> gone;
    for (int i = 0; i < 500 && gone.size() < pids.size(); ++i) {
        for (pid_t p : reap_restored_children()) gone.push_back(p);
        usleep(10000);
    }
    std::sort(gone.begin(), gone.end());
    std::sort(pids.begin(), pids.end());
    EXPECT_EQ(gone, pids);
    EXPECT_TRUE(restored_children().empty());
}

TEST(RestoreThreads, WantedPidThatIsTakenIsEbusyAndCreatesNothing) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    pid_t holder = spawn_holder();
    UniqueFd img = image_of(holder);
    RestoreRequest req;
    req.image_fd = img.get();
    req.want_pid = holder;  // still alive
    req.writer_is_root = true;
    req.may_choose_pid = true;
    auto r = restore_image(req);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EBUSY);
    EXPECT_EQ(r.error().what, "pid " + std::to_string(holder) + " is in use");
    kill(holder, SIGKILL);
    waitpid(holder, nullptr, 0);
    EXPECT_TRUE(restored_children().empty());
}
