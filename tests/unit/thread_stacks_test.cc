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
#include <functional>
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

struct Seen {
    std::vector<StackRange> with, without;  // others(), others(false)
};

// Runs `noting` on a new thread and, while that thread waits after it (alive,
// its notes kept), gives what the calling thread's hold sees.
Seen seen_while(const std::function<void()>& noting) {
    Seen seen;
    std::mutex mu;
    std::condition_variable cv;
    bool noted = false, done = false;
    std::thread worker([&] {
        noting();
        std::unique_lock lock(mu);
        noted = true;
        cv.notify_all();
        cv.wait(lock, [&] { return done; });
    });
    {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return noted; });
    }
    {
        ThreadStacksHold hold;
        seen = {hold.others(), hold.others(false)};
    }
    {
        std::lock_guard lock(mu);
        done = true;
    }
    cv.notify_all();
    worker.join();
    return seen;
}

// member: a FUSE worker notes the bytes of each write, which libfuse puts in
// the worker's own receive buffer (common/thread_stacks.h note_request_buffer).
TEST(ThreadStacks, AWorkersRequestBufferIsNotedWithItsStack) {
    constexpr size_t kBuf = (1 << 20) + 4096;  // libfuse's: 1 MiB + a page of headers
    std::vector<char> mem(kBuf);
    const char* data = mem.data() + 80;  // a write's bytes, after the request's headers
    std::vector<StackRange> own;
    Seen seen = seen_while([&] {
        note_request_buffer(data, 4096);  // a small write first, then the largest
        note_request_buffer(data, kBuf - 80);
        ThreadStacksHold hold;
        own = hold.others();  // the calling thread's own buffer is never given
    });
    // The whole pages of the bytes: none before the data's first page boundary.
    uint64_t first = (uint64_t(data) + 4095) & ~uint64_t(4095);
    uint64_t last = (uint64_t(data) + kBuf - 80) & ~uint64_t(4095);
    EXPECT_TRUE(holds(seen.with, reinterpret_cast<void*>(first)));
    EXPECT_TRUE(holds(seen.with, reinterpret_cast<void*>(last - 1)));
    EXPECT_FALSE(holds(seen.with, reinterpret_cast<void*>(first - 1)));
    EXPECT_FALSE(holds(seen.with, reinterpret_cast<void*>(last)));
    EXPECT_FALSE(holds(seen.without, reinterpret_cast<void*>(first)));
    EXPECT_FALSE(holds(own, reinterpret_cast<void*>(first)));
    ThreadStacksHold hold;  // the worker ended: it forgot its buffer with its stack
    EXPECT_FALSE(holds(hold.others(), reinterpret_cast<void*>(first)));
}

TEST(ThreadStacks, AWriteElsewhereForgetsTheBuffer) {
    // Bytes in two places: not one buffer of the worker's own (libfuse's
    // spliced requests come in a block of their own, freed after each).
    std::vector<char> one(1 << 20), two(1 << 20);
    Seen seen = seen_while([&] {
        note_request_buffer(one.data() + 80, one.size() - 80);
        note_request_buffer(two.data() + 80, two.size() - 80);
        note_request_buffer(one.data() + 80, one.size() - 80);  // never again
    });
    EXPECT_FALSE(holds(seen.with, one.data() + 8192));
    EXPECT_FALSE(holds(seen.with, two.data() + 8192));
    EXPECT_FALSE(seen.with.empty());  // its stack still is
}

// Touches `depth` KiB of stack below its caller's frame; returns its lowest address.
__attribute__((noinline)) uint64_t go_deep(int depth) {
    volatile char frame[1024];
    frame[0] = char(depth);
    if (depth <= 1) return uint64_t(&frame[0]);
    return go_deep(depth - 1) + frame[0] - char(depth);
}

// Pages of [lo, hi) resident (mincore).
size_t resident(uint64_t lo, uint64_t hi) {
    lo &= ~uint64_t(4095);
    std::vector<unsigned char> v((hi - lo + 4095) / 4096);
    if (mincore(reinterpret_cast<void*>(lo), hi - lo, v.data()) != 0) return SIZE_MAX;
    size_t n = 0;
    for (unsigned char c : v) n += c & 1;
    return n;
}

// member: the restoring thread's stack below its frame (calls that returned)
// goes back before the root's clone (state/tree_restore.cc tree_spawn).
TEST(ThreadStacks, DropDeadStackGivesBackTheFramesBelow) {
    size_t before = 0, after = 0, live = 0;
    std::thread([&] {
        note_thread_stack();
        uint64_t deep = go_deep(768);  // 768 KiB below, then returned: dead
        uint64_t here = uint64_t(__builtin_frame_address(0));
        before = resident(deep, here - 128 * 1024);
        ThreadStacksHold hold;
        hold.drop_dead_stack();
        after = resident(deep, here - 128 * 1024);
        live = resident(here - 1, here);  // this frame's page stays
        EXPECT_GT(go_deep(256), 0u);      // and the thread goes on, deeper again
    }).join();
    EXPECT_GT(before, 100u);  // ~160 pages: 768 frames of ~1 KiB, less the 128 KiB left out
    EXPECT_EQ(after, 0u);
    EXPECT_EQ(live, 1u);
}

}  // namespace
}  // namespace crfs
