#include "checkpoint/files.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "checkpoint/task_attrs.h"
#include "common/io.h"
#include "common/strfmt.h"
#include "state/fds.h"
#include "state/file_kind.h"
#include "state/inet.h"
#include "state/kind.h"
#include "state/kobj.h"
#include "state/pipe.h"
#include "state/unix_bound.h"
#include "state/unix_socket.h"

namespace crfs {

namespace {

const char* kind_name(mode_t m) {
    switch (m & S_IFMT) {
        case S_IFIFO:
            return "pipe or FIFO";
        case S_IFSOCK:
            return "socket";
        case S_IFDIR:
            return "directory";
        case S_IFBLK:
            return "block device";
        case S_IFLNK:
            return "symlink";
        default:
            return "special file";
    }
}

// The address family of the task's socket fd (SO_DOMAIN on a copy of it).
Result<int> socket_domain(pid_t pid, int fd) {
    auto sock = state::grab_fd(pid, fd);
    if (!sock) return std::unexpected(sock.error());
    int domain = 0;
    socklen_t len = sizeof domain;
    if (getsockopt(sock->get(), SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0)
        return errno_error(strfmt("fd {}: SO_DOMAIN", fd));
    return domain;
}

}  // namespace

Result<std::vector<TaskFd>> read_fds(state::TaskView& task) {
    // The view's fds: read once while frozen, by the detect that let them
    // through (the root's, in a tree), with its kcmp answers.
    pid_t pid = task.pid();
    std::span<const pid_t> image_pids = task.image_pids();
    auto views = task.fds();
    if (!views) return std::unexpected(views.error());
    const std::vector<state::FdView>& fdv = **views;
    std::vector<state::FdIdentity> ids;
    for (const state::FdView& f : fdv) ids.push_back({f.fd, f.st.st_dev, f.st.st_ino});
    auto same_as = state::description_groups(pid, ids, task.kcmp().get());
    if (!same_as) return std::unexpected(same_as.error());

    std::vector<TaskFd> out;
    std::vector<ino_t> pipes_seen;
    for (size_t i = 0; i < fdv.size(); ++i) {
        const state::FdView& view = fdv[i];
        int fd = view.fd;
        TaskFd t;
        const FdInfo* info = &view.info;
        uint32_t fd_flags = (info->flags & O_CLOEXEC) ? image::kFdCloexec : 0;
        if (int lead = (*same_as)[i]; lead >= 0) {
            // One description: the lowest fd's record (sorted: already made), our fd flags.
            auto l = std::find_if(out.begin(), out.end(),
                                  [&](const TaskFd& o) { return o.rec.fd == lead; });
            if (l == out.end())
                return make_error(EIO, strfmt("fd {}: no record of fd {}", fd, lead));
            t.rec = l->rec;
            t.path = l->path;
            t.rec.fd = fd;
            t.rec.fd_flags = fd_flags;
            t.rec.same_as = lead;
            out.push_back(std::move(t));
            continue;
        }
        const struct stat& st = view.st;

        t.path = view.link;
        t.rec.fd = fd;
        t.rec.same_as = -1;
        t.rec.open_flags = info->flags & ~uint32_t(O_CLOEXEC);
        t.rec.fd_flags = fd_flags;
        t.rec.pos = info->pos;
        t.rec.mode = st.st_mode;
        t.rec.dev = st.st_dev;
        t.rec.ino = st.st_ino;
        t.rec.size = uint64_t(st.st_size);
        t.rec.rdev = st.st_rdev;
        t.rec.mtime_sec = st.st_mtim.tv_sec;
        t.rec.mtime_nsec = st.st_mtim.tv_nsec;

        bool kobj = false;  // O_PATH, directory, eventfd, epoll, ...: state/kobj.h
        if (auto k = state::kobj_dump(pid, view, t, kobj); !k) return std::unexpected(k.error());
        bool file = false;  // regular, deleted, device: state/file_kind.h
        if (!kobj)
            if (auto k = state::file_dump(pid, view, t, file); !k)
                return std::unexpected(k.error());
        if (kobj || file) {
        } else if (bool fifo = S_ISFIFO(st.st_mode) && t.path.starts_with("/");
                   fifo || t.path.starts_with("pipe:[")) {
            t.rec.kind = uint32_t(fifo ? image::FdKind::kFifo : image::FdKind::kPipe);
            std::string link = t.path;
            if (!fifo) t.path.clear();
            if (std::find(pipes_seen.begin(), pipes_seen.end(), st.st_ino) == pipes_seen.end()) {
                pipes_seen.push_back(st.st_ino);
                auto rec = state::dump_pipe(pid, fd, st.st_ino, link);
                if (!rec) return std::unexpected(rec.error());
                t.records.emplace_back(image::RecordType::kPipe, std::move(*rec));
            }
        } else if (S_ISSOCK(st.st_mode)) {  // detect let only these through
            auto domain = socket_domain(pid, fd);
            if (!domain) return std::unexpected(domain.error());
            auto named = *domain == AF_UNIX  // state/unix_bound.cc
                             ? state::dump_unix_bound(pid, fd, st.st_ino, t.records, image_pids)
                             : Result<bool>(false);
            if (!named) return std::unexpected(named.error());
            if (*named) {
                t.rec.kind = uint32_t(image::FdKind::kUnixBound);
                t.path.clear();
            } else if (*domain == AF_UNIX) {  // a unix socketpair end (state/unix_socket.cc)
                t.rec.kind = uint32_t(image::FdKind::kUnixSocket);
                t.path.clear();
                if (auto s = state::dump_unix_socket(pid, fd, st.st_ino, t.records); !s)
                    return std::unexpected(s.error());
            } else {  // TCP or UDP (state/inet.h)
                auto inet = state::dump_inet(pid, fd);
                if (!inet) return std::unexpected(inet.error());
                t.rec.kind = uint32_t(inet->kind);
                t.path.clear();  // "socket:[N]" names nothing a restore could open
                t.inet = std::move(*inet);
            }
        } else {
            return make_error(EBUSY, strfmt("fd {}: {} ({}) not supported yet", fd,
                                            kind_name(st.st_mode), t.path));
        }
        t.rec.path_len = uint32_t(t.path.size());
        out.push_back(std::move(t));
    }
    return out;
}

}  // namespace crfs
