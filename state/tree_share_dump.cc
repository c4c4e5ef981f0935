#include "state/tree_share_dump.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <set>

#include "common/strfmt.h"
#include "state/tree_share.h"
#include "state/unix_socket.h"
#include "state/unix_tree.h"

namespace crfs {

namespace {

// The unix-socket record of `from` goes after the records of the giver's fd
// `owner_fd`, with the senders of its datagrams (state/unix_tree.h).
Status move_socket_record(TaskFd& from, std::vector<TaskFd>& giver, int owner_fd) {
    TaskFd* to = nullptr;
    for (TaskFd& g : giver)
        if (g.rec.fd == owner_fd && g.rec.same_as < 0) to = &g;
    bool moved = false;
    for (auto& rec : from.records) {
        bool sock = rec.first == image::RecordType::kUnixSocket ||
                    rec.first == image::RecordType::kUnixBound;
        if (!to || (!sock && rec.first != image::RecordType::kUnixSender &&
                    rec.first != image::RecordType::kUnixOptions))
            continue;
        moved |= sock;
        to->records.push_back(std::move(rec));
    }
    if (moved) return {};
    return make_error(EIO, strfmt("fd {}: no unix-socket record to give its peer", from.rec.fd));
}

// sock: a socketpair end of member `m`'s own whose pair an earlier member
// made (SO_PEERCRED names it, state/unix_socket.h) gets a unix-maker record,
// once per pair.
Status record_pair_makers(std::span<const pid_t> pids, size_t m, std::vector<TaskFd>& fds) {
    std::set<uint64_t> done;
    for (TaskFd& t : fds) {
        if (t.rec.kind != uint32_t(image::FdKind::kUnixSocket) || t.rec.same_as >= 0) continue;
        uint64_t peer = 0;
        for (const auto& [type, payload] : t.records) {
            image::UnixSocketRecord u;
            if (type != image::RecordType::kUnixSocket || payload.size() < sizeof u) continue;
            std::memcpy(&u, payload.data(), sizeof u);
            if (u.ino == t.rec.ino) peer = u.peer;
        }
        if (done.count(peer)) continue;
        auto cred = state::unix_peer_cred(pids[m], t.rec.fd);
        if (!cred) return std::unexpected(cred.error());
        auto by =
            state::socketpair_maker(strfmt("fd {}", t.rec.fd), pids.first(m + 1), pids[m], *cred);
        if (!by) return std::unexpected(by.error());
        done.insert(t.rec.ino);
        if (*by == pids[m]) continue;
        image::UnixMakerRecord r{t.rec.ino, uint32_t(std::ranges::find(pids, *by) - pids.begin()),
                                 0};
        t.records.emplace_back(image::RecordType::kUnixMaker,
                               std::string(reinterpret_cast<const char*>(&r), sizeof r));
    }
    return {};
}

// fifo: member fd `lead` is a FIFO description of its own whose bytes the
// giver's pipe record holds (state/tree_share.h kShareFifoJoin): kind
// kFifoJoin, its path and flags kept, its own pipe record dropped (the bytes
// are restored once). An O_DIRECT description (packet mode) anywhere makes
// the giver's record a packet pipe, as an O_DIRECT end of its own would.
Status join_fifo(TaskFd& lead, std::vector<TaskFd>& mine, std::vector<TaskFd>& giver) {
    lead.rec.kind = uint32_t(image::FdKind::kFifoJoin);
    lead.rec.pos = lead.rec.size = lead.rec.rdev = 0;
    lead.rec.mtime_sec = lead.rec.mtime_nsec = 0;
    lead.records.clear();
    for (TaskFd& t : mine)
        if (t.rec.same_as == lead.rec.fd) {
            image::FdRecord rec = lead.rec;
            rec.fd = t.rec.fd;
            rec.fd_flags = t.rec.fd_flags;
            rec.same_as = lead.rec.fd;
            t.rec = rec;
        }
    for (TaskFd& g : giver)
        for (auto& [type, payload] : g.records) {
            image::PipeRecord p;
            if (type != image::RecordType::kPipe || payload.size() < sizeof p) continue;
            std::memcpy(&p, payload.data(), sizeof p);
            if (p.ino != lead.rec.ino) continue;
            if (lead.rec.open_flags & O_DIRECT) p.flags |= image::kPipePacket;
            std::memcpy(payload.data(), &p, sizeof p);
            return {};
        }
    return make_error(EIO, strfmt("fd {}: no pipe record of FIFO {} in the process restoring it",
                                  lead.rec.fd, lead.rec.ino));
}

}  // namespace

Status share_between_members(std::span<const pid_t> pids, std::span<std::vector<TaskFd>*> fds,
                             std::span<state::TaskView* const> views) {
    if (views.size() != pids.size() || fds.size() != pids.size())
        return make_error(EINVAL, "share_between_members: one view and fd list per process");
    std::vector<std::vector<state::MemberFd>> seen;
    for (size_t m = 0; m < pids.size(); ++m) {
        auto f = state::member_fds(*views[m]);
        if (!f) return std::unexpected(f.error().context(strfmt("pid {}", pids[m])));
        seen.push_back(std::move(*f));
    }
    state::KcmpCache* kcmp = views.empty() ? nullptr : views.front()->kcmp().get();
    state::unix_dgram_anchors(pids, getpid(), seen);
    std::vector<state::ShareRef> refs;
    state::Reasons why;
    state::classify_sharing(pids, seen, refs, why, kcmp);
    if (!why.empty()) return make_error(EBUSY, why.front());
    for (const state::ShareRef& r : refs) {
        auto& mine = *fds[r.member];
        TaskFd* lead = nullptr;
        for (TaskFd& t : mine)
            if (t.rec.fd == r.fd && t.rec.same_as < 0) lead = &t;
        if (!lead)
            return make_error(EIO, strfmt("pid {} fd {}: not captured", pids[r.member], r.fd));
        if (r.end == state::kShareFifoJoin) {
            if (auto j = join_fifo(*lead, mine, *fds[r.owner]); !j)
                return std::unexpected(j.error().context(strfmt("pid {}", pids[r.member])));
            continue;
        }
        lead->rec.kind = uint32_t(image::FdKind::kShared);
        if (r.end != image::kShareReopen) lead->rec.pos = 0;  // reopened: its own offset
        lead->rec.size = lead->rec.mode = lead->rec.rdev = 0;
        lead->rec.mtime_sec = lead->rec.mtime_nsec = 0;
        lead->rec.path_len = 0;
        lead->path.clear();
        lead->content.clear();
        lead->inet.reset();
        if (r.end == image::kSharePeer)  // its socket's record goes to the giver's, with the peer's
            if (auto moved = move_socket_record(*lead, *fds[r.owner], r.owner_fd); !moved)
                return std::unexpected(moved.error().context(strfmt("pid {}", pids[r.member])));
        lead->records.clear();
        image::ShareFdRecord s{r.fd, uint32_t(r.owner), r.owner_fd, r.end};
        lead->records.emplace_back(image::RecordType::kShareFd,
                                   std::string(reinterpret_cast<const char*>(&s), sizeof s));
        for (TaskFd& t : mine) {
            if (t.rec.same_as != r.fd) continue;
            image::FdRecord rec = lead->rec;
            rec.fd = t.rec.fd;
            rec.fd_flags = t.rec.fd_flags;
            rec.same_as = r.fd;
            t.rec = rec;
            t.path.clear();
        }
    }
    for (size_t m = 0; m < pids.size(); ++m)
        if (auto s = record_pair_makers(pids, m, *fds[m]); !s)
            return std::unexpected(s.error().context(strfmt("pid {}", pids[m])));
    return {};
}

}  // namespace crfs
