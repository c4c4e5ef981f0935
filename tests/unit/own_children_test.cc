#include "common/own_children.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "common/procfs.h"
#include "fs/reaper.h"
#include "tests/support/harness.h"

namespace crfs {
namespace {

bool has(const std::vector<pid_t>& v, pid_t pid) {
    return std::find(v.begin(), v.end(), pid) != v.end();
}

bool gone(pid_t pid) {
    return ::access(("/proc/" + std::to_string(pid)).c_str(), F_OK) != 0;
}

// An adopter that only counts what it is given, and watches none.
void count_adoptions(std::atomic<int>& taken) {
    own_children::set_adopter([&taken](pid_t, UniqueFd) {
        ++taken;
        return false;
    });
}

// A child made as crfsd makes one: registered under the lock.
pid_t make_own_child() {
    own_children::Making making;
    pid_t pid = ::fork();
    if (pid == 0)
        for (;;) ::pause();
    making.made(pid);
    return pid;
}

// While this process is a subreaper, a process it did not make through
// Making (as a restored tree's member makes its children) makes two children,
// one that ends at once, and ends: both come to us. The listing reaps the
// zombie, hands the living one to the daemon's reaper, which reaps it when it
// ends, and leaves the child we made alone.
TEST(OwnChildren, OrphansAreReapedOrWatchedAndOurOwnChildIsLeftAlone) {
    fs::ExitWatcher w;
    ASSERT_TRUE(w.start());
    fs::Reaper r(w);
    own_children::set_adopter(
        [&](pid_t pid, UniqueFd fd) { return r.adopt_orphan(pid, std::move(fd)); });
    ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
    pid_t mine = make_own_child();
    ASSERT_GT(mine, 0);
    int p[2];
    ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
    pid_t mid = ::fork();
    if (mid == 0) {
        pid_t kids[2];
        kids[0] = ::fork();
        if (kids[0] == 0) ::_exit(0);
        kids[1] = ::fork();
        if (kids[1] == 0)
            for (;;) ::pause();
        (void)!::write(p[1], kids, sizeof kids);
        ::_exit(0);
    }
    ::close(p[1]);
    pid_t kids[2] = {};
    ASSERT_EQ(::read(p[0], kids, sizeof kids), ssize_t(sizeof kids));
    ::close(p[0]);
    ASSERT_EQ(::waitpid(mid, nullptr, 0), mid);
    auto state = [](pid_t pid) {
        auto st = read_stat(pid);
        return st && st->ppid == ::getpid() ? st->state : '-';
    };
    ASSERT_TRUE(test::wait_until([&] { return state(kids[0]) == 'Z'; }));
    ASSERT_NE(state(kids[1]), '-');
    ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0), 0);

    auto o = own_children::adopt_orphans();
    EXPECT_TRUE(has(o.reaped, kids[0]));
    EXPECT_TRUE(has(o.adopted, kids[1]));
    EXPECT_TRUE(o.left.empty());
    EXPECT_FALSE(has(o.reaped, mine) || has(o.adopted, mine));
    EXPECT_TRUE(gone(kids[0]));
    EXPECT_TRUE(own_children::registered(kids[1]));  // the reaper's
    EXPECT_TRUE(own_children::registered(mine));
    // A second listing finds nothing new: the watched one is not watched twice.
    auto again = own_children::adopt_orphans();
    EXPECT_FALSE(has(again.adopted, kids[1]) || has(again.adopted, mine));

    ::kill(kids[1], SIGKILL);
    EXPECT_TRUE(test::wait_until([&] { return gone(kids[1]); }));
    EXPECT_TRUE(test::wait_until([&] { return !own_children::registered(kids[1]); }));
    ::kill(mine, SIGKILL);
    int st = 0;
    EXPECT_EQ(own_children::waitpid(mine, &st, 0), mine);
    EXPECT_TRUE(WIFSIGNALED(st));
    EXPECT_FALSE(own_children::registered(mine));
    own_children::set_adopter(nullptr);
}

