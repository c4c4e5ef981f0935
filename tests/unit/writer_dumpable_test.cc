// Stage 1's switch to the writer's credentials (restorer/writer.h
// child_become_writer) leaves the process not dumpable whatever
// fs.suid_dumpable says: until its blob unmaps it, the process holds a copy
// of the daemon's memory, which the writer must never read through ptrace or
// /proc/PID/mem. The kernel alone sets dumpable to fs.suid_dumpable on a
// credential change (2 here, the value systemd-coredump sets: SUID_DUMP_ROOT).
#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "restorer/writer.h"

namespace crfs {
namespace {

constexpr const char* kSysctl = "/proc/sys/fs/suid_dumpable";

// fs.suid_dumpable for the test's fork only; the old value back at once.
class SuidDumpable {
  public:
    explicit SuidDumpable(const char* value) {
        std::ifstream(kSysctl) >> old_;
        std::ofstream(kSysctl) << value;
    }
    ~SuidDumpable() {
        if (!old_.empty()) std::ofstream(kSysctl) << old_;
    }
    SuidDumpable(const SuidDumpable&) = delete;
    SuidDumpable& operator=(const SuidDumpable&) = delete;

  private:
    std::string old_;
};

TEST(WriterCredentials, AProcessTakingTheWritersCredentialsIsNotDumpable) {
    if (geteuid() != 0) GTEST_SKIP() << "switching credentials needs root";
    int status_pipe[2];
    ASSERT_EQ(pipe(status_pipe), 0);
    pid_t pid;
    {
        SuidDumpable suidsafe("2");
        pid = fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            WriterPlan p;
            p.as_writer = true;
            p.uid = 65534;
            p.gid = 65534;
            child_become_writer(p, status_pipe[1]);  // exits 1 on a failure
            _exit(10 + prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
        }
        int st = 0;
        ASSERT_EQ(waitpid(pid, &st, 0), pid);
        ASSERT_TRUE(WIFEXITED(st));
        EXPECT_EQ(WEXITSTATUS(st), 10) << "PR_GET_DUMPABLE after the switch, plus 10";
    }
    close(status_pipe[0]);
    close(status_pipe[1]);
}

}  // namespace
}  // namespace crfs
