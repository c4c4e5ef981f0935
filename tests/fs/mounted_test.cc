// The mounted tree, driven the way a user drives it: through the shell.
#include <gtest/gtest.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "common/io.h"
#include "common/procfs.h"
#include "tests/support/harness.h"

#ifndef WORKLOAD_DIR
#error "WORKLOAD_DIR must name the built workloads"
#endif
#ifndef NOCR_API_TEST
#error "NOCR_API_TEST must name the C API test program"
#endif

namespace crfs::test {
namespace {

constexpr const char* kNobody = "setpriv --reuid=65534 --regid=65534 --clear-groups ";

class Mounted : public ::testing::Test {
  protected:
    void SetUp() override { ASSERT_TRUE(crfs.ok()) << "crfsd did not mount:\n" << crfs.log(); }
    void TearDown() override {
        for (pid_t p : children) kill_and_reap(p);
        if (HasFailure()) std::cerr << "crfsd log:\n" << crfs.log();
    }
    ShellResult run(const std::string& cmd) { return sh(crfs.env() + cmd); }
    // A child with only /dev/null open: nothing in it is a reason.
    pid_t sleeper() {
        pid_t p = spawn({"sleep", "1000"});
        children.push_back(p);
        wait_until([&] {
            auto st = read_stat(p);
            return st && st->comm == "sleep";
        });
        return p;
    }
    std::string dir(pid_t p) const { return crfs.mnt() + "/" + std::to_string(p); }

    MountedCrfs crfs;
    std::vector<pid_t> children;
};

TEST_F(Mounted, LsListsProcessesAndSelf) {
    pid_t p = sleeper();
    auto r = run("ls $M");
    ASSERT_EQ(r.status, 0) << r.err;
    std::istringstream names(r.out);
    std::set<std::string> seen;
    for (std::string n; names >> n;) seen.insert(n);
    EXPECT_TRUE(seen.count("self"));
    EXPECT_TRUE(seen.count("1"));
    EXPECT_TRUE(seen.count(std::to_string(p)));
    EXPECT_TRUE(seen.count(std::to_string(::getpid())));
    // Threads are not listed, like /proc.
    auto threads = run("ls /proc/" + std::to_string(crfs.daemon_pid()) + "/task");
    for (std::istringstream t(threads.out); t.good();) {
        std::string tid;
        t >> tid;
        if (!tid.empty() && tid != std::to_string(crfs.daemon_pid())) {
            EXPECT_FALSE(seen.count(tid)) << "thread " << tid << " listed";
        }
    }
    auto l = run("ls -l $M/" + std::to_string(p));
    ASSERT_EQ(l.status, 0) << l.err;
    EXPECT_NE(l.out.find("-rw-r--r-- 1 root root 0"), std::string::npos) << l.out;
    EXPECT_NE(l.out.find(" nocr\n"), std::string::npos) << l.out;
    EXPECT_NE(l.out.find("-r-------- 1 root root 0"), std::string::npos) << l.out;
    EXPECT_NE(l.out.find(" reason\n"), std::string::npos) << l.out;
}

TEST_F(Mounted, SelfIsTheCallersProcess) {
    auto r = run("echo $$; exec readlink $M/self");
    ASSERT_EQ(r.status, 0) << r.err;
    std::istringstream lines(r.out);
    std::string shell_pid, link;
    lines >> shell_pid >> link;
    EXPECT_EQ(shell_pid, link);
}

TEST_F(Mounted, SelfFromAThreadIsItsProcess) {
    std::string link;
    std::thread t([&] {
        char buf[64] = {};
        ssize_t n = ::readlink((crfs.mnt() + "/self").c_str(), buf, sizeof buf - 1);
        if (n > 0) link.assign(buf, static_cast<size_t>(n));
    });
    t.join();
    EXPECT_EQ(link, std::to_string(::getpid()));
}

TEST_F(Mounted, PidDirectoriesAreOwnedLikeProc) {
    auto r = run(std::string(kNobody) + "sh -c 'exec stat -L -c \"%u %g\" $M/self'");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "65534 65534\n");
}

TEST_F(Mounted, CleanTaskHasEmptyReasonAndCanBeMarkedAndCleared) {
    pid_t p = sleeper();
    std::string d = dir(p);
    auto r = run("cat " + d + "/reason");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(run("cat " + d + "/nocr").out, "0\n");

    auto w = run("echo \"CR: PI futexes not supported yet.\" > " + d + "/nocr");
    ASSERT_EQ(w.status, 0) << w.err;
    EXPECT_EQ(run("cat " + d + "/nocr").out, "1\n");
    EXPECT_EQ(run("cat " + d + "/reason").out, "nocr: CR: PI futexes not supported yet.\n");

    ASSERT_EQ(run("echo 1 > " + d + "/nocr").status, 0);
    EXPECT_EQ(run("cat " + d + "/reason").out, "nocr: CR: marked uncheckpointable\n");

    ASSERT_EQ(run("echo 0 > " + d + "/nocr").status, 0);
    EXPECT_EQ(run("cat " + d + "/nocr").out, "0\n");
    EXPECT_EQ(run("cat " + d + "/reason").out, "");
}

TEST_F(Mounted, TaskMarksItselfThroughSelf) {
    auto r = run("echo 'CR: marking myself' > $M/self/nocr && cat $M/$$/nocr $M/$$/reason");
    ASSERT_EQ(r.status, 0) << r.err;
    // The shell's own stdout is a pipe to this test: that is a reason too.
    EXPECT_TRUE(r.out.starts_with("1\nnocr: CR: marking myself\n")) << r.out;
    EXPECT_NE(r.out.find("\nfd 1: pipe"), std::string::npos) << r.out;
}

TEST_F(Mounted, BadInputIsEinvalAndChangesNothing) {
    pid_t p = sleeper();
    std::string nocr = dir(p) + "/nocr";
    ASSERT_EQ(run("echo 'CR: keep me' > " + nocr).status, 0);
    const char* bad[] = {
        "/bin/echo > ",                                        // empty after the newline
        "head -c 2048 /dev/zero | tr '\\0' a | dd bs=4k of=",  // 2 KiB in one write
        "/usr/bin/printf 'bin\\000\\377ary' > ",               // binary
        "/usr/bin/printf '\\001' > ",                          // control character
    };
    for (const char* cmd : bad) {
        auto r = run(std::string(cmd) + nocr);
        EXPECT_NE(r.status, 0) << cmd;
        EXPECT_NE(r.err.find("Invalid argument"), std::string::npos) << cmd << ": " << r.err;
        EXPECT_EQ(run("cat " + dir(p) + "/reason").out, "nocr: CR: keep me\n") << cmd;
    }
}

TEST_F(Mounted, ReadOnlyAndUnknownEntries) {
    pid_t p = sleeper();
    auto r = run("echo x > " + dir(p) + "/reason");
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("Permission denied"), std::string::npos) << r.err;
    auto n = run("cat " + dir(p) + "/nosuch $M/notapid/nocr $M/0/nocr");
    EXPECT_NE(n.status, 0);
    EXPECT_EQ(n.out, "");
    auto chmod = run("chmod 777 " + dir(p) + "/nocr");
    EXPECT_NE(chmod.status, 0);
}

