// epoll: every watch, as fdinfo's "tfd:" lines show it (the fd number it was
// added with, its events and data). Restored last: stage 1 makes the epoll
// fd with the others, and adds its watches once every fd is in place
// (nested epolls included).
//
// Refused (a reason naming the watched fd): a watch on a file the task has
// closed, or whose fd number now holds another file (the kernel keeps the
// watch while the file lives: kcmp KCMP_EPOLL_TFD tells); a watch on an fd
// that cannot be restored itself; EPOLLWAKEUP (the kernel drops it silently
// without CAP_BLOCK_SUSPEND); an EPOLLONESHOT watch that has fired (no
// epoll_ctl can make a watch disabled again: ADD and MOD add EPOLLERR|EPOLLHUP).
// Not carried (docs/state.md): which events were on the ready list. Level-
// triggered watches report from the files' state, so nothing is lost; an
// edge-triggered watch whose file is ready at restore reports that edge once
// more.
#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "checkpoint/files.h"
#include "common/strfmt.h"
#include "state/fds.h"
#include "state/kobj.h"

namespace crfs::state {
namespace {

// The bits a watch may hold after epoll_ctl (EPOLLWAKEUP refused).
constexpr uint32_t kEvents = 0x7ff | EPOLLRDHUP | EPOLLEXCLUSIVE | EPOLLONESHOT | EPOLLET;
constexpr uint32_t kPrivate = EPOLLWAKEUP | EPOLLONESHOT | EPOLLET | EPOLLEXCLUSIVE;
constexpr int kMaxFd = 1 << 20;

bool match(const FdView& f) {
    return f.link == "anon_inode:[eventpoll]";
}

Result<std::vector<image::EpollWatchRecord>> parse(int fd, std::string_view text) {
    std::vector<image::EpollWatchRecord> out;
    for (const std::string& line : fdinfo_lines(text, "tfd:")) {
        int tfd = -1;
        unsigned events = 0;
        unsigned long long data = 0;
        if (std::sscanf(line.c_str(), "tfd: %d events: %x data: %llx", &tfd, &events, &data) != 3 ||
            tfd < 0)
            return make_error(ENOTSUP, "epoll whose fdinfo line \"" + line +
                                           "\" this crfs cannot read" + std::string(kNotYet));
        out.push_back({fd, tfd, events, 0, data});
    }
    return out;
}

// Whether fd `tfd` of the task is the very file epoll `epfd` watches under it:
// 0 yes, 1 no (closed, or another file), -errno when kcmp cannot tell.
int same_file(pid_t pid, int epfd, int tfd) {
    kcmp_epoll_slot slot{uint32_t(epfd), uint32_t(tfd), 0};
    long r = syscall(SYS_kcmp, pid, pid, KCMP_EPOLL_TFD, tfd, &slot);
    if (r == 0) return 0;
    if (r > 0 || errno == EBADF || errno == ENOENT) return 1;
    return -errno;
}

std::optional<std::string> detect(TaskView& t, const FdView& f) {
    auto watches = parse(f.fd, f.fdinfo);
    if (!watches) return watches.error().what;
    auto fds = t.fds();
    std::map<int, int> seen;
    std::optional<FdContext> ctx;
    for (const auto& w : *watches) {
        std::string which = strfmt("epoll watch of fd {}", w.tfd);
        if (seen[w.tfd]++)
            return which + " twice (one is a file the task has closed)" + std::string(kNotYet);
        int same = same_file(t.pid(), f.fd, w.tfd);
        if (same < 0)
            return strfmt(
                "cannot tell whether epoll's watch of fd {} is that fd's file "
                "(kcmp: {})",
                w.tfd, std::strerror(-same));
        if (same)
            return strfmt(
                "epoll watches fd {}, which the task has closed or which now holds "
                "another file (the kernel keeps the watch while the file lives){}",
                w.tfd, kNotYet);
        if (w.events & EPOLLWAKEUP) return which + " with EPOLLWAKEUP" + std::string(kNotYet);
        if ((w.events & EPOLLONESHOT) && !(w.events & ~kPrivate))
            return which + ": an EPOLLONESHOT watch that has fired (disabled)" +
                   std::string(kNotYet);
        if (w.events & ~kEvents) return strfmt("{} with events 0x{:x}{}", which, w.events, kNotYet);
        if (!fds) continue;  // the task is gone: the fds kind says so
        for (const FdView& v : **fds) {
            if (v.fd != w.tfd) continue;
            if (!ctx) ctx.emplace(t);
            if (auto why = fd_reason(t, v, *ctx))
                return strfmt("epoll watches fd {}, which cannot be restored ({})", w.tfd, *why);
        }
    }
    return std::nullopt;
}

Status dump(pid_t, const FdView& f, TaskFd& t) {
    auto watches = parse(f.fd, f.fdinfo);
    if (!watches) return std::unexpected(watches.error().context(strfmt("fd {}", f.fd)));
    for (const auto& w : *watches) t.records.push_back(kobj_record(image::RecordType::kEpollWatch, w));
    return {};
}

Status check(const FdEntry& f, const DecodedImage& img) {
    if (f.kobj.size() != kobj_records(f, image::RecordType::kEpollWatch).size())
        return kobj_bad(f, "an epoll fd with records of another kind");
    if (f.rec.open_flags & ~uint32_t(O_ACCMODE))
        return kobj_bad(f, strfmt("epoll open flags {}", kobj_oct(f.rec.open_flags)));
    std::map<int, int> seen;
    for (const auto& [type, payload] : f.kobj) {
        image::EpollWatchRecord w;
        std::memcpy(&w, payload.data(), sizeof w);
        bool known = std::any_of(img.fds.begin(), img.fds.end(),
                                 [&](const FdEntry& e) { return e.rec.fd == w.tfd; });
        if (w.tfd < 0 || w.tfd >= kMaxFd || w.tfd == f.rec.fd || !known || seen[w.tfd]++)
            return kobj_bad(f, strfmt("epoll watch of fd {} (not another fd of the image, or "
                                      "twice)",
                                      w.tfd));
        if ((w.events & ~kEvents) || w.reserved)
            return kobj_bad(f, strfmt("epoll watch of fd {}: events 0x{:x}", w.tfd, w.events));
    }
    return {};
}

Status plan(const FdEntry& f, KobjPlan& p) {
    for (const auto& [type, payload] : f.kobj) {
        image::EpollWatchRecord w;
        std::memcpy(&w, payload.data(), sizeof w);
        p.watches.push_back({w.tfd, w.events, w.data});
    }
    return {};
}

int make(const KobjPlan&, const char*, KobjFail& fail) {
    int fd = epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0) fail = {CRFS_RA_STEP_KOBJ, errno, 0};
    return fd;
}

bool finish(const KobjPlan& p, int fd, KobjFail& fail) {
    for (const KobjWatch& w : p.watches) {
        epoll_event ev{};
        ev.events = w.events;
        ev.data.u64 = w.data;
        if (epoll_ctl(fd, EPOLL_CTL_ADD, w.tfd, &ev) < 0) {
            fail = {CRFS_RA_STEP_EPOLL_WATCH, errno, uint64_t(fd) << 32 | uint32_t(w.tfd)};
            return false;
        }
    }
    return true;
}

}  // namespace

const KobjKind kEpollKind = {
    image::FdKind::kEpoll, "epoll", match, detect, dump, check, plan, make, finish};

}  // namespace crfs::state