// waitpid forgets only what it reaped; a child reaped without a word is
// forgotten at the next listing; a pidfd's wait forgets it too.
TEST(OwnChildren, ForgottenOnceReaped) {
    own_children::set_adopter([](pid_t, UniqueFd) { return false; });
    pid_t a = make_own_child(), b = make_own_child(), c = make_own_child();
    ASSERT_GT(a, 0);
    ASSERT_GT(b, 0);
    ASSERT_GT(c, 0);
    int st = 0;
    EXPECT_EQ(own_children::waitpid(a, &st, WNOHANG), 0);
    EXPECT_TRUE(own_children::registered(a));
    ::kill(a, SIGKILL);
    EXPECT_EQ(own_children::waitpid(a, &st, 0), a);
    EXPECT_FALSE(own_children::registered(a));

    test::kill_and_reap(b);  // not through the registry
    EXPECT_TRUE(own_children::registered(b));
    auto o = own_children::adopt_orphans();
    EXPECT_FALSE(own_children::registered(b));
    EXPECT_FALSE(has(o.reaped, c) || has(o.adopted, c) || has(o.left, c));
    EXPECT_TRUE(own_children::registered(c));

    UniqueFd fd(int(::syscall(SYS_pidfd_open, c, 0)));
    ASSERT_TRUE(fd);
    ::kill(c, SIGKILL);
    siginfo_t si{};
    EXPECT_EQ(own_children::waitid_pidfd(c, fd.get(), &si, 0), 0);
    EXPECT_EQ(si.si_pid, c);
    EXPECT_FALSE(own_children::registered(c));
    own_children::set_adopter(nullptr);
}

// A thread that makes and reaps children while another lists them: a child
// being made is never taken for an orphan (the lock held across the fork),
// and its owner's wait always finds it.
TEST(OwnChildren, AChildBeingMadeIsNeverAnOrphan) {
    std::atomic<int> taken{0};
    count_adoptions(taken);
    std::atomic<bool> stop{false};
    std::atomic<int> made{0}, lost{0};
    std::thread maker([&] {
        while (!stop) {
            pid_t pid;
            {
                own_children::Making making;
                pid = ::fork();
                if (pid == 0) ::_exit(7);
                making.made(pid);
            }
            int st = 0;
            if (own_children::waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 7)
                ++lost;
            ++made;
        }
    });
    size_t stolen = 0;
    // Each listing overlaps the maker's forks; the next waits for one more
    // made, so that a writer-first lock cannot starve the maker.
    for (int i = 0; i < 40; ++i) {
        auto o = own_children::adopt_orphans();
        stolen += o.reaped.size() + o.adopted.size() + o.left.size();
        for (int seen = made; made == seen;) std::this_thread::yield();
    }
    stop = true;
    maker.join();
    EXPECT_GE(made, 40);
    EXPECT_EQ(lost, 0);
    EXPECT_EQ(stolen, 0u);
    EXPECT_EQ(taken, 0);
    own_children::set_adopter(nullptr);
}

// The worst moment, made to happen: a child the walk of /proc saw is
// registered only after the walk. The listing's check waits for it (the
// lock), so it is no orphan. Without the lock the check comes first and the
// child is taken (the maker gives it 200 ms to come; with the lock the check
// cannot, and the maker goes on after those 200 ms).
TEST(OwnChildren, AChildRegisteredAfterTheWalkIsNoOrphan) {
    std::atomic<int> taken{0};
    count_adoptions(taken);
    std::atomic<bool> forked{false}, walked{false}, checked{false};
    own_children::test_after_walk([&] { walked = true; });
    pid_t pid = -1;
    std::thread maker([&] {
        own_children::Making making;
        pid = ::fork();
        if (pid == 0)
            for (;;) ::pause();
        forked = true;
        while (!walked) std::this_thread::yield();
        auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
        while (!checked && std::chrono::steady_clock::now() < end) std::this_thread::yield();
        making.made(pid);
    });
    while (!forked) std::this_thread::yield();
    auto o = own_children::adopt_orphans();
    checked = true;
    maker.join();
    own_children::test_after_walk(nullptr);
    own_children::set_adopter(nullptr);
    EXPECT_FALSE(has(o.reaped, pid) || has(o.adopted, pid) || has(o.left, pid));
    EXPECT_EQ(taken, 0);
    EXPECT_TRUE(own_children::registered(pid));
    ::kill(pid, SIGKILL);
    int st = 0;
    EXPECT_EQ(own_children::waitpid(pid, &st, 0), pid);
}

}  // namespace
}  // namespace crfs
