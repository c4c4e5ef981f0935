// Unix connections between the processes of one image (state/unix_tree.h).
#include "state/unix_tree.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common/strfmt.h"
#include "crfs/image_format.h"
#include "state/tree.h"
#include "state/unix_bound.h"
#include "state/unix_socket.h"

namespace crfs::state {

UnixMembers::UnixMembers(pid_t pid, std::span<const pid_t> image_pids, pid_t self_tgid,
                         UnixTable& table) {
    pids_.assign(image_pids.begin(), image_pids.end());
    if (pids_.empty()) pids_ = tree_pids(pid);
    auto me = std::ranges::find(pids_, pid);
    if (me == pids_.end()) pids_.insert(pids_.begin(), pid), me = pids_.begin();
    self_ = size_t(me - pids_.begin());
    held_.resize(pids_.size());
    for (size_t m = 0; m < pids_.size(); ++m) {
        TaskView v(pids_[m], self_tgid);
        if (auto fds = v.fds(); fds)
            for (const FdView& f : **fds)
                if (uint64_t ino = socket_ino(f); ino && table.find(ino)) {
                    held_[m].insert(ino);
                    first_.emplace(ino, m);  // members in order: the first one stays
                }
    }
}

size_t UnixMembers::first(uint64_t ino) const {
    auto it = first_.find(ino);
    return it == first_.end() ? kNone : it->second;
}

size_t UnixMembers::maker(uint64_t ino, UnixTable& table) const {
    size_t f = first(ino);
    const UnixDiag* d = table.find(ino);
    if (f == kNone || !d || d->type != SOCK_DGRAM || !d->peer) return f;
    // classify_sharing: given by the peer's first holder when it holds the
    // peer as its own (first() strictly decreases: no cycle)
    size_t pf = first(d->peer);
    if (pf == kNone || pf >= f || maker(d->peer, table) != pf) return f;
    return pf;
}

uint64_t unix_made_with(UnixTable& table, uint64_t ino) {
    const UnixDiag* d = table.find(ino);
    if (!d || d->peer) return d ? d->peer : 0;
    for (const auto& [l, o] : table.all())
        if (std::ranges::count(o.icons, ino)) return l;
    return 0;
}

Status check_unix_given(const DecodedImage& giver, const FdEntry& giver_fd, const FdEntry& taker) {
    using image::UnixRole;
    const image::UnixBoundRecord *given = nullptr, *at = nullptr;
    for (const auto& u : giver.unix_bound) {
        if (u.rec.sock.ino == taker.rec.ino) given = &u.rec;
        if (u.rec.sock.ino == giver_fd.rec.ino) at = &u.rec;
    }
    bool held = false;
    for (const auto& o : giver.fds)
        held |= o.rec.kind == uint32_t(image::FdKind::kUnixBound) && o.rec.ino == taker.rec.ino;
    bool related =
        given && at &&
        ((given->role == uint32_t(UnixRole::kClient) && at->role == uint32_t(UnixRole::kAccepted) &&
          at->sock.peer == given->sock.ino) ||
         (given->role == uint32_t(UnixRole::kWaiting) && at->role == uint32_t(UnixRole::kListen) &&
          given->listener == at->sock.ino) ||
         (unix_dgram_given(*given) && at->sock.type == SOCK_DGRAM &&
          given->sock.peer == at->sock.ino));
    uint32_t flags = taker.rec.open_flags;
    if (giver_fd.rec.kind != uint32_t(image::FdKind::kUnixBound) || !related || held ||
        (flags & ~uint32_t(O_ACCMODE | O_NONBLOCK)) || (flags & O_ACCMODE) != O_RDWR)
        return make_error(
            EINVAL, strfmt("bad image: fd {}: unix socket {} given by fd {}, which is no accepted "
                           "connection or listening socket that socket is the client of, no "
                           "datagram socket it is connected to, or a "
                           "socket an fd of the giver holds, or open flags 0{:o}",
                           taker.rec.fd, taker.rec.ino, giver_fd.rec.fd, flags));
    return {};
}

bool unix_dgram_given(const image::UnixBoundRecord& r) {
    return r.role == uint32_t(image::UnixRole::kPlain) && r.sock.type == SOCK_DGRAM && r.sock.peer;
}

int unix_bound_given(const UnixBoundSet& set, uint64_t ino) {
    for (const auto& p : set.socks)
        if (p.rec.sock.ino == ino && !p.given) return p.held;
    return -1;
}

int send_one_fd(int channel, int fd) {
    char byte = 'F';
    iovec iov{&byte, 1};
    alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int))] = {};
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    if (fd >= 0) {
        m.msg_control = ctl;
        m.msg_controllen = sizeof ctl;
        cmsghdr* c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
    }
    ssize_t n;
    do n = sendmsg(channel, &m, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n == 1 ? 0 : n < 0 ? errno : EIO;
}

int recv_one_fd(int channel, int* fd) {
    *fd = -1;
    char byte;
    iovec iov{&byte, 1};
    alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int))];
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = ctl;
    m.msg_controllen = sizeof ctl;
    ssize_t n;
    do n = recvmsg(channel, &m, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n <= 0) return n < 0 ? errno : EPIPE;  // end of file: the other side died
    cmsghdr* c = CMSG_FIRSTHDR(&m);
    if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
        c->cmsg_len == CMSG_LEN(sizeof(int)))
        std::memcpy(fd, CMSG_DATA(c), sizeof *fd);
    return 0;
}

int child_unix_connect(std::span<const UnixConnectPlan> plans, pollfd* polls, size_t* failed) {
    for (size_t i = 0; i < plans.size(); ++i) polls[i] = {plans[i].channel, POLLIN, 0};
    for (size_t left = plans.size(); left;) {
        int n = poll(polls, plans.size(), -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return *failed = 0, errno;
        for (size_t i = 0; i < plans.size(); ++i) {
            if (polls[i].fd < 0 || !polls[i].revents) continue;
            const UnixConnectPlan& p = plans[i];
            *failed = i;
            int dir = -1;  // a relative name: the server's directory
            if (int e = recv_one_fd(p.channel, &dir)) return e;
            int s = child_make_client(p.client, p.to, p.to_len, dir, p.euid, p.egid);
            if (dir >= 0) ::close(dir);
            if (s < 0) return -s;
            int e = send_one_fd(p.channel, s);
            ::close(s);
            if (e) return e;
            polls[i].fd = -1;  // answered: poll skips it
            --left;
        }
    }
    return 0;
}

}  // namespace crfs::state
