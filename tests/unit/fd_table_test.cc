// perf: presize_fd_table grows the fd table while a process has one thread
// (common/io.h). Each case runs in a forked child, whose table the kernel
// sizes to the few fds it inherits; FDSize in /proc/self/status is the
// table's size.
#include <dirent.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "common/io.h"

namespace {

long fd_size() {
    std::ifstream in("/proc/self/status");
    for (std::string line; std::getline(in, line);)
        if (line.rfind("FDSize:", 0) == 0) return std::strtol(line.c_str() + 7, nullptr, 10);
    return -1;
}

int open_fds() {
    DIR* d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    while (readdir(d)) ++n;
    closedir(d);
    return n;
}

// The child's exit status: 0 passes; 100 means the table was already big.
template <class F>
int in_child(F f) {
    pid_t pid = fork();
    if (pid == 0) _exit(fd_size() >= 512 ? 100 : f());
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st)) return -1;
    return WEXITSTATUS(st);
}

TEST(FdTable, GrowsToHoldTheFdsAskedAndLeavesNoFdOpen) {
    EXPECT_EQ(0, in_child([] {
                  unsetenv("CRFS_FD_TABLE_COLD");
                  int before = open_fds();
                  crfs::presize_fd_table(512);
                  if (fd_size() < 512) return 1;
                  return open_fds() == before ? 0 : 2;
              }));
}

TEST(FdTable, StaysWithinTheSoftLimit) {
    EXPECT_EQ(0, in_child([] {
                  unsetenv("CRFS_FD_TABLE_COLD");
                  rlimit r{};
                  if (getrlimit(RLIMIT_NOFILE, &r) != 0) return 3;
                  r.rlim_cur = 200;
                  if (setrlimit(RLIMIT_NOFILE, &r) != 0) return 4;
                  crfs::presize_fd_table(1024);
                  long n = fd_size();
                  return n >= 200 && n < 1024 ? 0 : 1;
              }));
}

TEST(FdTable, TheOldPathLeavesItAlone) {
    EXPECT_EQ(0, in_child([] {
                  setenv("CRFS_FD_TABLE_COLD", "1", 1);
                  crfs::presize_fd_table(512);
                  return fd_size() < 512 ? 0 : 1;
              }));
}

}  // namespace
