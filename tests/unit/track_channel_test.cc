// incr (checkpoint/track_channel.h): a tree's trackings between the daemon
// and the worker, in batches of kTrackBatch descriptors.
#include "checkpoint/track_channel.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

namespace crfs {
namespace {

struct Pair {
    UniqueFd a, b;
    Pair() {
        int p[2];
        EXPECT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, p), 0);
        a.reset(p[0]);
        b.reset(p[1]);
    }
};

ino_t inode(int fd) {
    struct stat st {};
    fstat(fd, &st);
    return st.st_ino;
}

TEST(TrackChannel, NothingQueuedIsAnEmptyMessage) {
    Pair p;
    auto m = recv_track(p.b.get());
    ASSERT_TRUE(m) << m.error().what;
    EXPECT_TRUE(m->members.empty());
    EXPECT_EQ(m->id, 0u);
}

TEST(TrackChannel, ATreeOfMoreThanOneBatchComesBackWhole) {
    Pair p;
    TrackMessage out{0x1234, {}};
    for (int i = 0; i < 2 * int(kTrackBatch) + 3; ++i)
        out.members.push_back({1000 + i, uint64_t(i) * 7, UniqueFd(open("/dev/null", O_RDONLY))});
    ASSERT_TRUE(send_track(p.a.get(), out));
    auto in = recv_track(p.b.get());
    ASSERT_TRUE(in) << in.error().what;
    EXPECT_EQ(in->id, 0x1234u);
    ASSERT_EQ(in->members.size(), out.members.size());
    for (size_t i = 0; i < out.members.size(); ++i) {
        EXPECT_EQ(in->members[i].pid, out.members[i].pid);
        EXPECT_EQ(in->members[i].starttime, out.members[i].starttime);
        EXPECT_EQ(inode(in->members[i].uffd.get()), inode(out.members[i].uffd.get()));
    }
}

// A message saying it is one of two members, with one descriptor, and no
// second message: malformed, not a tree of one.
TEST(TrackChannel, AMissingBatchIsMalformed) {
    Pair p;
    struct {
        uint64_t id = 1;
        uint32_t total = 2, n = 1;
        int32_t pid = 5;
        uint32_t reserved = 0;
        uint64_t starttime = 5;
    } wire;
    UniqueFd fd(open("/dev/null", O_RDONLY));
    int raw = fd.get();
    iovec iov{&wire, sizeof wire};
    alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int))] = {};
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = ctl;
    m.msg_controllen = sizeof ctl;
    cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &raw, sizeof raw);
    ASSERT_EQ(sendmsg(p.a.get(), &m, 0), ssize_t(sizeof wire));
    auto in = recv_track(p.b.get());
    ASSERT_FALSE(in);
    EXPECT_EQ(in.error().code, EIO);
}

}  // namespace
}  // namespace crfs
