#include "fs/reasons.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <map>
#include <memory>

#include "common/io.h"
#include "fs/tasks.h"

namespace crfs::fs {
namespace {

constexpr std::string_view kNotYet = " not supported yet";

// Names of anon inodes as the kernel spells them in fd links.
struct AnonKind {
    std::string_view link;
    std::string_view name;
};
constexpr AnonKind kAnonKinds[] = {
    {"anon_inode:[eventfd]", "eventfd"},         {"anon_inode:[eventpoll]", "epoll"},
    {"anon_inode:[timerfd]", "timerfd"},         {"anon_inode:[signalfd]", "signalfd"},
    {"anon_inode:inotify", "inotify"},           {"anon_inode:[fanotify]", "fanotify"},
    {"anon_inode:[io_uring]", "io_uring"},       {"anon_inode:[pidfd]", "pidfd"},
    {"anon_inode:[userfaultfd]", "userfaultfd"}, {"anon_inode:bpf-map", "BPF map"},
    {"anon_inode:bpf-prog", "BPF program"},      {"anon_inode:[perf_event]", "perf event"},
};

std::optional<uint64_t> bracketed_inode(std::string_view target, std::string_view prefix) {
    if (!target.starts_with(prefix) || !target.ends_with("]")) return std::nullopt;
    std::string_view num = target.substr(prefix.size(), target.size() - prefix.size() - 1);
    uint64_t ino = 0;
    auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), ino);
    if (ec != std::errc() || p != num.data() + num.size()) return std::nullopt;
    return ino;
}

// Socket descriptions of one task's network namespace, read on first use.
class SocketTable {
  public:
    explicit SocketTable(pid_t pid) : pid_(pid) {}
    std::optional<std::string> find(uint64_t inode) {
        if (!loaded_) load();
        auto it = by_inode_.find(inode);
        if (it == by_inode_.end()) return std::nullopt;
        return it->second;
    }

  private:
    void load() {
        loaded_ = true;
        std::string base = "/proc/" + std::to_string(pid_) + "/net/";
        auto add = [&](const char* file, auto parse) {
            auto text = read_file(base + file);
            if (!text) return;
            for (auto& s : parse(*text)) by_inode_.emplace(s.inode, std::move(s.description));
        };
        add("tcp", [](auto& t) { return parse_net_inet(t, "TCP", true); });
        add("tcp6", [](auto& t) { return parse_net_inet(t, "TCPv6", true); });
        add("udp", [](auto& t) { return parse_net_inet(t, "UDP", false); });
        add("udp6", [](auto& t) { return parse_net_inet(t, "UDPv6", false); });
        add("udplite", [](auto& t) { return parse_net_inet(t, "UDP-Lite", false); });
        add("raw", [](auto& t) { return parse_net_inet(t, "raw IP", false); });
        add("raw6", [](auto& t) { return parse_net_inet(t, "raw IPv6", false); });
        add("unix", [](auto& t) { return parse_net_unix(t); });
        add("netlink", [](auto& t) { return parse_net_simple(t, "netlink", 9); });
        add("packet", [](auto& t) { return parse_net_simple(t, "packet", 8); });
    }

    pid_t pid_;
    bool loaded_ = false;
    std::map<uint64_t, std::string> by_inode_;
};

}  // namespace

std::optional<std::string> fd_reason(
    std::string_view target, mode_t mode,
    const std::function<std::optional<std::string>(uint64_t inode)>& socket_info) {
    if (auto ino = bracketed_inode(target, "socket:[")) {
        auto desc = socket_info(*ino);
        return (desc ? *desc : "socket (family unknown)") + std::string(kNotYet);
    }
    if (bracketed_inode(target, "pipe:[")) return "pipe" + std::string(kNotYet);
    for (auto& k : kAnonKinds)
        if (target == k.link) return std::string(k.name) + std::string(kNotYet);
    if (target.starts_with("anon_inode:"))
        return "anonymous inode " + std::string(target.substr(11)) + std::string(kNotYet);
    if (S_ISREG(mode) || S_ISCHR(mode)) return std::nullopt;
    std::string what = S_ISDIR(mode)    ? "directory"
                       : S_ISBLK(mode)  ? "block device"
                       : S_ISFIFO(mode) ? "FIFO"
                       : S_ISSOCK(mode) ? "socket"
                       : S_ISLNK(mode)  ? "symbolic link (O_PATH)"
                                        : "file of unknown type";
    return what + " " + std::string(target) + std::string(kNotYet);
}

std::vector<std::string> task_reasons(const ProcStat& stat, const ProcStatus& status,
                                      pid_t tracer_tgid, pid_t self_tgid) {
    std::vector<std::string> out;
    if (stat.flags & kPfKthread) out.push_back("task: kernel thread");
    if (stat.state == 'Z' || stat.state == 'X')
        out.push_back("task: zombie (exited, not yet reaped by its parent)");
    if (status.tracer_pid != 0 && tracer_tgid != self_tgid)
        out.push_back("task: being traced by pid " + std::to_string(tracer_tgid));
    if (status.threads > 1)
        out.push_back("task: " + std::to_string(status.threads) +
                      " threads; multi-threaded processes" + std::string(kNotYet));
    return out;
}

Result<std::vector<std::string>> detect_reasons(pid_t pid, pid_t self_tgid) {
    auto stat = read_stat(pid);
    if (!stat) return std::unexpected(stat.error());
    auto status = read_status(pid);
    if (!status) return std::unexpected(status.error());
    // TracerPid names the tracing thread; the daemon traces from worker threads.
    pid_t tracer_tgid = status->tracer_pid;
    if (tracer_tgid != 0) tracer_tgid = tgid_of(tracer_tgid).value_or(tracer_tgid);
    std::vector<std::string> out = task_reasons(*stat, *status, tracer_tgid, self_tgid);
    if ((stat->flags & kPfKthread) || stat->state == 'Z' || stat->state == 'X') return out;

    std::string fd_dir = "/proc/" + std::to_string(pid) + "/fd";
    auto dir_fd = open_fd(fd_dir, O_RDONLY | O_DIRECTORY);
    if (!dir_fd) {
        if (dir_fd.error().code == ENOENT) return sys_error(ESRCH, "task " + std::to_string(pid));
        return std::unexpected(dir_fd.error());
    }
    std::unique_ptr<DIR, int (*)(DIR*)> dir(::fdopendir(dir_fd->get()), ::closedir);
    if (!dir) return errno_error("fdopendir " + fd_dir);
    int dfd = dir_fd->release();  // now owned by `dir`

    std::vector<std::pair<int, std::string>> fd_lines;
    SocketTable sockets(pid);
    while (dirent* de = ::readdir(dir.get())) {
        int fd = 0;
        std::string_view name(de->d_name);
        auto [p, ec] = std::from_chars(name.data(), name.data() + name.size(), fd);
        if (ec != std::errc() || p != name.data() + name.size()) continue;
        char target[4096];
        ssize_t n = ::readlinkat(dfd, de->d_name, target, sizeof target - 1);
        if (n < 0) continue;  // closed meanwhile
        struct stat st {};
        if (::fstatat(dfd, de->d_name, &st, 0) < 0) continue;
        auto r = fd_reason(std::string_view(target, static_cast<size_t>(n)), st.st_mode,
                           [&](uint64_t ino) { return sockets.find(ino); });
        if (r) fd_lines.emplace_back(fd, "fd " + std::to_string(fd) + ": " + *r);
    }
    std::sort(fd_lines.begin(), fd_lines.end());
    for (auto& [fd, line] : fd_lines) out.push_back(std::move(line));
    return out;
}

}  // namespace crfs::fs
