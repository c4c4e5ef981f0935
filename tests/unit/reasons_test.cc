#include "fs/reasons.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

namespace crfs::fs {
namespace {

std::optional<std::string> no_sockets(uint64_t) {
    return std::nullopt;
}

TEST(FdReason, SupportedKindsHaveNone) {
    EXPECT_FALSE(fd_reason("/etc/passwd", S_IFREG | 0644, no_sockets));
    EXPECT_FALSE(fd_reason("/dev/null", S_IFCHR | 0666, no_sockets));
    EXPECT_FALSE(fd_reason("/dev/pts/3", S_IFCHR | 0620, no_sockets));
    EXPECT_FALSE(fd_reason("/tmp/x (deleted)", S_IFREG | 0600, no_sockets));
}

TEST(FdReason, EachUnsupportedKindIsNamed) {
    auto sock = [](uint64_t ino) -> std::optional<std::string> {
        if (ino == 42) return "TCP socket in state ESTABLISHED";
        return std::nullopt;
    };
    EXPECT_EQ(fd_reason("socket:[42]", S_IFSOCK, sock),
              "TCP socket in state ESTABLISHED not supported yet");
    EXPECT_EQ(fd_reason("socket:[43]", S_IFSOCK, sock),
              "socket (family unknown) not supported yet");
    EXPECT_EQ(fd_reason("pipe:[99]", S_IFIFO, sock), "pipe not supported yet");
    EXPECT_EQ(fd_reason("anon_inode:[eventfd]", 0, sock), "eventfd not supported yet");
    EXPECT_EQ(fd_reason("anon_inode:[eventpoll]", 0, sock), "epoll not supported yet");
    EXPECT_EQ(fd_reason("anon_inode:inotify", 0, sock), "inotify not supported yet");
    EXPECT_EQ(fd_reason("anon_inode:[something]", 0, sock),
              "anonymous inode [something] not supported yet");
    EXPECT_EQ(fd_reason("/home", S_IFDIR | 0755, sock), "directory /home not supported yet");
    EXPECT_EQ(fd_reason("/run/fifo", S_IFIFO | 0600, sock), "FIFO /run/fifo not supported yet");
    EXPECT_EQ(fd_reason("/dev/sda", S_IFBLK | 0600, sock),
              "block device /dev/sda not supported yet");
}

TEST(TaskReasons, ZombieKthreadTracedThreads) {
    ProcStat st;
    ProcStatus status;
    st.state = 'S';
    status.threads = 1;
    EXPECT_TRUE(task_reasons(st, status, 0, 100).empty());
    st.state = 'Z';
    st.flags = kPfKthread;
    status.tracer_pid = 4410;
    status.threads = 3;
    auto r = task_reasons(st, status, 4410, 100);
    ASSERT_EQ(r.size(), 4u);
    EXPECT_EQ(r[0], "task: kernel thread");
    EXPECT_EQ(r[1], "task: zombie (exited, not yet reaped by its parent)");
    EXPECT_EQ(r[2], "task: being traced by pid 4410");
    EXPECT_EQ(r[3], "task: 3 threads; multi-threaded processes not supported yet");
    // The daemon's own ptrace (a checkpoint in progress, from any of its
    // threads) is not a reason.
    st = ProcStat{};
    status.threads = 1;
    status.tracer_pid = 4412;  // a worker thread of process 4410
    EXPECT_TRUE(task_reasons(st, status, 4410, 4410).empty());
}

TEST(DetectReasons, ThisProcessSeesItsOwnEventfd) {
    int fd = ::eventfd(0, EFD_CLOEXEC);
    ASSERT_GE(fd, 0);
    auto r = detect_reasons(::getpid(), 0);
    ::close(fd);
    ASSERT_TRUE(r) << r.error().what;
    std::string want = "fd " + std::to_string(fd) + ": eventfd not supported yet";
    EXPECT_NE(std::find(r->begin(), r->end(), want), r->end());
    auto after = detect_reasons(::getpid(), 0);
    ASSERT_TRUE(after);
    EXPECT_EQ(std::find(after->begin(), after->end(), want), after->end());
}

TEST(DetectReasons, GoneTaskIsEsrch) {
    auto r = detect_reasons(4194303, 0);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ESRCH);
}

}  // namespace
}  // namespace crfs::fs
