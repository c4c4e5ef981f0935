// A checkpoint reads a task's fds once (session 14, s14-ckviews): read_fds
// dumps the fds of the task's view (state/kind.h: what its detect saw, while
// frozen) and tells their description groups with the view's kcmp answers;
// share_between_members (state/tree_share_dump.h) takes the members' views
// instead of reading /proc/PID/fd again. On real processes.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/close_range.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "checkpoint/files.h"
#include "state/fds.h"
#include "state/kcmp_cache.h"
#include "state/kind.h"
#include "state/tree_share_dump.h"

namespace crfs {
namespace {

bool has_fd(pid_t pid, int fd) {
    return ::access(("/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd)).c_str(), F_OK) ==
           0;
}

// Waits (bounded) until `ok` holds.
template <class F>
bool wait_until(F ok) {
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!ok()) {
        if (std::chrono::steady_clock::now() > end) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return true;
}

int g_close_on_usr1 = -1;
void on_usr1(int) {
    if (g_close_on_usr1 >= 0) ::close(g_close_on_usr1);
}

// Children holding only fds 0, 1, 2 on the description `shared` (dup2), and
// fd 5 (one of their own /dev/null) with its dup 7; SIGUSR1 closes fd
// `close_on_usr1`. Killed and reaped at the end.
class Holders {
  public:
    ~Holders() {
        for (pid_t p : pids_) {
            ::kill(p, SIGKILL);
            ::waitpid(p, nullptr, 0);
        }
    }
    pid_t make(int shared, int close_on_usr1) {
        pid_t pid = ::fork();
        if (pid == 0) {
            g_close_on_usr1 = close_on_usr1;
            ::signal(SIGUSR1, on_usr1);
            for (int fd = 0; fd < 3; ++fd) ::dup2(shared, fd);
            int own = ::open("/dev/null", O_RDWR);
            ::dup2(own, 5);
            ::dup2(own, 7);
            ::syscall(SYS_close_range, 3, 4, 0);
            ::syscall(SYS_close_range, 6, 6, 0);
            ::syscall(SYS_close_range, 8, ~0u, 0);
            for (;;) ::pause();
        }
        EXPECT_GT(pid, 0) << std::strerror(errno);
        pids_.push_back(pid);
        EXPECT_TRUE(wait_until([&] { return has_fd(pid, 7) && !has_fd(pid, 3); }));
        return pid;
    }

  private:
    std::vector<pid_t> pids_;
};

int same_as(const std::vector<TaskFd>& fds, int fd) {
    for (const TaskFd& t : fds)
        if (t.rec.fd == fd) return t.rec.same_as;
    return -2;
}

TEST(ViewReuse, ReadFdsDumpsTheViewsFdsWithItsKcmpAnswers) {
    int null = ::open("/dev/null", O_RDWR);
    ASSERT_GE(null, 0);
    Holders h;
    pid_t pid = h.make(null, 0);
    ::close(null);
    state::TaskView view(pid, getpid());
    auto fds = read_fds(view);
    ASSERT_TRUE(fds) << fds.error().what;
    ASSERT_EQ(fds->size(), 5u);
    EXPECT_EQ(same_as(*fds, 0), -1);
    EXPECT_EQ(same_as(*fds, 1), 0);
    EXPECT_EQ(same_as(*fds, 2), 0);
    EXPECT_EQ(same_as(*fds, 5), -1);
    EXPECT_EQ(same_as(*fds, 7), 5);
    // The groups were asked through the view's cache (a detect before it
    // asked them already: then read_fds asks nothing).
    uint64_t asked = view.kcmp()->calls();
    EXPECT_GT(asked, 0u);
    std::vector<state::FdIdentity> ids;
    for (const state::FdView& f : **view.fds()) ids.push_back({f.fd, f.st.st_dev, f.st.st_ino});
    ASSERT_TRUE(state::description_groups(pid, ids, view.kcmp().get()));
    EXPECT_EQ(view.kcmp()->calls(), asked);

    // The view's fds, not /proc's now: fd 0 closed after the view was read is
    // still dumped (the task is frozen in a checkpoint: nothing closes).
    ::kill(pid, SIGUSR1);
    ASSERT_TRUE(wait_until([&] { return !has_fd(pid, 0); }));
    auto again = read_fds(view);
    ASSERT_TRUE(again) << again.error().what;
    EXPECT_EQ(again->size(), 5u);
    EXPECT_EQ(view.kcmp()->calls(), asked);
}

// Member b's fd 0 is member a's fd 0 (a share-fd record), its fds 1 and 2 dups of it.
void expect_fd0_shared(const std::vector<TaskFd>& fb) {
    int shared = 0;
    for (const TaskFd& t : fb)
        if (t.rec.kind == uint32_t(image::FdKind::kShared) && t.rec.same_as < 0) {
            EXPECT_EQ(t.rec.fd, 0);
            ASSERT_EQ(t.records.size(), 1u);
            image::ShareFdRecord r;
            ASSERT_EQ(t.records[0].first, image::RecordType::kShareFd);
            ASSERT_GE(t.records[0].second.size(), sizeof r);
            std::memcpy(&r, t.records[0].second.data(), sizeof r);
            EXPECT_EQ(r.owner, 0u);
            EXPECT_EQ(r.owner_fd, 0);
            ++shared;
        }
    EXPECT_EQ(shared, 1);
    EXPECT_EQ(same_as(fb, 1), 0);
    EXPECT_EQ(same_as(fb, 2), 0);
}

TEST(ViewReuse, ShareBetweenMembersTakesTheMembersViews) {
    int null = ::open("/dev/null", O_RDWR);
    ASSERT_GE(null, 0);
    Holders h;
    pid_t a = h.make(null, -1);
    pid_t b = h.make(null, 0);
    ::close(null);
    std::vector<pid_t> pids{a, b};
    state::TaskView va(a, getpid()), vb(b, getpid());
    vb.set_kcmp(va.kcmp());  // one cache per checkpoint, as detect_tree shares it
    va.set_image_pids(pids);
    vb.set_image_pids(pids);
    auto fa = read_fds(va);
    auto fb = read_fds(vb);
    ASSERT_TRUE(fa) << fa.error().what;
    ASSERT_TRUE(fb) << fb.error().what;
    uint64_t asked = va.kcmp()->calls();
    std::vector<TaskFd> fa2 = *fa, fb2 = *fb;  // for the second share

    std::vector<state::TaskView*> views{&va, &vb};
    std::vector<std::vector<TaskFd>*> fds{&*fa, &*fb};
    auto s = share_between_members(pids, fds, views);
    ASSERT_TRUE(s) << s.error().what;
    expect_fd0_shared(*fb);
    // Two members, two descriptions each: the cross-member comparisons only
    // (b's fd 0 against a's fd 0, and the two own /dev/null's against each other).
    EXPECT_LE(va.kcmp()->calls() - asked, 4u);

    // b's fd 0 closes after its view was read. Sharing goes by the views and
    // asks nothing new (a fresh read of /proc would find fd 1 leading its
    // group, a record never captured).
    asked = va.kcmp()->calls();
    ::kill(b, SIGUSR1);
    ASSERT_TRUE(wait_until([&] { return !has_fd(b, 0); }));
    std::vector<std::vector<TaskFd>*> fds2{&fa2, &fb2};
    s = share_between_members(pids, fds2, views);
    ASSERT_TRUE(s) << s.error().what;
    expect_fd0_shared(fb2);
    EXPECT_EQ(va.kcmp()->calls(), asked);
}

// A view lists the children of every thread once (TaskView::children): a
// tree's members ask their parent's view, all of them the same list, read
// while the tree is frozen. A child made after the first look is not in the
// view's list; a new view sees it. A gone task is ESRCH.
TEST(ViewReuse, ChildrenAreListedOnceForTheView) {
    Holders kids;
    int null_fd = ::open("/dev/null", O_RDWR);
    ASSERT_GE(null_fd, 0);
    pid_t a = kids.make(null_fd, -1), b = kids.make(null_fd, -1);
    state::TaskView view(getpid(), getpid());
    auto first = view.children();
    ASSERT_TRUE(first) << first.error().what;
    auto has = [](const std::vector<pid_t>& v, pid_t p) {
        return std::find(v.begin(), v.end(), p) != v.end();
    };
    EXPECT_TRUE(has(**first, a));
    EXPECT_TRUE(has(**first, b));
    pid_t c = kids.make(null_fd, -1);
    ::close(null_fd);
    auto again = view.children();
    ASSERT_TRUE(again) << again.error().what;
    EXPECT_EQ(*again, *first);  // the same list, not read again
    EXPECT_FALSE(has(**again, c));
    state::TaskView fresh(getpid(), getpid());
    auto now = fresh.children();
    ASSERT_TRUE(now) << now.error().what;
    EXPECT_TRUE(has(**now, c));

    pid_t gone = ::fork();
    if (gone == 0) ::_exit(0);
    ASSERT_GT(gone, 0);
    ASSERT_EQ(::waitpid(gone, nullptr, 0), gone);
    state::TaskView dead(gone, getpid());
    auto none = dead.children();
    ASSERT_FALSE(none);
    EXPECT_EQ(none.error().code, ESRCH);
}

// A tracer that is one of our own threads (a checkpoint's tracers) is ours
// (TaskView::traced_by_us, known from /proc/SELF/task/TID); a thread of
// another process whose parent is not us is not; our child is (as before).
// A view's smaps taken by its last user: the entries read once, then no
// second read of the task (which may have changed since): EINVAL.
TEST(ViewReuse, SmapsTakenOnceIsNotReadAgain) {
    state::TaskView view(getpid(), getpid());
    auto seen = view.smaps();
    ASSERT_TRUE(seen) << seen.error().what;
    size_t areas = (*seen)->size();
    ASSERT_GT(areas, 0u);
    uint64_t first = (*seen)->front().start;
    auto taken = view.take_smaps();
    ASSERT_TRUE(taken) << taken.error().what;
    EXPECT_EQ(taken->size(), areas);  // the same reading, not a new one
    EXPECT_EQ(taken->front().start, first);
    auto again = view.smaps();
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, EINVAL);
    auto twice = view.take_smaps();
    ASSERT_FALSE(twice);
    EXPECT_EQ(twice.error().code, EINVAL);
    state::TaskView fresh(getpid(), getpid());  // taken before any read: read then
    auto first_take = fresh.take_smaps();
    ASSERT_TRUE(first_take) << first_take.error().what;
    EXPECT_GT(first_take->size(), 0u);
}

TEST(ViewReuse, OurThreadsAndChildrenAreOursOthersAreNot) {
    Holders kids;
    int null_fd = ::open("/dev/null", O_RDWR);
    ASSERT_GE(null_fd, 0);
    pid_t child = kids.make(null_fd, -1);
    ::close(null_fd);
    state::TaskView view(child, getpid());
    std::atomic<pid_t> tid{0};
    std::atomic<bool> done{false};
    std::thread t([&] {
        tid = pid_t(::syscall(SYS_gettid));
        while (!done) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    });
    ASSERT_TRUE(wait_until([&] { return tid != 0; }));
    EXPECT_TRUE(view.traced_by_us(tid));
    EXPECT_TRUE(view.traced_by_us(getpid()));
    EXPECT_TRUE(view.traced_by_us(child));
    EXPECT_FALSE(view.traced_by_us(1));  // init: neither ours nor our child
    done = true;
    t.join();
}

}  // namespace
}  // namespace crfs
