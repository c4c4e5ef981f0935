// checkpoint_task and its parts on live processes: errno of each failure, the
// task left exactly as it was, syscall restart after remote syscalls, the
// snapshot read in small chunks, concurrent checkpoints of one task.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <initializer_list>
#include <string>
#include <thread>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "checkpoint/freeze.h"
#include "checkpoint/memory.h"
#include "checkpoint/remote_syscall.h"
#include "checkpoint/task_attrs.h"
#include "common/image_reader.h"
#include "common/io.h"

namespace crfs {
namespace {

void close_fds_from(int lo, std::initializer_list<int> keep = {}) {
    for (int fd = lo; fd < 1024; ++fd)
        if (std::find(keep.begin(), keep.end(), fd) == keep.end()) close(fd);
}

// A forked child running `body` with /dev/null on 0-2 and no other descriptor
// but `keep` (so it is checkpointable); the constructor returns once that is
// so. Killed and reaped in the destructor: no test leaves a process behind.
class Child {
  public:
    template <class F>
    explicit Child(F body, std::initializer_list<int> keep = {}) {
        int ready[2];
        if (pipe(ready) != 0) abort();
        pid_ = fork();
        if (pid_ == 0) {
            int n = open("/dev/null", O_RDWR);
            dup2(n, 0);
            dup2(n, 1);
            dup2(n, 2);
            close_fds_from(3, keep);  // closes `ready` too: the parent sees EOF
            body();
            _exit(0);
        }
        close(ready[1]);
        char x;
        while (read(ready[0], &x, 1) > 0) {
        }
        close(ready[0]);
    }
    ~Child() {
        if (pid_ > 0) {
            kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
        }
    }
    pid_t pid() const { return pid_; }
    // Waits for the child to exit by itself; returns its wait status.
    int wait_exit() {
        int st = 0;
        waitpid(pid_, &st, 0);
        pid_ = -1;
        return st;
    }
    uint64_t starttime() const { return read_task_stat(pid_).value().starttime; }

