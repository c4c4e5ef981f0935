// state/kcmp_cache.h on real processes: the groups it tells by sorting are
// the ones kcmp tells pair by pair, each relation is asked of the kernel once,
// and a tree's sharing (classify_task_sharing) asks about n log n times, not
// every pair.
#include "state/kcmp_cache.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/kcmp.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "state/tree_share.h"
#include "state/tree_share_task.h"

namespace crfs::state {
namespace {

// Children made by clone with `flags` (CLONE_FILES, CLONE_FS: sharing the
// maker's), each waiting to be killed; killed and reaped at the end.
class Clones {
  public:
    ~Clones() {
        for (pid_t p : pids_) {
            ::kill(p, SIGKILL);
            ::waitpid(p, nullptr, 0);
        }
    }
    // A clone of this process (a raw clone: it only pauses).
    pid_t make(unsigned long flags) {
        long pid = syscall(SYS_clone, flags | SIGCHLD, nullptr, nullptr, nullptr, nullptr);
        if (pid == 0)
            for (;;) ::pause();
        EXPECT_GT(pid, 0) << std::strerror(errno);
        pids_.push_back(pid_t(pid));
        return pid_t(pid);
    }

  private:
    std::vector<pid_t> pids_;
};

// How many kcmp calls sorting n items may take (merge sort, then neighbours).
uint64_t sort_bound(size_t n) {
    uint64_t log = 0;
    while ((uint64_t(1) << log) < n) ++log;
    return n * log + n;
}

TEST(KcmpCache, ThreeProcessesTwoShareAnFdTable) {
    Clones c;
    pid_t own = c.make(0);               // a table of its own
    pid_t sharer = c.make(CLONE_FILES);  // the test's table
    pid_t fs_sharer = c.make(CLONE_FS);  // its own table, the test's fs
    std::vector<KcmpItem> items{{getpid(), 0}, {own, 0}, {sharer, 0}, {fs_sharer, 0}};
    KcmpCache k;
    auto files = k.classes(KCMP_FILES, items);
    ASSERT_TRUE(files);
    EXPECT_EQ((*files)[0], (*files)[2]);  // the test and its CLONE_FILES clone
    EXPECT_NE((*files)[0], (*files)[1]);
    EXPECT_NE((*files)[0], (*files)[3]);
    EXPECT_NE((*files)[1], (*files)[3]);
    auto fs = k.classes(KCMP_FS, items);
    ASSERT_TRUE(fs);
    EXPECT_EQ((*fs)[0], (*fs)[3]);
    EXPECT_NE((*fs)[0], (*fs)[1]);
    EXPECT_NE((*fs)[0], (*fs)[2]);
    EXPECT_LE(k.calls(), 2 * sort_bound(items.size()));
    // Asked again, in another order: no call; the classes follow the order.
    uint64_t calls = k.calls();
    std::vector<KcmpItem> turned{items[3], items[2], items[1], items[0]};
    auto again = k.classes(KCMP_FILES, turned);
    ASSERT_TRUE(again);
    EXPECT_EQ((*again)[1], (*again)[3]);
    EXPECT_NE((*again)[1], (*again)[2]);
    EXPECT_NE((*again)[0], (*again)[3]);
    EXPECT_EQ(k.calls(), calls);
}

TEST(KcmpCache, EachRelationAskedOnce) {
    Clones c;
    pid_t a = c.make(0), b = c.make(CLONE_FILES);
    KcmpCache k;
    int ab = k.order(KCMP_VM, a, b);
    ASSERT_TRUE(ab == 1 || ab == 2) << ab;
    EXPECT_EQ(k.order(KCMP_VM, b, a), 3 - ab);  // turned round, not asked
    EXPECT_EQ(k.order(KCMP_VM, a, b), ab);
    EXPECT_EQ(k.calls(), 1u);
    EXPECT_EQ(k.order(KCMP_FILES, getpid(), b), 0);
    EXPECT_EQ(k.calls(), 2u);
    // The kernel's own answer, asked directly, agrees.
    EXPECT_EQ(syscall(SYS_kcmp, b, a, KCMP_VM, 0, 0), 3 - ab);
}

// Groups of many processes: the classes are kcmp's pairwise answers, in far
// fewer calls than pairs.
TEST(KcmpCache, GroupsOfManyBySorting) {
    Clones c;
    std::vector<KcmpItem> items;
    std::vector<int> group;  // 0: shares the test's table; else its own
    for (int i = 0; i < 40; ++i) {
        bool share = i % 3 == 0;
        items.push_back({c.make(share ? CLONE_FILES : 0), 0});
        group.push_back(share ? 0 : i + 1);
    }
    items.push_back({getpid(), 0});
    group.push_back(0);
    KcmpCache k;
    auto cls = k.classes(KCMP_FILES, items);
    ASSERT_TRUE(cls);
    uint64_t calls = k.calls();
    size_t n = items.size();
    EXPECT_LE(calls, sort_bound(n));
    EXPECT_LT(calls, n * (n - 1) / 2);
    for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < n; ++j)
            EXPECT_EQ((*cls)[i] == (*cls)[j], group[i] == group[j]) << i << " " << j;
    // Every pair, asked of the kernel: the same answers.
    for (size_t i = 0; i < n; ++i)
        for (size_t j = i + 1; j < n; ++j)
            EXPECT_EQ(syscall(SYS_kcmp, items[i].pid, items[j].pid, KCMP_FILES, 0, 0) == 0,
                      (*cls)[i] == (*cls)[j]);
}

// All of them holding one object (an fd table shared by every clone): n - 1
// calls, each against the first (the sort of equal items asked about
// n log2 n / 2 + n); one that differs, found on the way, still gets its own class.
TEST(KcmpCache, AllHoldingOneObjectTakeOneCallEach) {
    Clones c;
    std::vector<KcmpItem> items{{getpid(), 0}};
    for (int i = 0; i < 15; ++i) items.push_back({c.make(CLONE_FILES), 0});
    KcmpCache k;
    auto cls = k.classes(KCMP_FILES, items);
    ASSERT_TRUE(cls);
    EXPECT_EQ(*cls, std::vector<int>(items.size(), 0));
    EXPECT_EQ(k.calls(), items.size() - 1);
    items.push_back({c.make(0), 0});  // its own table
    items.push_back({c.make(CLONE_FILES), 0});
    KcmpCache mixed;
    cls = mixed.classes(KCMP_FILES, items);
    ASSERT_TRUE(cls);
    for (size_t i = 0; i < items.size(); ++i)
        EXPECT_EQ((*cls)[i] == (*cls)[0], i != items.size() - 2) << i;
    EXPECT_LE(mixed.calls(), items.size() + sort_bound(items.size()));
}

// Open file descriptions (KCMP_FILE): dups are one, opens are several.
TEST(KcmpCache, FileDescriptions) {
    int a = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    int b = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    int a2 = ::fcntl(a, F_DUPFD_CLOEXEC, 0);
    ASSERT_GE(a, 0);
    ASSERT_GE(b, 0);
    ASSERT_GE(a2, 0);
    KcmpCache k;
    std::vector<KcmpItem> items{kcmp_fd(getpid(), a), kcmp_fd(getpid(), b), kcmp_fd(getpid(), a2)};
    auto cls = k.classes(KCMP_FILE, items);
    ASSERT_TRUE(cls);
    EXPECT_EQ((*cls)[0], (*cls)[2]);
    EXPECT_NE((*cls)[0], (*cls)[1]);
    ::close(a);
    ::close(b);
    ::close(a2);
}

// A kcmp that fails: no classes (the caller asks pair by pair, whose error
// names the pair); the pair's answer is the error.
TEST(KcmpCache, FailureLeavesThePairsToTheCaller) {
    Clones c;
    pid_t a = c.make(0);
    pid_t gone = c.make(0);
    ::kill(gone, SIGKILL);
    siginfo_t si{};
    ASSERT_EQ(::waitid(P_PID, id_t(gone), &si, WEXITED), 0);  // reaped: the pid is free
    KcmpCache k;
    std::vector<KcmpItem> items{{getpid(), 0}, {a, 0}, {gone, 0}};
    EXPECT_FALSE(k.classes(KCMP_VM, items));
    EXPECT_EQ(k.order(KCMP_VM, a, gone), -ESRCH);
}

// classify_task_sharing: the groups of a tree's fd tables and fs right, in
// about n log n kcmp calls (every pair: n^2 / 2 per type).
TEST(KcmpCache, TaskSharingBySorting) {
    Clones c;
    std::vector<pid_t> pids{getpid()}, ppids{getppid()};
    for (int i = 0; i < 30; ++i) {
        pids.push_back(c.make(i % 5 == 0 ? CLONE_FILES : 0));
        ppids.push_back(getpid());
    }
    std::vector<image::ShareTaskRecord> recs;
    Reasons why;
    KcmpCache k;
    classify_task_sharing(pids, ppids, recs, why, k);
    ASSERT_EQ(recs.size(), pids.size());
    for (size_t i = 1; i < pids.size(); ++i) {
        EXPECT_EQ(recs[i].files_pid, (i - 1) % 5 == 0 ? getpid() : 0) << i;
        EXPECT_EQ(recs[i].fs_pid, 0) << i;
    }
    EXPECT_TRUE(why.empty()) << why.front();
    size_t n = pids.size();
    EXPECT_LE(k.calls(), 2 * sort_bound(n));
    EXPECT_LT(k.calls(), n * (n - 1) / 2);
    // The checkpoint asks again (share_tasks_between_members): no call.
    uint64_t calls = k.calls();
    classify_task_sharing(pids, ppids, recs, why, k);
    EXPECT_EQ(k.calls(), calls);
}

// The kernel's own answer for a pair (a cache of its own, asked once).
int raw_order(int type, KcmpItem a, KcmpItem b) {
    long r = syscall(SYS_kcmp, a.pid, b.pid, type, a.idx, b.idx);
    return r < 0 ? -errno : int(r);
}

// Clones sharing fd tables in groups: 24 processes, every fourth clone in
// the test's table.
std::vector<KcmpItem> tables(Clones& c) {
    std::vector<KcmpItem> items{{getpid(), 0}};
    for (int i = 0; i < 23; ++i) items.push_back({c.make(i % 4 == 0 ? CLONE_FILES : 0), 0});
    return items;
}

// perf (session 47): a sorted set answers any two of its items, in kcmp's
// own order, with no call; a subset of it is sorted with none.
TEST(KcmpCache, ASortedSetAnswersAnyTwoOfItsItemsWithoutACall) {
    Clones c;
    std::vector<KcmpItem> items = tables(c);
    KcmpCache k;
    ASSERT_TRUE(k.classes(KCMP_FILES, items));
    const uint64_t calls = k.calls();
    for (size_t i = 0; i < items.size(); ++i)
        for (size_t j = 0; j < items.size(); ++j)
            EXPECT_EQ(k.order(KCMP_FILES, items[i], items[j]),
                      raw_order(KCMP_FILES, items[i], items[j]))
                << i << " " << j;
    std::vector<KcmpItem> some{items[7], items[1], items[12], items[0], items[21]};
    auto cls = k.classes(KCMP_FILES, some);
    ASSERT_TRUE(cls);
    EXPECT_EQ((*cls)[1] == (*cls)[3], true);   // clone 0 shares the test's table
    EXPECT_EQ((*cls)[0] == (*cls)[3], false);  // clone 6 has its own
    EXPECT_EQ(k.calls(), calls);
    // Another type is not answered by these ranks.
    EXPECT_EQ(k.order(KCMP_FS, items[0], items[1]), raw_order(KCMP_FS, items[0], items[1]));
    EXPECT_EQ(k.calls(), calls + 1);
}

// perf (session 47): sorts made in other caches (a tree's, on its tracers)
// and adopted: the whole set sorted then asks only across them, and tells the
// same classes as a sort of its own.
TEST(KcmpCache, AdoptedSortsAnswerWithoutACall) {
    Clones c;
    std::vector<KcmpItem> items = tables(c);
    std::sort(items.begin(), items.end());  // as classes() sorts them
    const auto mid = items.begin() + long(items.size() / 2);
    KcmpCache first, second, whole, fresh;
    ASSERT_TRUE(first.classes(KCMP_FILES, std::vector<KcmpItem>(items.begin(), mid)));
    ASSERT_TRUE(second.classes(KCMP_FILES, std::vector<KcmpItem>(mid, items.end())));
    whole.adopt(std::move(first));
    whole.adopt(std::move(second));
    const uint64_t adopted = whole.calls();
    EXPECT_EQ(whole.order(KCMP_FILES, items[0], items[1]),
              raw_order(KCMP_FILES, items[0], items[1]));
    EXPECT_EQ(whole.calls(), adopted);  // one half's
    auto cls = whole.classes(KCMP_FILES, items);
    auto own = fresh.classes(KCMP_FILES, items);
    ASSERT_TRUE(cls);
    ASSERT_TRUE(own);
    for (size_t i = 0; i < items.size(); ++i)
        for (size_t j = 0; j < items.size(); ++j)
            EXPECT_EQ((*cls)[i] == (*cls)[j], (*own)[i] == (*own)[j]) << i << " " << j;
    // The merge asked at most across the halves (and their neighbours).
    EXPECT_LE(whole.calls() - adopted, 2 * items.size());
    EXPECT_LT(whole.calls() - adopted, fresh.calls());
}

}  // namespace
}  // namespace crfs::state
