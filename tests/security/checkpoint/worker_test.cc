// The worker that acts as the caller (checkpoint/worker.h, checkpoint/creds.h):
// credentials survive the trip through argv, the worker holds exactly them,
// and the kernel's answer is what the caller gets.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "checkpoint/creds.h"
#include "checkpoint/task_attrs.h"
#include "checkpoint/worker.h"

namespace crfs {
namespace {

Creds nobody() {
    Creds c;
    for (int i = 0; i < 4; ++i) c.uid[i] = 65534, c.gid[i] = 65534;
    c.groups = {65534, 100};
    return c;
}

Creds me() {
    auto st = read_task_status(getpid());
    Creds c;
    for (int i = 0; i < 4; ++i) c.uid[i] = st->uid[i], c.gid[i] = st->gid[i];
    c.groups.assign(st->groups.begin(), st->groups.end());
    c.cap_eff = st->cap_eff;
    c.cap_prm = st->cap_prm;
    return c;
}

// A child that sleeps until killed; reaped on destruction.
struct Sleeper {
    pid_t pid = fork();
    Sleeper() {
        if (pid == 0) {
            // Nothing the checkpoint would refuse: no pipes, no sockets.
            int null = open("/dev/null", O_RDWR);
            for (int fd = 0; fd < 3; ++fd) dup2(null, fd);
            close_range(3, ~0u, 0);
            for (;;) pause();
        }
        // Wait (bounded) until the child sits in pause(): before that it may
        // still hold the test's inherited fds, which a checkpoint refuses.
        for (int i = 0; i < 10000; ++i) {
            std::ifstream f("/proc/" + std::to_string(pid) + "/syscall");
            std::string nr;
            if (f >> nr && nr == std::to_string(SYS_pause)) break;
            usleep(1000);
        }
    }
    ~Sleeper() {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
    }
    uint64_t starttime() const { return read_task_stat(pid)->starttime; }
};

TEST(Creds, RoundTripThroughOneWord) {
    Creds c = nobody();
    c.uid[1] = 1000;
    c.gid[3] = 7;
    c.cap_eff = 0x2000;
    c.cap_prm = 0x3000;
    auto back = decode_creds(encode_creds(c));
    ASSERT_TRUE(back) << back.error().what;
    EXPECT_EQ(encode_creds(*back), encode_creds(c));
    EXPECT_EQ(back->groups, c.groups);
    EXPECT_EQ(back->cap_prm, 0x3000u);
    Creds none;
    ASSERT_TRUE(decode_creds(encode_creds(none)));
    EXPECT_TRUE(decode_creds(encode_creds(none))->groups.empty());
}

TEST(Creds, MalformedIsEinval) {
    for (const char* bad : {"", "1,2,3:1,2,3,4::0:0", "1,2,3,4:1,2,3,4::0", "a,2,3,4:1,2,3,4::0:0",
                            "1,2,3,4:1,2,3,4:1,,2:0:0", "1,2,3,4:1,2,3,4::0:0:0"}) {
        auto r = decode_creds(bad);
        ASSERT_FALSE(r) << bad;
        EXPECT_EQ(r.error().code, EINVAL) << bad;
    }
}

TEST(Creds, AssumedExactlyInAChild) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    pid_t p = fork();
    if (p == 0) {
        Creds c = nobody();
        c.uid[0] = 65533;  // real differs from effective: kept apart
        if (!assume_creds(c)) _exit(1);
        auto st = read_task_status(getpid());
        bool ok = st && st->uid[0] == 65533 && st->uid[1] == 65534 && st->uid[3] == 65534 &&
                  st->gid[3] == 65534 && st->groups.size() == 2 && st->cap_eff == 0 &&
                  st->cap_prm == 0;
        _exit(ok ? 0 : 2);
    }
    int st = 0;
    ASSERT_EQ(waitpid(p, &st, 0), p);
    ASSERT_TRUE(WIFEXITED(st));
    EXPECT_EQ(WEXITSTATUS(st), 0) << "1: assume failed, 2: status differs";
}

TEST(Worker, TheKernelDecides) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    set_worker_exe(CRFS_CKPT);
    Sleeper s;
    // Root (our own credentials) may; nobody may not ptrace root's task.
    auto ok = run_worker({WorkerMode::kAccess, s.pid, s.starttime(), getpid(), me()});
    EXPECT_TRUE(ok) << ok.error().what;
    auto no = run_worker({WorkerMode::kAccess, s.pid, s.starttime(), getpid(), nobody()});
    ASSERT_FALSE(no);
    EXPECT_EQ(no.error().code, EACCES) << no.error().what;
    auto img = run_worker({WorkerMode::kImage, s.pid, s.starttime(), getpid(), nobody()});
    ASSERT_FALSE(img);
    EXPECT_EQ(img.error().code, EACCES) << img.error().what;
    // A wrong start time: the pid does not name that task.
    auto gone = run_worker({WorkerMode::kAccess, s.pid, s.starttime() + 1, getpid(), me()});
    ASSERT_FALSE(gone);
    EXPECT_EQ(gone.error().code, ESRCH) << gone.error().what;
}