TEST_F(Mounted, ReversibleDetectedReasonForTcpSocket) {
    TempDir tmp;
    std::string state = tmp.path() + "/state";
    pid_t p = spawn({WORKLOAD_DIR "/tcp_toggle", state});
    children.push_back(p);
    ASSERT_TRUE(wait_until([&] { return read_file(state).value_or("") == "open\n"; }));
    auto r = run("cat " + dir(p) + "/reason");
    ASSERT_EQ(r.status, 0) << r.err;
    // Listening and established sockets are captured (docs/network.md); half-closed ones not.
    EXPECT_NE(r.out.find(" in state FIN_WAIT"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(" in state CLOSE_WAIT not supported yet\n"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.substr(0, 5), "fd 3:") << r.out;
    ASSERT_EQ(::kill(p, SIGUSR1), 0);
    ASSERT_TRUE(wait_until([&] { return read_file(state).value_or("") == "closed\n"; }));
    EXPECT_EQ(run("cat " + dir(p) + "/reason").out, "");
}

TEST_F(Mounted, DetectsPipesThreadsAndTracers) {
    pid_t p = sleeper();
    ASSERT_EQ(::ptrace(PTRACE_SEIZE, p, 0, 0), 0) << std::strerror(errno);
    auto traced = run("cat " + dir(p) + "/reason");
    // Detaching needs a stopped tracee.
    ASSERT_EQ(::ptrace(PTRACE_INTERRUPT, p, 0, 0), 0);
    int st;
    ASSERT_EQ(::waitpid(p, &st, __WALL), p);
    ASSERT_EQ(::ptrace(PTRACE_DETACH, p, 0, 0), 0) << std::strerror(errno);
    EXPECT_EQ(traced.out, "task: being traced by pid " + std::to_string(::getpid()) + "\n");
    EXPECT_EQ(run("cat " + dir(p) + "/reason").out, "");

    // A shell with a pipe on stdout, read by another process: "fd 1: pipe:[N] (write end) is
    // also open in pid P (sh); a pipe shared with another process not supported yet".
    // The reader waits (bounded) for the left side to be sleep: until its
    // exec it is the shell's fork (seen in CI: no pid, "cat $M//reason").
    auto r =
        run("sleep 1000 | (for i in $(seq 1000); do s=$(pgrep -n -x -P $$ sleep) && break; "
            "sleep 0.01; done; cat $M/$s/reason; pkill -P $$ sleep)");
    EXPECT_NE(r.out.find("fd 1: pipe:["), std::string::npos) << r.out << r.err;
    EXPECT_NE(r.out.find("a pipe shared with another process not supported yet"), std::string::npos)
        << r.out << r.err;
    // The daemon has threads, no longer a reason (issue 10), and /dev/fuse, one.
    auto d = run("cat $M/" + std::to_string(crfs.daemon_pid()) + "/reason");
    EXPECT_EQ(d.out.find("threads"), std::string::npos) << d.out;
    EXPECT_NE(d.out.find("character device /dev/fuse"), std::string::npos) << d.out;
}

TEST_F(Mounted, GoneTaskGivesEnoent) {
    pid_t p = sleeper();
    std::string d = dir(p);
    ASSERT_EQ(run("cat " + d + "/nocr").status, 0);
    kill_and_reap(p);
    auto r = run("cat " + d + "/reason");
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("No such file or directory"), std::string::npos) << r.err;
}

TEST_F(Mounted, ExitedTaskVanishesFromTheTree) {
    pid_t p = sleeper();
    std::string d = dir(p);
    // Looked up: the kernel now caches the name (for seconds).
    ASSERT_EQ(run("ls " + d + " && cat " + d + "/nocr").status, 0);
    kill_and_reap(p);
    // The daemon invalidates the name on exit (ReusedPidDoesNotInheritAMark
    // fails without that); here: every path to it fails.
    EXPECT_TRUE(wait_until([&] { return run("ls -d " + d).status != 0; }, std::chrono::seconds(5)));
    auto r = run("ls " + d + "; cat " + d + "/nocr");
    EXPECT_NE(r.err.find("No such file or directory"), std::string::npos) << r.err;
    auto listed = run("ls $M | grep -cx " + std::to_string(p));
    EXPECT_EQ(listed.out, "0\n");
}

TEST_F(Mounted, WriteAfterTaskExitIsEsrchNotAMarkOnItsSuccessor) {
    pid_t p = sleeper();
    // Keep nocr open across the task's exit (fd 3 of the shell), then write.
    std::string ps = std::to_string(p);
    auto r =
        run("exec 3>" + dir(p) + "/nocr; kill -9 " + ps + "; until [ \"$(cut -d' ' -f3 /proc/" +
            ps + "/stat)\" = Z ]; do sleep 0.01; done; /bin/echo 'CR: late' >&3");
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("No such process"), std::string::npos) << r.err;
}

