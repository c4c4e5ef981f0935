#include "checkpoint/track_channel.h"

#include <sys/socket.h>

#include <cstring>

#include "crfs/image_format.h"

namespace crfs {

namespace {

struct Head {
    uint64_t id;
    uint32_t total;  // members in all messages
    uint32_t n;      // members in this one
};
struct Who {
    int32_t pid;
    uint32_t reserved;
    uint64_t starttime;
};

// One message: its head, up to kTrackBatch members, as many descriptors.
struct Message {
    Head head{};
    Who who[kTrackBatch] = {};
    iovec iov[2]{{&head, sizeof head}, {who, sizeof who}};
    alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int) * kTrackBatch)] = {};
    msghdr m{};
    Message() {
        m.msg_iov = iov;
        m.msg_iovlen = 2;
        m.msg_control = ctl;
        m.msg_controllen = sizeof ctl;
    }
    Message(const Message&) = delete;
};

Error malformed() {
    return Error{EIO, "malformed delta tracking message"};
}

}  // namespace

Status send_track(int sock, const TrackMessage& t) {
    uint32_t total = uint32_t(t.members.size());
    for (uint32_t at = 0; at < total;) {
        Message msg;
        uint32_t n = std::min(kTrackBatch, total - at);
        msg.head = {t.id, total, n};
        int fds[kTrackBatch];
        for (uint32_t i = 0; i < n; ++i) {
            const TrackedMember& m = t.members[at + i];
            msg.who[i] = {int32_t(m.pid), 0, m.starttime};
            fds[i] = m.uffd.get();
        }
        msg.iov[1].iov_len = n * sizeof(Who);
        msg.m.msg_controllen = CMSG_SPACE(sizeof(int) * n);
        cmsghdr* c = CMSG_FIRSTHDR(&msg.m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * n);
        std::memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
        if (sendmsg(sock, &msg.m, MSG_NOSIGNAL | MSG_DONTWAIT) !=
            ssize_t(sizeof msg.head + n * sizeof(Who)))
            return errno_error("send the delta tracking descriptors");
        at += n;
    }
    return {};
}

Result<TrackMessage> recv_track(int sock) {
    TrackMessage out;
    for (;;) {
        Message msg;
        ssize_t got = recvmsg(sock, &msg.m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && out.members.empty() &&
            out.id == 0)
            return out;  // none queued
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return std::unexpected(malformed());
        if (got < 0) return errno_error("receive the delta tracking descriptors");
        std::vector<UniqueFd> fds;
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg.m); c; c = CMSG_NXTHDR(&msg.m, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
                for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); ++i) {
                    int fd;
                    std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                    fds.emplace_back(fd);
                }
        const Head& h = msg.head;
        if (size_t(got) < sizeof h || (msg.m.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) || h.n == 0 ||
            h.n > kTrackBatch || size_t(got) != sizeof h + h.n * sizeof(Who) || fds.size() != h.n ||
            h.total > image::kMaxProcesses || out.members.size() + h.n > h.total ||
            (!out.members.empty() && h.id != out.id))
            return std::unexpected(malformed());
        out.id = h.id;
        for (uint32_t i = 0; i < h.n; ++i)
            out.members.push_back({pid_t(msg.who[i].pid), msg.who[i].starttime, std::move(fds[i])});
        if (out.members.size() == h.total) return out;
    }
}

}  // namespace crfs
