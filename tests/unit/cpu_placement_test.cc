// Where a stream's reads are served from (common/cpu_placement.h): the CPU a
// thread last ran on, a thread moved for a while, another kept off a CPU.
#include "common/cpu_placement.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

namespace crfs {
namespace {

cpu_set_t affinity(pid_t tid) {
    cpu_set_t s;
    CPU_ZERO(&s);
    EXPECT_EQ(sched_getaffinity(tid, sizeof s, &s), 0);
    return s;
}

cpu_set_t only(int cpu) {
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    return s;
}

// Two CPUs this thread may use, or a skip.
bool two_cpus(int& a, int& b) {
    cpu_set_t s = affinity(0);
    a = b = -1;
    for (int c = 0; c < CPU_SETSIZE && b < 0; ++c)
        if (CPU_ISSET(c, &s)) (a < 0 ? a : b) = c;
    return b >= 0;
}

// A thread pinned to one CPU was last on it, even with a command name that
// holds ") " and numbers (the fields are counted after the last parenthesis).
TEST(CpuPlacement, TheCpuAThreadLastRanOn) {
    cpu_set_t own = affinity(0);
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
        if (!CPU_ISSET(cpu, &own)) continue;
        std::thread([cpu] {
            prctl(PR_SET_NAME, "x) 1 2 3 4 5");
            cpu_set_t one = only(cpu);
            ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
            EXPECT_EQ(sched_getcpu(), cpu);
            EXPECT_EQ(last_cpu_of(gettid()), cpu);
        }).join();
    }
    EXPECT_EQ(last_cpu_of(0), -1);
    EXPECT_EQ(last_cpu_of(-5), -1);
    EXPECT_EQ(last_cpu_of(0x3fffffff), -1);  // no such thread
}

TEST(CpuPlacement, RunOnMovesTheThreadForAWhile) {
    int a, b;
    if (!two_cpus(a, b)) GTEST_SKIP() << "one CPU";
    std::thread([a, b] {
        cpu_set_t on_a = only(a), two = only(a);
        CPU_SET(b, &two);
        ASSERT_EQ(sched_setaffinity(0, sizeof on_a, &on_a), 0);
        {
            RunOn here(a);  // on a, the only CPU it may use: nothing to do
            EXPECT_FALSE(here.moved());
            RunOn not_allowed(b);
            EXPECT_FALSE(not_allowed.moved());
            RunOn nowhere(-1);
            EXPECT_FALSE(nowhere.moved());
        }
        ASSERT_EQ(sched_setaffinity(0, sizeof two, &two), 0);
        // To the CPU it is not on (the scheduler may move it meanwhile: tried
        // until a move was needed).
        bool moved = false;
        for (int i = 0; i < 100 && !moved; ++i) {
            int other = sched_getcpu() == a ? b : a;
            RunOn there(other);
            if (!there.moved()) continue;
            moved = true;
            EXPECT_EQ(sched_getcpu(), other);
            cpu_set_t s = affinity(0), want = only(other);
            EXPECT_TRUE(CPU_EQUAL(&s, &want));
        }
        EXPECT_TRUE(moved);
        cpu_set_t back = affinity(0);
        EXPECT_TRUE(CPU_EQUAL(&back, &two)) << "its own CPUs back";
    }).join();
}

TEST(CpuPlacement, KeepOffLeavesTheOtherCpusOrAllWhenThereIsOne) {
    int a, b;
    if (!two_cpus(a, b)) GTEST_SKIP() << "one CPU";
    pid_t child = fork();
    if (child == 0) {
        for (;;) pause();
    }
    ASSERT_GT(child, 0);
    cpu_set_t two = only(a);
    CPU_SET(b, &two);
    EXPECT_TRUE(keep_off(child, two, a));
    cpu_set_t s = affinity(child), want = only(b);
    EXPECT_TRUE(CPU_EQUAL(&s, &want));
    EXPECT_TRUE(keep_off(child, two, b));  // from `allowed` again, not from what it has
    s = affinity(child);
    want = only(a);
    EXPECT_TRUE(CPU_EQUAL(&s, &want));
    cpu_set_t just_b = only(b);
    EXPECT_TRUE(keep_off(child, just_b, b));  // its only CPU: kept
    s = affinity(child);
    EXPECT_TRUE(CPU_EQUAL(&s, &just_b));
    EXPECT_TRUE(keep_off(child, two, -1));  // no CPU to keep off: all of `allowed`
    s = affinity(child);
    EXPECT_TRUE(CPU_EQUAL(&s, &two));
    EXPECT_FALSE(keep_off(0, two, a));
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
}

}  // namespace
}  // namespace crfs