TEST(Worker, ImageComesBackThroughThePipe) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    set_worker_exe(CRFS_CKPT);
    Sleeper s;
    auto r = run_worker({WorkerMode::kImage, s.pid, s.starttime(), getpid(), me()});
    ASSERT_TRUE(r) << r.error().what;
    ASSERT_TRUE(r->image);
    char magic[8];
    ASSERT_EQ(r->image->read(0, magic, 8).value(), 8u);
    EXPECT_EQ(std::string(magic, 7), "CRFSIMG");
    // The size is known at the end of the stream (all-zero pages are dropped as they go).
    std::vector<char> buf(1 << 20);
    uint64_t off = 0;
    for (size_t n; (n = r->image->read(off, buf.data(), buf.size()).value()) > 0;) off += n;
    EXPECT_GT(off, 8u);
    EXPECT_EQ(r->image->size(), off);
    EXPECT_EQ(read_tracer_pid(s.pid).value(), 0);
}

// The spare worker (checkpoint/worker.h "a worker kept ready"): spares kept
// for the test's length only, none left after it.
class WorkerSpare : public ::testing::Test {
  protected:
    void SetUp() override {
        if (geteuid() != 0) GTEST_SKIP() << "needs root";
        set_worker_exe(CRFS_CKPT);
        keep_worker_spare(true);
    }
    void TearDown() override {
        keep_worker_spare(false);
        for (pid_t p : seen) EXPECT_FALSE(alive(p)) << "spare " << p << " left after the test";
    }
    // The ready spare's pid (bounded wait: it execs and faults in 8 MiB).
    pid_t ready() {
        pid_t p = worker_spare_ready(std::chrono::seconds(20));
        if (p > 0) seen.push_back(p);
        return p;
    }
    static bool alive(pid_t p) { return kill(p, 0) == 0; }  // a zombie too: not reaped
    // Reaped within 10 s (a live snapshot's worker is reaped by a thread of
    // the image's once it let the task go).
    static bool reaped(pid_t p) {
        for (int i = 0; i < 10000 && alive(p); ++i) usleep(1000);
        return !alive(p);
    }
    static std::string comm(pid_t p) {
        std::ifstream f("/proc/" + std::to_string(p) + "/comm");
        std::string c;
        f >> c;
        return c;
    }
    std::vector<pid_t> seen;
};

