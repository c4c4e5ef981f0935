// A checkpoint or `reason` read reads each System V table once (issue 10
// perf, state/sysv_tables.h): a tree's members share the root's tables, and
// each member's detect and dump find the queues and sets it used last in them.
// On real processes, a real queue and semaphore set.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "state/kind.h"
#include "state/sysv_msg.h"
#include "state/sysv_sem.h"
#include "state/sysv_tables.h"

namespace crfs {
namespace {

// A queue and a set of 2 semaphores (IPC_PRIVATE), removed at the end.
struct Objects {
    int msq = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
    int sem = semget(IPC_PRIVATE, 2, IPC_CREAT | 0600);
    ~Objects() {
        if (msq >= 0) msgctl(msq, IPC_RMID, nullptr);
        if (sem >= 0) semctl(sem, 0, IPC_RMID);
    }
};

// A child that, when `use`, sends a message to the queue and operates on the
// set's second semaphore, then says so on a pipe and pauses; killed at the end.
struct Child {
    pid_t pid = -1;
    Child(const Objects& o, bool use) {
        int p[2];
        if (pipe(p) != 0) return;
        pid = fork();
        if (pid == 0) {
            if (use) {
                struct {
                    long type;
                    char text[4];
                } m{1, "hi"};
                sembuf op{1, 1, 0};
                if (msgsnd(o.msq, &m, sizeof m.text, 0) != 0 || semop(o.sem, &op, 1) != 0) _exit(1);
            }
            if (write(p[1], "x", 1) != 1) _exit(1);
            pause();
            _exit(0);
        }
        char c;
        if (pid < 0 || read(p[0], &c, 1) != 1) pid = -1;
        close(p[0]);
        close(p[1]);
    }
    ~Child() {
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, nullptr, 0);
        }
    }
};

TEST(SysvTables, ATreesMembersReadEachTableOnce) {
    Objects o;
    ASSERT_GE(o.msq, 0);
    ASSERT_GE(o.sem, 0);
    Child user(o, true), other(o, false);
    ASSERT_GT(user.pid, 0);
    ASSERT_GT(other.pid, 0);
    const std::vector<pid_t> image{user.pid, other.pid};
    // As state/tree.cc shares them: the second view takes the first's tables.
    state::TaskView a(user.pid, getpid()), b(other.pid, getpid());
    a.set_image_pids(image);
    b.set_image_pids(image);
    b.set_sysv_tables(a.sysv_tables());
    std::shared_ptr<state::SysvTables> tables = a.sysv_tables();
    EXPECT_EQ(tables->reads(), 0u);

    state::Reasons why;
    ASSERT_TRUE(state::detect_ipc(a, why));
    ASSERT_TRUE(state::detect_ipc(b, why));
    EXPECT_TRUE(why.empty()) << why.front();
    EXPECT_EQ(tables->reads(), 1u);  // the message queues' table, once for both

    // The dump finds the user's queue and set in the same tables, and not the other's.
    auto msg_a = state::dump_sysv_msg(user.pid, image, *tables);
    auto msg_b = state::dump_sysv_msg(other.pid, image, *tables);
    auto sem_a = state::dump_sysv_sem(user.pid, image, *tables);
    auto sem_b = state::dump_sysv_sem(other.pid, image, *tables);
    ASSERT_TRUE(msg_a && msg_b && sem_a && sem_b);
    EXPECT_EQ(msg_a->size(), 1u);
    EXPECT_TRUE(msg_b->empty());
    EXPECT_EQ(sem_a->size(), 1u);
    EXPECT_TRUE(sem_b->empty());
    EXPECT_EQ(tables->reads(), 2u);  // and the semaphore sets' table, once
}

// Tables read once are that instant's: a queue made after the first read is
// not in them (each checkpoint and `reason` read makes its own).
TEST(SysvTables, AreThoseOfTheirFirstRead) {
    auto has = [](const std::vector<state::SysvTables::Row>& rows, int id) {
        for (const auto& r : rows)
            if (r.size() > 1 && r[1] == id) return true;
        return false;
    };
    state::SysvTables tables;
    tables.msg();
    Objects o;
    ASSERT_GE(o.msq, 0);
    EXPECT_FALSE(has(tables.msg(), o.msq));
    EXPECT_TRUE(has(state::SysvTables().msg(), o.msq));
    EXPECT_EQ(tables.reads(), 1u);
}

}  // namespace
}  // namespace crfs
