// clonecost: the daemon's threads note their stacks; a tree's root marks the
// other threads' MADV_DONTFORK, so that no process it makes copies them
// (common/thread_stacks.h, state/tree_restore.cc tree_spawn_children).
#include "common/thread_stacks.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace crfs {
namespace {

bool holds(const std::vector<StackRange>& ranges, const void* p) {
    for (const auto& r : ranges)
        if (uint64_t(p) >= r.start && uint64_t(p) < r.end) return true;
    return false;
}

// A thread that notes its stack and waits until told to end; `local` is on its stack.
class Noter {
  public:
    Noter()
        : t_([this] {
              note_thread_stack();
              note_thread_stack();  // a second call notes nothing more
              int on_stack = 0;
              std::unique_lock lock(mu_);
              local_ = &on_stack;
              cv_.notify_all();
              cv_.wait(lock, [this] { return end_; });
          }) {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return local_ != nullptr; });
    }
    ~Noter() { end(); }
    void end() {
        {
            std::lock_guard lock(mu_);
            end_ = true;
        }
        cv_.notify_all();
        if (t_.joinable()) t_.join();
    }
    const void* local() const { return local_; }

  private:
    std::mutex mu_;
    std::condition_variable cv_;
    const void* local_ = nullptr;
    bool end_ = false;
    std::thread t_;
};

TEST(ThreadStacks, AThreadsStackIsNotedUntilItEnds) {
    Noter a, b;
    {
        ThreadStacksHold hold;
        auto others = hold.others();
        EXPECT_TRUE(holds(others, a.local()));
        EXPECT_TRUE(holds(others, b.local()));
        for (const auto& r : others) {
            EXPECT_EQ(r.start % 4096, 0u);
            EXPECT_EQ(r.end % 4096, 0u);
            EXPECT_LT(r.start, r.end);
        }
    }
    const void* gone = a.local();
    a.end();
    ThreadStacksHold hold;
    EXPECT_FALSE(holds(hold.others(), gone));
    EXPECT_TRUE(holds(hold.others(), b.local()));
}

TEST(ThreadStacks, TheMainThreadIsNeverNoted) {
    int on_main_stack = 0;
    note_thread_stack();  // gtest runs tests on the main thread
    ASSERT_EQ(gettid(), getpid());
    std::vector<StackRange> seen;
    std::thread([&] {
        note_thread_stack();
        ThreadStacksHold hold;
        seen = hold.others();  // every noted stack but this thread's
    }).join();
    EXPECT_FALSE(holds(seen, &on_main_stack));
}

TEST(ThreadStacks, ACloneMarkingTheOthersMakesProcessesWithoutThem) {
    // What a tree's restore does: the daemon (here: a noted thread of the test)
    // clones the root holding the registry; the root marks the others' stacks
    // and makes a process, which runs on its copy of the cloning thread's
    // stack and has none of the other threads' stacks. Without the marks it
    // would have them all (`marks` false: the old path, checked too).
    Noter other;
    for (bool marks : {false, true}) {
        int status = -1;
        std::thread([&] {
            note_thread_stack();
            ThreadStacksHold hold;
            auto others = hold.others();
            ASSERT_TRUE(holds(others, other.local()));
            pid_t root = pid_t(syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0));
            if (root == 0) {  // no allocation, no lock: as stage 1
                if (marks)
                    for (const auto& r : others)
                        madvise(reinterpret_cast<void*>(r.start), r.end - r.start, MADV_DONTFORK);
                pid_t member = pid_t(syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0));
                if (member == 0) {
                    unsigned char v;  // mincore: ENOMEM where nothing is mapped
                    void* page = reinterpret_cast<void*>(uint64_t(other.local()) & ~uint64_t(4095));
                    bool mapped = mincore(page, 4096, &v) == 0;
                    syscall(SYS_exit_group, mapped ? 10 : 20);
                }
                int st = 0;
                while (waitpid(member, &st, 0) < 0) {
                }
                syscall(SYS_exit_group, WIFEXITED(st) ? WEXITSTATUS(st) : 99);
            }
            ASSERT_GT(root, 0);
            int st = 0;
            ASSERT_EQ(waitpid(root, &st, 0), root);
            status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        }).join();
        EXPECT_EQ(status, marks ? 20 : 10) << (marks ? "marked" : "not marked");
    }
}

}  // namespace
}  // namespace crfs
