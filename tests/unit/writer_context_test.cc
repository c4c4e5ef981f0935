// The writer's side of a restore (restorer/writer.h WriterContext, and the
// writer's network namespace, restorer/netns.h) is read once for a tree: the
// later processes of the same restore are given the first one's, with their
// own image's credentials.
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <future>
#include <thread>

#include "restorer/netns.h"
#include "restorer/writer.h"

namespace crfs {
namespace {

DecodedImage image_of(uint32_t uid, uint32_t gid, std::vector<uint32_t> groups) {
    DecodedImage img;
    img.creds.uid[1] = uid;
    img.creds.gid[1] = gid;
    img.groups = std::move(groups);
    return img;
}

TEST(WriterContext, ReadOnceForATreeEachProcessWithItsOwnCredentials) {
    // A writer whose soft RLIMIT_NOFILE is its own: the context says so.
    int ready[2];
    ASSERT_EQ(pipe(ready), 0);
    pid_t writer = fork();
    ASSERT_GE(writer, 0);
    if (writer == 0) {
        struct rlimit r;
        getrlimit(RLIMIT_NOFILE, &r);
        r.rlim_cur = 77;
        if (setrlimit(RLIMIT_NOFILE, &r) != 0) _exit(1);
        (void)!write(ready[1], "r", 1);
        pause();
        _exit(0);
    }
    close(ready[1]);
    char c;
    ASSERT_EQ(read(ready[0], &c, 1), 1);
    close(ready[0]);
    RestoreRequest req;
    req.writer_pid = writer;
    std::optional<WriterContext> shared;
    auto first = plan_writer(image_of(1000, 1000, {1000}), req, &shared);
    ASSERT_TRUE(first) << first.error().what;
    EXPECT_EQ(first->context.rlimits[RLIMIT_NOFILE].rlim_cur, 77u);
    ASSERT_TRUE(shared);
    EXPECT_EQ(shared->rlimits[RLIMIT_NOFILE].rlim_cur, 77u);
    kill(writer, SIGKILL);
    ASSERT_EQ(waitpid(writer, nullptr, 0), writer);

    // The writer is gone: read again, its context cannot be; given, it is.
    EXPECT_FALSE(plan_writer(image_of(1000, 1000, {1000}), req));
    auto later = plan_writer(image_of(1001, 1002, {1002, 1003}), req, &shared);
    ASSERT_TRUE(later) << later.error().what;
    EXPECT_EQ(later->context.rlimits[RLIMIT_NOFILE].rlim_cur, 77u);
    EXPECT_EQ(later->context.nice, first->context.nice);
    EXPECT_EQ(later->context.cgroup_procs, first->context.cgroup_procs);
    EXPECT_EQ(later->uid, 1001u);  // the image's, not the first process's
    EXPECT_EQ(later->gid, 1002u);
    EXPECT_EQ(later->groups, (std::vector<gid_t>{1002, 1003}));
}

ino_t inode_of(int fd) {
    struct stat st {};
    return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

TEST(WriterContext, TheWritersNetworkNamespaceIsGivenAgainAsACopy) {
    if (geteuid() != 0) GTEST_SKIP() << "a network namespace of its own needs root";
    // The writer: a thread in a network namespace of its own (per thread).
    std::promise<pid_t> tid;
    std::promise<void> done;
    std::thread t([&] {
        if (unshare(CLONE_NEWNET) != 0) {
            tid.set_value(-1);
            return;
        }
        tid.set_value(pid_t(syscall(SYS_gettid)));
        done.get_future().wait();
    });
    pid_t w = tid.get_future().get();
    if (w < 0) {
        t.join();
        GTEST_SKIP() << "unshare(CLONE_NEWNET) refused here";
    }
    std::optional<UniqueFd> shared;
    auto first = writer_netns(w, &shared);
    done.set_value();
    t.join();
    ASSERT_TRUE(first) << first.error().what;
    ASSERT_TRUE(*first);
    ASSERT_TRUE(shared && *shared);
    // The writer's thread ended: only the kept copy still names its namespace.
    EXPECT_FALSE(writer_netns(w));
    auto later = writer_netns(w, &shared);
    ASSERT_TRUE(later) << later.error().what;
    ASSERT_TRUE(*later);
    EXPECT_NE(later->get(), first->get());
    EXPECT_EQ(inode_of(later->get()), inode_of(first->get()));

    // The daemon's own namespace: no fd, for the first process and the later.
    std::optional<UniqueFd> own;
    auto a = writer_netns(getpid(), &own);
    auto b = writer_netns(getpid(), &own);
    ASSERT_TRUE(a && b);
    EXPECT_FALSE(*a);
    EXPECT_FALSE(*b);
}

}  // namespace
}  // namespace crfs
