#include "checkpoint/track_channel.h"

#include <sys/socket.h>

#include <cstring>

namespace crfs {

namespace {

// One message: the id as its bytes, room for one descriptor.
struct Message {
    uint64_t id = 0;
    iovec iov{&id, sizeof id};
    alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int))] = {};
    msghdr m{};
    Message() {
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = ctl;
        m.msg_controllen = sizeof ctl;
    }
    Message(const Message&) = delete;
};

}  // namespace

Status send_track(int sock, int uffd, uint64_t id) {
    Message msg;
    msg.id = id;
    msghdr& m = msg.m;
    cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &uffd, sizeof uffd);
    if (sendmsg(sock, &m, MSG_NOSIGNAL) != ssize_t(sizeof msg.id))
        return errno_error("send the delta tracking descriptor");
    return {};
}

Result<TrackMessage> recv_track(int sock) {
    TrackMessage out;
    Message msg;
    msghdr& m = msg.m;
    ssize_t n = recvmsg(sock, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return out;
    if (n < 0) return errno_error("receive the delta tracking descriptor");
    for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
            c->cmsg_len == CMSG_LEN(sizeof(int))) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
            out.uffd.reset(fd);
        }
    if (n != ssize_t(sizeof msg.id) || !out.uffd || (m.msg_flags & MSG_CTRUNC))
        return make_error(EIO, "malformed delta tracking message");
    out.id = msg.id;
    return out;
}

}  // namespace crfs