TEST_F(Mounted, CApiMarksItselfAndClears) {
    TempDir tmp;
    // In a subshell that execs it: dash makes a simple command's redirections
    // in the shell itself, which would then hold the test's stdout and stderr
    // too, a reason (state/shared_desc.h).
    auto r = run("(CRFS_ROOT=$M exec " NOCR_API_TEST " </dev/null >" + tmp.path() + "/out 2>" +
                 tmp.path() + "/err); rc=$?; cat " + tmp.path() + "/err; exit $rc");
    EXPECT_EQ(r.status, 0) << r.out << r.err;
}

TEST_F(Mounted, UnprivilegedUserIsDeniedOthersButMayMarkItself) {
    pid_t p = sleeper();  // root's
    std::string d = dir(p);
    auto w = run(std::string(kNobody) + "sh -c 'echo \"CR: x\" > " + d + "/nocr'");
    EXPECT_NE(w.status, 0);
    EXPECT_NE(w.err.find("Permission denied"), std::string::npos) << w.err;
    auto rd = run(std::string(kNobody) + "cat " + d + "/reason");
    EXPECT_NE(rd.status, 0);
    EXPECT_NE(rd.err.find("Permission denied"), std::string::npos) << rd.err;
    // nocr is readable by everyone, and the failed write changed nothing.
    EXPECT_EQ(run(std::string(kNobody) + "cat " + d + "/nocr").out, "0\n");
    // Its own task, directly and as a proxy for another of its processes.
    auto own = run(std::string(kNobody) +
                   "sh -c 'echo \"CR: mine\" > $M/self/nocr && cat $M/$$/nocr || exit 1\n"
                   "sleep 100 </dev/null >/dev/null 2>&1 &\n"
                   "until [ \"$(cat /proc/$!/comm)\" = sleep ]; do sleep 0.01; done\n"
                   "echo \"CR: proxy\" > $M/$!/nocr && cat $M/$!/reason; kill $!'");
    EXPECT_EQ(own.status, 0) << own.err;
    EXPECT_EQ(own.out, "1\nnocr: CR: proxy\n");
}