TEST_F(WorkerSpare, TakesARequestAsTheCallerAndTheNextIsSpawnedAfterIt) {
    Sleeper s;
    pid_t first = ready();
    ASSERT_GT(first, 0) << "no spare ready within 20 s";
    EXPECT_EQ(comm(first), "crfs-ckpt-spare");
    uint64_t handed = worker_spares_handed();
    // Handed the request, it is nobody exactly: the kernel refuses nobody root's task.
    auto no = run_worker({WorkerMode::kAccess, s.pid, s.starttime(), getpid(), nobody()});
    ASSERT_FALSE(no);
    EXPECT_EQ(no.error().code, EACCES) << no.error().what;
    EXPECT_EQ(worker_spares_handed(), handed + 1);
    EXPECT_FALSE(alive(first)) << "the spare that took the request was reaped with it";
    // The next one, spawned once that worker was reaped, streams an image:
    // every fd the request gave it at its number (the image's pipes, the
    // status, the fingerprints), and it is the request's worker meanwhile.
    pid_t second = ready();
    ASSERT_GT(second, 0);
    EXPECT_NE(second, first);
    auto r = run_worker({WorkerMode::kImage, s.pid, s.starttime(), getpid(), me()});
    ASSERT_TRUE(r) << r.error().what;
    EXPECT_EQ(worker_spares_handed(), handed + 2);
    char magic[8];
    ASSERT_EQ(r->image->read(0, magic, 8).value(), 8u);
    EXPECT_EQ(std::string(magic, 7), "CRFSIMG");
    EXPECT_EQ(comm(second), "crfs-ckpt");
    std::vector<char> buf(1 << 20);
    uint64_t off = 0;
    for (size_t n; (n = r->image->read(off, buf.data(), buf.size()).value()) > 0;) off += n;
    EXPECT_EQ(r->image->size(), off);
    r->image.reset();
    EXPECT_TRUE(reaped(second));
    EXPECT_EQ(read_tracer_pid(s.pid).value(), 0);
    EXPECT_GT(ready(), 0) << "a third spare after the image's worker was reaped";
}

TEST_F(WorkerSpare, OneSpawnedUnderAnotherEnvironmentIsNotUsed) {
    Sleeper s;
    pid_t old = ready();
    ASSERT_GT(old, 0);
    uint64_t handed = worker_spares_handed();
    ASSERT_EQ(setenv("CRFS_TEST_SPARE_ENV", "1", 1), 0);
    auto ok = run_worker({WorkerMode::kAccess, s.pid, s.starttime(), getpid(), me()});
    EXPECT_TRUE(ok) << ok.error().what;
    EXPECT_EQ(worker_spares_handed(), handed) << "a worker must get the environment of now";
    EXPECT_FALSE(alive(old)) << "the stale spare was killed and reaped";
    // The next one (spawned once that worker was reaped) reads the
    // environment as it is: changed only once it is ready (setenv is not
    // safe while another thread reads it).
    EXPECT_GT(ready(), 0);
    unsetenv("CRFS_TEST_SPARE_ENV");
}

// A stream's read runs on the reader's CPU (checkpoint/piped_image.h serve),
// and a worker reaped from there spawns the next spare: it must get crfsd's
// CPUs, not that thread's one (a worker on the reader's CPU streams slowly).
TEST_F(WorkerSpare, GetsTheDaemonsCpusNotItsSpawningThreads) {
    cpu_set_t all;
    ASSERT_EQ(sched_getaffinity(0, sizeof all, &all), 0);
    if (CPU_COUNT(&all) < 2) GTEST_SKIP() << "needs two CPUs";
    Sleeper s;
    ASSERT_GT(ready(), 0);
    cpu_set_t one;
    CPU_ZERO(&one);
    for (int c = 0; c < CPU_SETSIZE; ++c)
        if (CPU_ISSET(c, &all)) {
            CPU_SET(c, &one);
            break;
        }
    ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);  // this thread, as serve does
    auto ok = run_worker({WorkerMode::kAccess, s.pid, s.starttime(), getpid(), me()});
    ASSERT_EQ(sched_setaffinity(0, sizeof all, &all), 0);
    ASSERT_TRUE(ok) << ok.error().what;
    pid_t next = ready();  // spawned once that worker was reaped, from the pinned thread
    ASSERT_GT(next, 0);
    cpu_set_t got;
    ASSERT_EQ(sched_getaffinity(next, sizeof got, &got), 0);
    EXPECT_TRUE(CPU_EQUAL(&got, &all)) << CPU_COUNT(&got) << " CPUs of " << CPU_COUNT(&all);
}

TEST_F(WorkerSpare, NoneIsLeftWhenNotKept) {
    pid_t p = ready();
    ASSERT_GT(p, 0);
    keep_worker_spare(false);
    EXPECT_FALSE(alive(p));
    EXPECT_EQ(worker_spare_ready(std::chrono::milliseconds(0)), 0);
}

}  // namespace
}  // namespace crfs
