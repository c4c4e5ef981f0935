// What a checkpoint reads of a task once, and reuses (session 47): a view's
// links, stats and timers text (state/kind.h: the root's tree-wide detect and
// the member's dump ask them, read ahead on the member's tracer), and a
// tree's freeze's stat and last children lists of each member
// (state/tree_dump.h: the capture and the views take them instead of reading
// /proc again). On real processes.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <vector>

#include "common/procfs.h"
#include "state/kind.h"
#include "state/tree.h"
#include "state/tree_dump.h"

namespace crfs {
namespace {

// Reads one byte from `fd`, waiting at most 60 s.
bool read_byte(int fd, char& c) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 60000) == 1 && ::read(fd, &c, 1) == 1;
}

// A child that, at a byte on its command pipe, moves to /tmp, makes a POSIX
// timer and (as root) enters a new IPC namespace, then acks. Killed and
// reaped at the end.
class Changer {
  public:
    Changer() {
        int cmd[2], ack[2];
        if (::pipe(cmd) != 0 || ::pipe(ack) != 0) return;
        pid_ = ::fork();
        if (pid_ == 0) {
            char c;
            if (::read(cmd[0], &c, 1) != 1) ::_exit(1);
            timer_t id;
            if (::chdir("/tmp") != 0 || ::syscall(SYS_timer_create, CLOCK_MONOTONIC, nullptr, &id))
                ::_exit(2);
            if (::geteuid() == 0 && ::unshare(CLONE_NEWIPC) != 0) ::_exit(3);
            if (::write(ack[1], "k", 1) != 1) ::_exit(4);
            for (;;) ::pause();
        }
        ::close(cmd[0]);
        ::close(ack[1]);
        cmd_ = cmd[1];
        ack_ = ack[0];
    }
    ~Changer() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        ::close(cmd_);
        ::close(ack_);
    }
    pid_t pid() const { return pid_; }
    bool change() {
        char c;
        return ::write(cmd_, "c", 1) == 1 && read_byte(ack_, c);
    }
    void end() {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }

  private:
    pid_t pid_ = -1;
    int cmd_ = -1, ack_ = -1;
};

TEST(ViewReads, LinksStatsAndTimersAreReadOnceAndAGoneTaskIsEsrch) {
    Changer task;
    ASSERT_GT(task.pid(), 0);
    state::TaskView view(task.pid(), getpid());
    auto cwd = view.link("cwd");
    ASSERT_TRUE(cwd) << cwd.error().what;
    auto root = view.link("root");
    ASSERT_TRUE(root) << root.error().what;
    EXPECT_EQ(**root, "/");
    auto timers = view.timers();
    ASSERT_TRUE(timers) << timers.error().what;
    EXPECT_EQ(**timers, "");  // none yet
    auto ipc = view.stat_of("ns/ipc");
    ASSERT_TRUE(ipc) << ipc.error().what;
    const std::string cwd_was = **cwd;
    const ino_t ipc_was = (*ipc)->st_ino;
    ASSERT_NE(cwd_was, "/tmp");

    ASSERT_TRUE(task.change());
    state::TaskView now(task.pid(), getpid());  // a new view reads the task as it is now
    auto cwd_now = now.link("cwd");
    ASSERT_TRUE(cwd_now) << cwd_now.error().what;
    EXPECT_EQ(**cwd_now, "/tmp");
    auto timers_now = now.timers();
    ASSERT_TRUE(timers_now) << timers_now.error().what;
    EXPECT_NE((*timers_now)->find("ID: 0"), std::string::npos) << **timers_now;
    auto ipc_now = now.stat_of("ns/ipc");
    ASSERT_TRUE(ipc_now) << ipc_now.error().what;
    if (::geteuid() == 0) {
        EXPECT_NE((*ipc_now)->st_ino, ipc_was);
    }

    // The first view answers what it read, not the task's files again.
    EXPECT_EQ(**view.link("cwd"), cwd_was);
    EXPECT_EQ(**view.timers(), "");
    EXPECT_EQ((*view.stat_of("ns/ipc"))->st_ino, ipc_was);

    pid_t was = task.pid();
    task.end();
    state::TaskView gone(was, getpid());
    auto no_link = gone.link("cwd");
    ASSERT_FALSE(no_link);
    EXPECT_EQ(no_link.error().code, ESRCH);
    auto no_stat = gone.stat_of("status");
    ASSERT_FALSE(no_stat);
    EXPECT_EQ(no_stat.error().code, ENOENT);
    EXPECT_FALSE(gone.timers());
}

// A tree: R (its own process group) with a child C, C's child G, and a
// zombie child Z that R never reaps.
TEST(FrozenTreeReads, MembersKeepTheirFrozenStatAndTheirLastListedChildren) {
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    pid_t r = ::fork();
    ASSERT_GE(r, 0);
    if (r == 0) {
        ::setpgid(0, 0);
        if (::fork() == 0) {      // C
            if (::fork() == 0) {  // G
                if (::write(ready[1], "g", 1) != 1) ::_exit(1);
                for (;;) ::pause();
            }
            for (;;) ::pause();
        }
        pid_t z = ::fork();
        if (z == 0) ::_exit(0);
        siginfo_t si;
        if (::waitid(P_PID, id_t(z), &si, WEXITED | WNOWAIT) != 0) ::_exit(2);  // a zombie now
        if (::write(ready[1], "r", 1) != 1) ::_exit(3);
        for (;;) ::pause();
    }
    ::close(ready[1]);
    struct Ender {
        pid_t r;
        ~Ender() {
            ::kill(-r, SIGKILL);
            ::waitpid(r, nullptr, 0);
        }
    } ender{r};
    char c;
    ASSERT_TRUE(read_byte(ready[0], c));
    ASSERT_TRUE(read_byte(ready[0], c));
    ::close(ready[0]);

    auto tree = FrozenTree::freeze(r);
    ASSERT_TRUE(tree) << tree.error().what;
    auto& members = tree->members();
    ASSERT_EQ(members.size(), 3u);  // R, C, G
    ASSERT_EQ(tree->zombies().size(), 1u);
    EXPECT_EQ(members[0].pid, r);
    for (const FrozenTree::Member& m : members) {
        SCOPED_TRACE(m.pid);
        EXPECT_EQ(m.stat.pid, m.pid);
        EXPECT_EQ(m.stat.starttime, m.starttime);
        auto now = read_stat(m.pid);  // frozen: the same
        ASSERT_TRUE(now) << now.error().what;
        EXPECT_EQ(m.stat.starttime, now->starttime);
        EXPECT_EQ(m.stat.comm, now->comm);
        auto kids = state::list_children(m.pid);
        ASSERT_TRUE(kids) << kids.error().what;
        EXPECT_EQ(m.children, *kids);
    }
    const std::vector<pid_t>& of_r = members[0].children;
    EXPECT_EQ(of_r.size(), 2u);  // C and the zombie
    EXPECT_NE(std::find(of_r.begin(), of_r.end(), tree->zombies()[0].stat.pid), of_r.end());
    EXPECT_NE(std::find(of_r.begin(), of_r.end(), members[1].pid), of_r.end());
    EXPECT_EQ(members[1].children, std::vector<pid_t>{members[2].pid});
    EXPECT_TRUE(members[2].children.empty());
}

}  // namespace
}  // namespace crfs
