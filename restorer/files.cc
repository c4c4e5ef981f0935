#include "restorer/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "common/strfmt.h"

#include "restorer/child.h"
#include "state/file_kind.h"
#include "state/inet.h"
#include "state/tree_share_restore.h"

namespace crfs {

namespace {

// Stage 1: a kernel object made by its kind (state/kobj.h).
int make_kobj(const FdAction& a, int status_fd) {
    state::KobjFail fail;
    int fd = state::kobj_make(a.kobj, a.path.c_str(), fail);
    if (fd < 0)
        child_fail(status_fd, fail.step, fail.err, fail.arg ? fail.arg : uint64_t(a.target));
    return fd;
}

// A TCP or UDP socket made here as the image says (state/inet.h), moved to
// >= min_fd for stage 1 to dup.
Result<UniqueFd> plan_socket(const DecodedImage& img, const FdEntry& f, FdAction& a, int min_fd) {
    auto e = std::find_if(img.inet.begin(), img.inet.end(),
                          [&](const InetEntry& i) { return i.rec.fd == f.rec.fd; });
    if (e == img.inet.end()) return make_error(EINVAL, strfmt("fd {}: no socket record", f.rec.fd));
    auto sock = state::restore_inet(f, *e);
    if (!sock) return std::unexpected(sock.error());
    int hi = fcntl(sock->get(), F_DUPFD_CLOEXEC, min_fd);
    if (hi < 0) return errno_error("dup of a restored socket");
    a.prepared = hi;
    a.type = S_IFSOCK;
    a.tcp_live = e->repair.has_value();
    a.path = e->repair ? "established TCP connection" : "socket";
    return UniqueFd(hi);
}

}  // namespace

Result<FdPlan> plan_fds(const DecodedImage& img, int image_fd, int min_fd, bool chown,
                        TreeRestore* tree, uint32_t index) {
    FdPlan plan;
    plan.min_fd = min_fd;
    auto pipes = state::plan_pipes(img, image_fd);
    if (!pipes) return std::unexpected(pipes.error());
    plan.pipes = std::move(*pipes);
    auto socks = state::plan_unix_sockets(img, image_fd);
    if (!socks) return std::unexpected(socks.error());
    plan.unix_sockets = std::move(*socks);
    auto bound = state::plan_unix_bound(img, image_fd);
    if (!bound) return std::unexpected(bound.error());
    plan.unix_bound = std::move(*bound);
    auto memfds = state::plan_memfds(img, image_fd, min_fd, chown);  // kobj
    if (!memfds) return std::unexpected(memfds.error());
    plan.memfds = std::move(*memfds);
    for (const auto& f : img.fds) {
        FdAction a;
        a.target = f.rec.fd;
        a.cloexec = f.rec.fd_flags & image::kFdCloexec;
        plan.max_target = std::max(plan.max_target, a.target);
        if (f.rec.same_as >= 0) {  // check_fields: an earlier fd that is its own group
            a.same_as = f.rec.same_as;
            plan.actions.push_back(std::move(a));
            continue;
        }
        a.open_flags =
            int(f.rec.open_flags & ~uint32_t(O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC)) | O_NOCTTY;
        auto kind = image::FdKind(f.rec.kind);
        if (kind == image::FdKind::kPipe || kind == image::FdKind::kFifo) {  // check_pipes
            for (size_t i = 0; i < plan.pipes.size(); ++i)
                if (plan.pipes[i].ino == f.rec.ino) a.pipe = int(i);
            a.open_flags = int(f.rec.open_flags);
            a.path = kind == image::FdKind::kFifo ? f.path : strfmt("pipe:[{}]", f.rec.ino);
            plan.actions.push_back(std::move(a));
            continue;
        }
        if (kind == image::FdKind::kUnixSocket || kind == image::FdKind::kUnixBound) {
            // check_unix_sockets, check_unix_bound: its record exists
            for (size_t i = 0; i < plan.unix_sockets.size(); ++i)
                if (plan.unix_sockets[i].rec.ino == f.rec.ino) a.unix_end = int(i);
            for (size_t i = 0; i < plan.unix_bound.socks.size(); ++i)
                if (plan.unix_bound.socks[i].rec.sock.ino == f.rec.ino) a.unix_bound = int(i);
            a.open_flags = int(f.rec.open_flags);
            a.path = strfmt("socket:[{}]", f.rec.ino);
            plan.actions.push_back(std::move(a));
            continue;
        }
        if (kind == image::FdKind::kFifoJoin) {  // fifo: check_pipes; tree_share_plan: its channel
            a.fifo_join = true;
            a.open_flags = int(f.rec.open_flags);
            a.path = f.path;
            a.fifo_dev = f.rec.dev;
            a.fifo_ino = f.rec.ino;
            plan.actions.push_back(std::move(a));
            continue;
        }
        if (kind == image::FdKind::kShared) {  // state/tree_share_restore.cc plans its channel
            a.shared = true;
            a.open_flags = int(f.rec.open_flags);
            plan.actions.push_back(std::move(a));
            continue;
        }
        if (kind == image::FdKind::kTcp || kind == image::FdKind::kUdp) {
            auto sock = plan_socket(img, f, a, min_fd);
            if (!sock) return std::unexpected(sock.error());
            plan.copies.push_back(std::move(*sock));
            plan.actions.push_back(std::move(a));
            continue;
        }
        a.pos = f.rec.pos;
        a.path = f.path;
        if (state::is_kobj(f.rec.kind)) {
            if (auto k = state::kobj_plan(f, a.kobj); !k) return std::unexpected(k.error());
            if (kind == image::FdKind::kMemfd)
                a.path = state::memfd_self_path(plan.memfds, f.rec.ino);
        } else {  // regular, deleted, device: state/file_kind.h
            state::FilePlanIn in{img,         image_fd,   min_fd, chown,
                                 plan.copies, plan.early, tree,   index};
            if (auto k = state::file_plan(f, in, a); !k) return std::unexpected(k.error());
        }
        plan.actions.push_back(std::move(a));
    }
    // failclean: a slot for each queue stage 1 may create (state/mqueue.h).
    auto queue = [](const FdAction& a) { return a.kobj.kind == uint32_t(image::FdKind::kMqueue); };
    plan.mqueues = state::MqueuesMade(size_t(std::ranges::count_if(plan.actions, queue)));
    if (!plan.mqueues.ok()) return errno_error("restore: slots of the POSIX message queues");
    for (size_t i = 0; auto& a : plan.actions)
        if (queue(a)) a.kobj.mq_made = plan.mqueues.slot(i++);
    return plan;
}

void child_place_fd(int fd, const FdAction& a, int status_fd) {
    if (fd != a.target) {
        if (dup3(fd, a.target, a.cloexec ? O_CLOEXEC : 0) < 0)
            child_fail(status_fd, CRFS_RA_STEP_DUP_FD, errno, uint64_t(a.target));
        ::close(fd);
    } else if (!a.cloexec && fcntl(fd, F_SETFD, 0) < 0) {
        child_fail(status_fd, CRFS_RA_STEP_DUP_FD, errno, uint64_t(a.target));
    }
}

void child_open_fds(const FdPlan& plan, int status_fd) {
    for (const auto& a : plan.actions) {
        if (a.same_as >= 0) {
            if (dup3(a.same_as, a.target, a.cloexec ? O_CLOEXEC : 0) < 0)
                child_fail(status_fd, CRFS_RA_STEP_DUP_FD, errno, uint64_t(a.target));
            continue;
        }
        if (a.shared) {
            child_share_recv(a, status_fd);
            continue;
        }
        if (a.fifo_join) {
            child_fifo_join(a, status_fd);
            continue;
        }
        if (a.pipe >= 0) {
            const auto& p = plan.pipes[size_t(a.pipe)];
            if (int e = state::child_pipe_fd(p, a.target, a.open_flags, a.cloexec, plan.min_fd))
                child_fail(status_fd, CRFS_RA_STEP_OPEN_FD, e, uint64_t(a.target));
            continue;
        }
        if (a.unix_end >= 0) {
            if (int e = state::child_unix_fd(plan.unix_sockets, size_t(a.unix_end), a.target,
                                             a.open_flags, a.cloexec, plan.min_fd))
                child_fail(status_fd, CRFS_RA_STEP_OPEN_FD, e, uint64_t(a.target));
            continue;
        }
        if (a.unix_bound >= 0) {
            if (int e = state::child_unix_bound_fd(plan.unix_bound, size_t(a.unix_bound), a.target,
                                                   a.open_flags, a.cloexec, plan.min_fd))
                child_fail(status_fd, CRFS_RA_STEP_OPEN_FD, e, uint64_t(a.target));
            continue;
        }
        if (a.prepared >= 0) {
            if (dup3(a.prepared, a.target, a.cloexec ? O_CLOEXEC : 0) < 0)
                child_fail(status_fd, CRFS_RA_STEP_DUP_FD, errno, uint64_t(a.target));
            if (fcntl(a.target, F_SETFL, a.open_flags) < 0)
                child_fail(status_fd, CRFS_RA_STEP_OPEN_FD, errno, uint64_t(a.target));
            if (int err = a.tcp_live ? state::tcp_go_live(a.target) : 0)
                child_fail(status_fd, CRFS_RA_STEP_OPEN_FD, err, uint64_t(a.target));
            continue;
        }
        child_place_fd(a.kobj.kind ? make_kobj(a, status_fd) : state::file_open(a, status_fd), a,
                       status_fd);
        if (a.seek && lseek(a.target, off_t(a.pos), SEEK_SET) < 0 && errno != ESPIPE)
            child_fail(status_fd, CRFS_RA_STEP_SEEK_FD, errno, uint64_t(a.target));
    }
    // Epoll watches, once every fd they may name is in place.
    for (const auto& a : plan.actions) {
        state::KobjFail fail;
        if (a.kobj.kind && !state::kobj_finish(a.kobj, a.target, fail))
            child_fail(status_fd, fail.step, fail.err, fail.arg ? fail.arg : uint64_t(a.target));
    }
    if (plan.sends) child_share_send(plan, status_fd);  // before the pipes' spare ends go
    state::child_close_pipes(plan.pipes);
    state::child_close_unix(plan.unix_sockets);
    state::child_close_unix_bound(plan.unix_bound);
}

}  // namespace crfs
