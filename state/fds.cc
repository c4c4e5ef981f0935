// File descriptors, one FdKind per kind of file.
//   regular file, deleted file, character device (stateless ones):
//     state/file_kind.h (file_regular.cc, file_deleted.cc, file_chardev.cc).
//   O_PATH, directory, eventfd, timerfd, signalfd, epoll, pidfd, inotify: state/kobj.h.
//   pipe: state/pipe.cc, unix socketpair: state/unix_socket.cc (detect, dump
//     and restore halves).
//   TCP and UDP sockets: state/inet.h (tcp.cc, udp.cc).
//   every other kind: refused here (not supported yet).
// Fds that share one open file description (dup, fork, `>log 2>&1`) are
// grouped here (description_groups, kcmp KCMP_FILE), saved once and restored
// by dup; sharing is no reason of its own: a description of a refused kind is
// refused through its kind, for every fd that holds it.
#include "state/fds.h"
#include "state/file_kind.h"
#include "state/kobj.h"

#include <fcntl.h>
#include <linux/kcmp.h>
#include <linux/magic.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <charconv>
#include <map>

#include "common/io.h"
#include "common/strfmt.h"
#include "state/inet.h"
#include "state/kcmp_cache.h"
#include "state/pipe.h"
#include "state/shared_desc.h"
#include "state/tree.h"
#include "state/unix_bound.h"
#include "state/unix_socket.h"

namespace crfs::state {
namespace {

std::string not_yet(std::string what) {
    return what + std::string(kNotYet);
}

std::optional<uint64_t> bracketed_inode(std::string_view target, std::string_view prefix) {
    if (!target.starts_with(prefix) || !target.ends_with("]")) return std::nullopt;
    std::string_view num = target.substr(prefix.size(), target.size() - prefix.size() - 1);
    uint64_t ino = 0;
    auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), ino);
    if (ec != std::errc() || p != num.data() + num.size()) return std::nullopt;
    return ino;
}

// Names of anon inodes as the kernel spells them in fd links.
struct AnonName {
    std::string_view link, name;
};
constexpr AnonName kAnonNames[] = {
    {"anon_inode:[eventfd]", "eventfd"},         {"anon_inode:[eventpoll]", "epoll"},
    {"anon_inode:[timerfd]", "timerfd"},         {"anon_inode:[signalfd]", "signalfd"},
    {"anon_inode:inotify", "inotify"},           {"anon_inode:[fanotify]", "fanotify"},
    {"anon_inode:[io_uring]", "io_uring"},       {"anon_inode:[pidfd]", "pidfd"},
    {"anon_inode:[userfaultfd]", "userfaultfd"}, {"anon_inode:bpf-map", "BPF map"},
    {"anon_inode:bpf-prog", "BPF program"},      {"anon_inode:[perf_event]", "perf event"},
};

bool is_socket(const FdView& f) {
    return f.link.starts_with("socket:[");
}
bool is_anon(const FdView& f) {
    return f.link.starts_with("anon_inode:");
}
bool is_procfs(const FdView& f) {
    return f.link.starts_with("/proc/");
}
bool is_pathless(const FdView& f) {
    return !f.link.starts_with("/");
}
std::optional<std::string> kobj_fd_reason(TaskView& t, const FdView& f, FdContext&) {
    return kobj_detect(t, f);
}

std::optional<std::string> socket_reason(TaskView& t, const FdView& f, FdContext& ctx) {
    if (is_unix_socket(f, ctx))  // state/unix_bound.cc, state/unix_socket.cc
        return is_unix_bound(f, ctx) ? unix_bound_reason(t, f, ctx) : unix_socket_reason(t, f, ctx);
    bool is_inet = false;  // TCP and UDP: state/inet.h
    if (auto why = inet_reason(t.pid(), f.fd, &is_inet); why || is_inet) return why;
    auto ino = bracketed_inode(f.link, "socket:[");
    auto desc = ino ? ctx.sockets.find(*ino) : std::nullopt;
    if (!desc) desc = socket_family_text(t.pid(), f.fd);  // not in a table yet (unbound)
    return not_yet(desc ? *desc : "socket (family unknown)");
}

std::optional<std::string> anon_reason(TaskView&, const FdView& f, FdContext&) {
    for (const auto& k : kAnonNames)
        if (f.link == k.link) return not_yet(std::string(k.name));
    return not_yet("anonymous inode " + f.link.substr(11));
}