  private:
    pid_t pid_ = -1;
};

// Waits (bounded) until /proc says the task is in `state` (S, T, ...).
bool wait_state(pid_t pid, char state) {
    for (int i = 0; i < 2000; ++i) {
        auto st = read_task_stat(pid);
        if (st && st->state == state) return true;
        usleep(1000);
    }
    return false;
}

// Not traced, and in `state`: a stopped task must be 'T' right away; a sleeping
// one may be running for a moment as it re-enters its syscall.
void expect_untouched(pid_t pid, char state) {
    EXPECT_EQ(read_tracer_pid(pid).value(), 0);
    if (state == 'S') {
        EXPECT_TRUE(wait_state(pid, 'S'));
    } else {
        auto st = read_task_stat(pid);
        ASSERT_TRUE(st);
        EXPECT_EQ(st->state, state);
    }
}

std::string read_all(const Snapshot& s, size_t chunk) {
    std::string out;
    std::vector<char> buf(chunk);
    for (uint64_t off = 0;;) {
        auto n = s.read(off, buf.data(), buf.size());
        EXPECT_TRUE(n);
        if (!n || *n == 0) break;
        out.append(buf.data(), *n);
        off += *n;
    }
    return out;
}

// Descriptors inherited from whoever started the tests (a CI runner's pipes)
// would make every child uncheckpointable: drop them before any test runs.
const bool kInheritedFdsClosed = [] {
    close_fds_from(3);
    return true;
}();

TEST(CheckpointTest, SleepingTaskKeepsSleepingAndImageDecodes) {
    Child c([] {
        for (;;) pause();
    });
    ASSERT_TRUE(wait_state(c.pid(), 'S'));
    auto snap = checkpoint_task(c.pid(), c.starttime());
    ASSERT_TRUE(snap) << snap.error().what;
    expect_untouched(c.pid(), 'S');
    std::string whole = read_all(**snap, 1 << 20);
    EXPECT_EQ(whole.size(), (*snap)->size());
    MemorySource src(whole.data(), whole.size());
    auto img = decode_image(src);
    ASSERT_TRUE(img) << img.error().what;
    EXPECT_EQ(img->task.pid, c.pid());
    EXPECT_EQ(img->fds.size(), 3u);
    EXPECT_FALSE(img->header.flags & image::kHeaderTaskWasStopped);
}

TEST(CheckpointTest, ReadsInOneKibChunksGiveTheSameBytes) {
    Child c([] {
        for (;;) pause();
    });
    ASSERT_TRUE(wait_state(c.pid(), 'S'));
    auto snap = checkpoint_task(c.pid(), c.starttime());
    ASSERT_TRUE(snap) << snap.error().what;
    EXPECT_EQ(read_all(**snap, 1024), read_all(**snap, 1 << 20));
    EXPECT_EQ(read_all(**snap, 4096), read_all(**snap, 777));
}

TEST(CheckpointTest, StoppedTaskStaysStopped) {
    Child c([] {
        for (;;) pause();
    });
    ASSERT_TRUE(wait_state(c.pid(), 'S'));
    kill(c.pid(), SIGSTOP);
    ASSERT_TRUE(wait_state(c.pid(), 'T'));
    for (int i = 0; i < 5; ++i) {
        auto snap = checkpoint_task(c.pid(), c.starttime());
        ASSERT_TRUE(snap) << snap.error().what;
        std::string whole = read_all(**snap, 1 << 20);
        MemorySource src(whole.data(), whole.size());
        auto img = decode_image(src);
        ASSERT_TRUE(img) << img.error().what;
        EXPECT_TRUE(img->header.flags & image::kHeaderTaskWasStopped);
        // Give a wrongly resumed task time to show it runs; it must stay stopped.
        usleep(20000);
        expect_untouched(c.pid(), 'T');
    }
    // And it still continues normally afterwards.
    kill(c.pid(), SIGCONT);
    EXPECT_TRUE(wait_state(c.pid(), 'S'));
}

TEST(CheckpointTest, WrongStartTimeIsEsrch) {
    Child c([] {
        for (;;) pause();
    });
    ASSERT_TRUE(wait_state(c.pid(), 'S'));
    auto snap = checkpoint_task(c.pid(), c.starttime() + 1);
    ASSERT_FALSE(snap);
    EXPECT_EQ(snap.error().code, ESRCH);
    expect_untouched(c.pid(), 'S');
}

TEST(CheckpointTest, MissingTaskIsEsrch) {
    pid_t pid;
    {
        Child c([] { _exit(0); });
        pid = c.pid();
        waitpid(pid, nullptr, 0);
    }
    auto snap = checkpoint_task(pid, 1);
    ASSERT_FALSE(snap);
    EXPECT_EQ(snap.error().code, ESRCH);
}

TEST(CheckpointTest, TracedTaskIsEbusyAndStaysTracedByItsTracer) {
    Child c([] {
        for (;;) pause();
    });
    ASSERT_TRUE(wait_state(c.pid(), 'S'));
    // Another process seizes it first.
    int ready[2];
    ASSERT_EQ(pipe(ready), 0);
    pid_t target = c.pid();
    Child tracer(
        [&] {
            if (ptrace(PTRACE_SEIZE, target, nullptr, nullptr) != 0) _exit(1);
            char x = 1;
            if (write(ready[1], &x, 1) != 1) _exit(1);
            for (;;) pause();
        },
        {ready[1]});
    char x;
    ASSERT_EQ(read(ready[0], &x, 1), 1);
    auto snap = checkpoint_task(c.pid(), c.starttime());
    ASSERT_FALSE(snap);
    EXPECT_EQ(snap.error().code, EBUSY);
    EXPECT_NE(snap.error().what.find("being traced by pid"), std::string::npos)
        << snap.error().what;
    EXPECT_EQ(read_tracer_pid(c.pid()).value(), tracer.pid());
    close(ready[0]);
    close(ready[1]);
}

TEST(CheckpointTest, UnprivilegedCallerIsEacces) {
    Child c([] {
        for (;;) pause();
    });
    ASSERT_TRUE(wait_state(c.pid(), 'S'));
    pid_t target = c.pid();
    uint64_t start = c.starttime();
    // Checkpoint from a process that dropped to nobody: no right to ptrace root's task.
    pid_t p = fork();
    if (p == 0) {
        if (setgid(65534) != 0 || setuid(65534) != 0) _exit(10);
        auto snap = checkpoint_task(target, start);
        _exit(snap ? 0 : snap.error().code == EACCES ? 1 : 2);
    }
    int st = 0;
    waitpid(p, &st, 0);
    ASSERT_TRUE(WIFEXITED(st));
    EXPECT_EQ(WEXITSTATUS(st), 1) << "1 = EACCES, 0 = succeeded, 2 = other error";
    expect_untouched(c.pid(), 'S');
}

TEST(CheckpointTest, UnsupportedFdIsEbusyAndTaskRuns) {
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    Child c(
        [] {
            for (;;) pause();
        },
        {p[0]});
    ASSERT_TRUE(wait_state(c.pid(), 'S'));
    auto snap = checkpoint_task(c.pid(), c.starttime());
    ASSERT_FALSE(snap);
    EXPECT_EQ(snap.error().code, EBUSY);
    EXPECT_NE(snap.error().what.find("fd " + std::to_string(p[0]) + ": pipe or FIFO"),
              std::string::npos)
        << snap.error().what;
    expect_untouched(c.pid(), 'S');
    close(p[0]);
    close(p[1]);
}

TEST(CheckpointTest, TaskExitingDuringCheckpointsGivesErrorsNotCrashes) {
    // Tasks that exit at varying moments; each checkpoint either succeeds or fails with ESRCH.
    int ok = 0, gone = 0;
    for (int i = 0; i < 40; ++i) {
        Child c([i] {
            // Busy for a varying short while, then exit.
            volatile uint64_t x = 0;
            for (long k = 0; k < (i % 10) * 200000; ++k) x = x + uint64_t(k);
            _exit(0);
        });
        uint64_t start = 0;
        if (auto st = read_task_stat(c.pid())) start = st->starttime;
        auto snap = checkpoint_task(c.pid(), start);
        if (snap) {
            ++ok;
        } else {
            EXPECT_TRUE(snap.error().code == ESRCH) << snap.error().what;
            ++gone;
        }
    }
    EXPECT_EQ(ok + gone, 40);
    // This process (the "daemon") still works: a fresh checkpoint succeeds.
    Child c([] {
        for (;;) pause();
    });
    ASSERT_TRUE(wait_state(c.pid(), 'S'));
    EXPECT_TRUE(checkpoint_task(c.pid(), c.starttime()));
}

TEST(CheckpointTest, ConcurrentCheckpointsOfOneTaskBothSucceed) {
    Child c([] {
        std::vector<char> mem(8 << 20, 1);
        for (;;) pause();
    });
    ASSERT_TRUE(wait_state(c.pid(), 'S'));
    uint64_t start = c.starttime();
    std::atomic<int> failures{0};
    std::vector<std::thread> ts;
    for (int i = 0; i < 4; ++i)
        ts.emplace_back([&] {
            for (int k = 0; k < 5; ++k) {
                auto s = checkpoint_task(c.pid(), start);
                if (!s) {
                    ADD_FAILURE() << s.error().what;
                    ++failures;
                }
            }
        });
    for (auto& t : ts) t.join();
    EXPECT_EQ(failures, 0);
    expect_untouched(c.pid(), 'S');
}

// Remote syscalls into a task blocked in read() on a pipe: afterwards the read
// must restart and return the data written later, not -EINTR or -ERESTARTSYS.
TEST(RemoteSyscallTest, ReadOnAPipeRestarts) {
    int in[2], out[2];
    ASSERT_EQ(pipe(in), 0);
    ASSERT_EQ(pipe(out), 0);
    Child c(
        [&] {
            char buf[16] = {};
            ssize_t n = read(in[0], buf, sizeof buf);
            char res[64];
            int len = snprintf(res, sizeof res, "%zd %d %s", n, n < 0 ? errno : 0, buf);
            if (write(out[1], res, size_t(len)) < 0) _exit(1);
            _exit(0);
        },
        {in[0], out[1]});
    ASSERT_TRUE(wait_state(c.pid(), 'S'));
    for (int round = 0; round < 3; ++round) {
        std::thread([&] {
            auto t = FrozenTask::freeze(c.pid());
            ASSERT_TRUE(t) << t.error().what;
            auto maps = parse_maps(read_proc(c.pid(), "maps").value()).value();
            uint64_t vs = 0, ve = 0;
            for (auto& m : maps)
                if (m.path == "[vdso]") vs = m.start, ve = m.end;
            auto rs = RemoteSyscall::prepare(**t, vs, ve);
            ASSERT_TRUE(rs) << rs.error().what;
            EXPECT_EQ((*rs)->call(SYS_getpid).value(), c.pid());
            EXPECT_EQ((*rs)->call(SYS_rt_sigaction, SIGTERM, 0, (*rs)->scratch(), 8).value(), 0);
            ASSERT_TRUE((*rs)->finish());
            ASSERT_TRUE((*t)->release());
        }).join();
        expect_untouched(c.pid(), 'S');
    }
    ASSERT_EQ(write(in[1], "hello", 5), 5);
    char res[64] = {};
    ASSERT_GT(read(out[0], res, sizeof res - 1), 0);
    EXPECT_STREQ(res, "5 0 hello");
}

TEST(RemoteSyscallTest, NanosleepRestartsAndEnds) {
    Child c([&] {
        timespec t0, t1, req{1, 0};
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int r = nanosleep(&req, nullptr);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (r != 0) _exit(10 + (errno & 0x7f));  // EINTR, or 512 (ERESTARTSYS) leaking out
        if (t1.tv_sec - t0.tv_sec < 1 && t1.tv_nsec >= t0.tv_nsec) _exit(2);  // ended early
        _exit(0);
    });
    ASSERT_TRUE(wait_state(c.pid(), 'S'));
    for (int round = 0; round < 3; ++round) {
        auto snap = checkpoint_task(c.pid(), c.starttime());
        ASSERT_TRUE(snap) << snap.error().what;
    }
    int st = c.wait_exit();  // returns once the sleep ends
    ASSERT_TRUE(WIFEXITED(st));
    EXPECT_EQ(WEXITSTATUS(st), 0) << "2: woke early; 10+errno: nanosleep failed";
}

}  // namespace
}  // namespace crfs