TEST_F(Mounted, RootCanMarkAnyUsersTask) {
    auto r = run(std::string(kNobody) +
                 "sleep 100 </dev/null >/dev/null 2>&1 & p=$!; "
                 "until [ \"$(cat /proc/$p/comm)\" = sleep ]; do sleep 0.01; done; "
                 "echo 'CR: root says' > $M/$p/nocr && cat $M/$p/reason; kill $p");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "nocr: CR: root says\n");
}

// Makes a child with exactly pid `pid` (clone3 set_tid; needs root).
pid_t fork_with_pid(pid_t pid) {
    pid_t tids[1] = {pid};
    clone_args args{};
    args.exit_signal = SIGCHLD;
    args.set_tid = reinterpret_cast<uint64_t>(tids);
    args.set_tid_size = 1;
    long r = ::syscall(SYS_clone3, &args, sizeof args);
    if (r == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        ::execlp("sleep", "sleep", "1000", nullptr);
        ::_exit(127);
    }
    return static_cast<pid_t>(r);
}

TEST_F(Mounted, ReusedPidDoesNotInheritAMark) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root for clone3 set_tid";
    pid_t p = sleeper();
    ASSERT_EQ(run("echo 'CR: old task' > " + dir(p) + "/nocr").status, 0);
    kill_and_reap(p);
    children.clear();
    // The daemon forgets the name when its exit watcher sees the exit; until
    // then the kernel may still answer from its entry cache (a few ms). Wait
    // for that state, then reuse the pid.
    ASSERT_TRUE(
        wait_until([&] { return run("ls -d " + dir(p)).status != 0; }, std::chrono::seconds(5)));
    pid_t again = fork_with_pid(p);
    ASSERT_EQ(again, p) << "clone3 set_tid: " << std::strerror(errno);
    children.push_back(again);
    EXPECT_EQ(run("cat " + dir(p) + "/nocr").out, "0\n");
    // And the old mark left the state file when its task exited.
    EXPECT_TRUE(wait_until(
        [&] { return read_file(crfs.state_dir() + "/marks").value_or("?") == "crfs-marks 1\n"; }));
}

TEST_F(Mounted, MarksSurviveDaemonRestart) {
    pid_t p = sleeper();
    ASSERT_EQ(run("echo 'CR: across restarts' > " + dir(p) + "/nocr").status, 0);
    ASSERT_TRUE(crfs.restart()) << crfs.log();
    EXPECT_EQ(run("cat " + dir(p) + "/nocr").out, "1\n");
    EXPECT_EQ(run("cat " + dir(p) + "/reason").out, "nocr: CR: across restarts\n");
}

TEST_F(Mounted, SecondDaemonOnBusyMountPointFailsClearly) {
    auto r =
        sh(std::string(CRFSD_PATH) + " -f -o state_dir=" + crfs.state_dir() + "2 " + crfs.mnt(),
           std::chrono::seconds(10));
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("is already a mount point"), std::string::npos) << r.err;
    TempDir other;
    auto s =
        sh(std::string(CRFSD_PATH) + " -f -o state_dir=" + crfs.state_dir() + " " + other.path(),
           std::chrono::seconds(10));
    EXPECT_EQ(s.status, 1);
    EXPECT_NE(s.err.find("is in use by another crfsd"), std::string::npos) << s.err;
    // The first daemon still serves.
    EXPECT_EQ(run("cat $M/self/nocr").out, "0\n");
}

TEST_F(Mounted, SigtermUnmounts) {
    pid_t d = crfs.daemon_pid();
    ASSERT_EQ(::kill(d, SIGTERM), 0);
    EXPECT_TRUE(wait_until([&] { return !is_mounted(crfs.mnt()); }));
}

}  // namespace
}  // namespace crfs::test