std::optional<std::string> procfs_reason(TaskView&, const FdView& f, FdContext&) {
    return not_yet("file in /proc " + f.link);
}

std::optional<std::string> pathless_reason(TaskView&, const FdView& f, FdContext&) {
    return not_yet("file without a path " + f.link);
}

std::optional<std::string> file_fd_reason(TaskView& t, const FdView& f, FdContext&) {
    return file_detect(t, f);
}

constexpr FdKind kFdKinds[] = {
    {"kernel object", kobj_match, kobj_fd_reason},  // state/kobj.h: O_PATH, eventfd, memfd, ...
    {"socket", is_socket, socket_reason},
    {"pipe", is_pipe, pipe_reason},
    {"FIFO", is_fifo, fifo_reason},
    {"anon inode", is_anon, anon_reason},
    {"procfs", is_procfs, procfs_reason},
    {"pathless", is_pathless, pathless_reason},  // nsfs "net:[...]", ...
    {"file", file_match, file_fd_reason},        // state/file_kind.h: regular, deleted, device
};

std::string type_name(mode_t m) {
    return S_ISDIR(m)    ? "directory"
           : S_ISBLK(m)  ? "block device"
           : S_ISFIFO(m) ? "FIFO"
           : S_ISSOCK(m) ? "socket"
           : S_ISLNK(m)  ? "symbolic link"
                         : "file of unknown type";
}

}  // namespace

std::span<const FdKind> fd_kinds() {
    return kFdKinds;
}

std::optional<std::string> fd_reason(TaskView& t, const FdView& f, FdContext& ctx) {
    for (const FdKind& k : kFdKinds)
        if (k.match(f)) return k.detect(t, f, ctx);
    return not_yet(type_name(f.st.st_mode) + " " + f.link);
}

Result<std::vector<int>> description_groups(pid_t pid, std::span<const FdIdentity> fds,
                                            KcmpCache* cache) {
    KcmpCache own;
    KcmpCache& kcmp = cache ? *cache : own;
    std::vector<int> leader(fds.size(), -1);
    std::map<std::pair<dev_t, ino_t>, std::vector<size_t>> by_inode;
    for (size_t i = 0; i < fds.size(); ++i) by_inode[{fds[i].dev, fds[i].ino}].push_back(i);
    for (const auto& [key, group] : by_inode) {
        for (size_t j = 1; j < group.size(); ++j) {
            // Against the lowest fd of each group found so far: sharing is an equivalence.
            for (size_t i = 0; i < j; ++i) {
                if (leader[group[i]] != -1) continue;
                int a = fds[group[i]].fd, b = fds[group[j]].fd;
                int r = kcmp.order(KCMP_FILE, kcmp_fd(pid, a), kcmp_fd(pid, b));
                if (r == -ESRCH) return sys_error(ESRCH, "kcmp");
                if (r == -EBADF) continue;  // closed meanwhile
                if (r < 0)
                    return sys_error(-r,
                                     strfmt("fd {}: cannot tell whether it shares its open file "
                                            "description with fd {} (kcmp)",
                                            b, a));
                if (r == 0) {
                    leader[group[j]] = a;
                    break;
                }
            }
        }
    }
    return leader;
}

Status detect_fds(TaskView& t, Reasons& out) {
    auto fds = t.fds();
    if (!fds) return std::unexpected(fds.error());
    FdContext ctx(t);
    std::map<int, std::string> lines;
    for (const FdView& f : **fds)
        if (auto r = fd_reason(t, f, ctx)) lines[f.fd] = *r;
    // The image: a tree's members, or the task and its descendants (state/tree.h).
    std::vector<pid_t> inside = t.image_pids();
    if (inside.empty()) inside = tree_pids(t.pid());
    shared_description_reasons(t, **fds, inside, std::map(lines), ctx.holders, lines);
    for (auto& [fd, line] : lines) out.push_back("fd " + std::to_string(fd) + ": " + line);
    // Shared descriptions are captured (one record per group, restored by dup);
    // not knowing the groups is a reason, as it fails the checkpoint.
    std::vector<FdIdentity> ids;
    for (const FdView& f : **fds) ids.push_back({f.fd, f.st.st_dev, f.st.st_ino});
    if (auto groups = description_groups(t.pid(), ids, t.kcmp().get()); !groups) {
        if (groups.error().code == ESRCH) return std::unexpected(groups.error());
        out.push_back(groups.error().what);
    }
    return {};
}

}  // namespace crfs::state
