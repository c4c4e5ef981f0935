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
#include "state/tree_share.h"
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
                    first_.emplace(ino, std::pair{m, f.fd});  // members in order: the first stays
                }
    }
}

size_t UnixMembers::first(uint64_t ino) const {
    auto it = first_.find(ino);
    return it == first_.end() ? kNone : it->second.first;
}

const UnixMembers::Group* UnixMembers::group(uint64_t ino, UnixTable& table) const {
    auto root = [&](uint64_t x) {
        while (root_[x] != x) x = root_[x] = root_[root_[x]];
        return x;
    };
    if (!grouped_) {
        grouped_ = true;
        std::map<std::string, uint64_t> named;  // a datagram's sender address -> its socket
        std::set<size_t> holders;
        for (const auto& [s, at] : first_)
            if (const UnixDiag* d = table.find(s); d && d->type == SOCK_DGRAM) {
                root_[s] = s;
                if (!d->raw_name.empty()) named[unix_bound_name(d->raw_name)] = s;
                holders.insert(at.first);
            }
        auto join = [&](uint64_t a, uint64_t b) { root_[root(a)] = root(b); };
        for (const auto& [s, at] : first_) {
            const UnixDiag* d = table.find(s);
            if (!root_.contains(s)) continue;
            if (root_.contains(d->peer)) join(s, d->peer);
            // Only a named socket receives from others than its peer; its queue
            // says from whom (read only when a group may span two members).
            if (holders.size() < 2 || d->raw_name.empty()) continue;
            auto q = read_unix_socket(pids_[at.first], at.second, *d);
            if (!q) continue;  // its own reason says why (unix_bound_reason)
            for (const std::string& from : q->senders)
                if (auto it = named.find(from); !from.empty() && it != named.end())
                    join(s, it->second);
        }
        for (auto& [s, r] : root_) {  // ino order: the maker's first socket is the anchor
            r = root(s);
            Group& g = groups_[r];
            if (size_t m = first(s); m < g.maker) g = {m, s};
        }
    }
    auto it = root_.find(ino);
    return it == root_.end() ? nullptr : &groups_.at(it->second);
}

size_t UnixMembers::maker(uint64_t ino, UnixTable& table) const {
    size_t f = first(ino);
    const UnixDiag* d = table.find(ino);
    if (f == kNone || !d || d->type != SOCK_DGRAM) return f;
    const Group* g = group(ino, table);
    return g ? g->maker : f;
}

uint64_t UnixMembers::made_with(uint64_t ino, UnixTable& table) const {
    const UnixDiag* d = table.find(ino);
    const Group* g = d && d->type == SOCK_DGRAM ? group(ino, table) : nullptr;
    if (!g) return unix_made_with(table, ino);
    return g->anchor == ino ? 0 : g->anchor;
}

void unix_dgram_anchors(std::span<const pid_t> pids, pid_t self_tgid,
                        std::span<std::vector<MemberFd>> fds) {
    // perf: the members' fds are read again below (UnixMembers) only when one
    // of them holds a socket at all (a tree of 64 without: ~6 ms of /proc reads).
    auto any_socket = [&] {
        for (const auto& member : fds)
            for (const MemberFd& f : member)
                if (f.socket) return true;
        return false;
    };
    if (pids.empty() || !any_socket()) return;
    UnixTable table;
    UnixMembers mem(pids.front(), pids, self_tgid, table);
    for (auto& member : fds)
        for (MemberFd& f : member)
            if (const UnixDiag* d = f.socket ? table.find(f.ino) : nullptr;
                d && d->type == SOCK_DGRAM)
                f.peer = mem.made_with(f.ino, table);
}

std::map<uint64_t, uint64_t> unix_dgram_groups(const DecodedImage& img) {
    std::map<uint64_t, uint64_t> root;
    for (const auto& u : img.unix_bound)
        if (u.rec.sock.type == SOCK_DGRAM) root[u.rec.sock.ino] = u.rec.sock.ino;
    auto find = [&](uint64_t x) {
        while (root[x] != x) x = root[x] = root[root[x]];
        return x;
    };
    auto join = [&](uint64_t a, uint64_t b) {  // the smaller root stays: no cycle
        if (!root.contains(a) || !root.contains(b)) return;
        a = find(a), b = find(b);
        root[std::max(a, b)] = std::min(a, b);
    };
    for (const auto& u : img.unix_bound) join(u.rec.sock.ino, u.rec.sock.peer);
    for (const auto& s : img.unix_senders) join(s.ino, s.sender);
    for (auto& [s, r] : root) r = find(s);
    return root;
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
    auto same_group = [&](const DecodedImage& img) {
        auto g = unix_dgram_groups(img);
        return g.at(given->sock.ino) == g.at(at->sock.ino);  // both datagram sockets there
    };
    bool held = false;
    for (const auto& o : giver.fds)
        held |= o.rec.kind == uint32_t(image::FdKind::kUnixBound) && o.rec.ino == taker.rec.ino;
    bool related =
        given && at &&
        ((given->role == uint32_t(UnixRole::kClient) && at->role == uint32_t(UnixRole::kAccepted) &&
          at->sock.peer == given->sock.ino) ||
         (given->role == uint32_t(UnixRole::kWaiting) && at->role == uint32_t(UnixRole::kListen) &&
          given->listener == at->sock.ino) ||
         (unix_dgram_given(*given) && at->sock.type == SOCK_DGRAM && same_group(giver)));
    uint32_t flags = taker.rec.open_flags;
    if (giver_fd.rec.kind != uint32_t(image::FdKind::kUnixBound) || !related || held ||
        (flags & ~uint32_t(O_ACCMODE | O_NONBLOCK)) || (flags & O_ACCMODE) != O_RDWR)
        return make_error(
            EINVAL, strfmt("bad image: fd {}: unix socket {} given by fd {}, which is no accepted "
                           "connection or listening socket that socket is the client of, no "
                           "datagram socket of its group (connected, or sending to or from "
                           "it), or a socket an fd of the giver holds, or open flags 0{:o}",
                           taker.rec.fd, taker.rec.ino, giver_fd.rec.fd, flags));
    return {};
}

bool unix_dgram_given(const image::UnixBoundRecord& r) {
    return r.role == uint32_t(image::UnixRole::kPlain) && r.sock.type == SOCK_DGRAM;
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
