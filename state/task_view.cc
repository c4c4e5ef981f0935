#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <memory>

#include "checkpoint/task_attrs.h"
#include "common/io.h"
#include "common/strfmt.h"
#include "common/unique_fd.h"
#include "state/kind.h"

#include "state/holders.h"
#include "state/kcmp_cache.h"
#include "state/sysv_tables.h"

namespace crfs::state {

std::string TaskView::path(std::string_view name) const {
    return "/proc/" + std::to_string(pid_) + "/" + std::string(name);
}

Result<std::string> TaskView::read(std::string_view name) const {
    auto r = read_file(path(name), 256 << 20);
    if (!r && r.error().code == ENOENT) return sys_error(ESRCH, path(name));
    return r;
}

pid_t TaskView::tracer_tgid(pid_t tid) const {
    auto st = read_status(tid);
    return st ? st->tgid : tid;
}

bool TaskView::traced_by_us(pid_t tid) const {
    // perf: one of our own threads (a checkpoint's tracers) without reading
    // its status: /proc/<self>/task/<tid> is there exactly while it is ours.
    if (self_tgid_ > 0 && ::access(strfmt("/proc/{}/task/{}", self_tgid_, tid).c_str(), F_OK) == 0)
        return true;
    pid_t tgid = tracer_tgid(tid);
    if (tgid == self_tgid_) return true;
    auto st = read_stat(tgid);
    return st && st->ppid == self_tgid_;
}

Result<const ProcStat*> TaskView::stat() {
    if (!stat_) {
        auto s = read_stat(pid_);
        if (!s) return std::unexpected(s.error());
        stat_ = std::move(*s);
    }
    return &*stat_;
}

Result<const ProcStatus*> TaskView::status() {
    if (!status_) {
        auto s = read_status(pid_);
        if (!s) return std::unexpected(s.error());
        status_ = std::move(*s);
    }
    return &*status_;
}

Result<const ProcStatus*> TaskView::thread_status(pid_t tid) {
    if (tid == pid_) return status();
    if (auto it = thread_status_.find(tid); it != thread_status_.end()) return &it->second;
    std::string name = strfmt("task/{}/status", tid);
    auto text = read(name);
    if (!text) return std::unexpected(text.error());
    auto s = parse_status(*text);
    if (!s) return std::unexpected(s.error().context(path(name)));
    return &thread_status_.emplace(tid, std::move(*s)).first->second;
}

Result<const std::vector<MapsEntry>*> TaskView::smaps() {
    if (smaps_taken_) return make_error(EINVAL, path("smaps") + ": taken from its view already");
    if (!smaps_) {
        // Read and parsed a piece at a time (common/procfs.h): 21 MB of text at 30,000 areas.
        auto m = read_maps(path("smaps"), 256 << 20);
        if (!m && m.error().code == ENOENT) return sys_error(ESRCH, path("smaps"));
        if (!m) return std::unexpected(m.error());
        smaps_ = std::move(*m);
    }
    return &*smaps_;
}

Result<std::vector<MapsEntry>> TaskView::take_smaps() {
    auto m = smaps();
    if (!m) return std::unexpected(m.error());
    std::vector<MapsEntry> out = std::move(*smaps_);
    smaps_.reset();
    smaps_taken_ = true;
    return out;
}

Result<const std::vector<FdView>*> TaskView::fds() {
    if (fds_) return &*fds_;
    std::string dir_path = path("fd");
    auto dir_fd = open_fd(dir_path, O_RDONLY | O_DIRECTORY);
    if (!dir_fd) {
        if (dir_fd.error().code == ENOENT) return sys_error(ESRCH, dir_path);
        return std::unexpected(dir_fd.error());
    }
    std::unique_ptr<DIR, int (*)(DIR*)> dir(::fdopendir(dir_fd->get()), ::closedir);
    if (!dir) return errno_error("fdopendir " + dir_path);
    int dfd = dir_fd->release();  // now owned by `dir`
    std::vector<FdView> out;
    while (dirent* de = ::readdir(dir.get())) {
        FdView v;
        std::string_view name(de->d_name);
        auto [p, ec] = std::from_chars(name.data(), name.data() + name.size(), v.fd);
        if (ec != std::errc() || p != name.data() + name.size()) continue;
        char target[4096];
        ssize_t n = ::readlinkat(dfd, de->d_name, target, sizeof target - 1);
        if (n < 0) continue;  // closed meanwhile
        v.link.assign(target, size_t(n));
        if (::fstatat(dfd, de->d_name, &v.st, 0) < 0) continue;
        auto info = read("fdinfo/" + std::string(name));
        if (!info) {
            if (info.error().code == ESRCH) continue;  // the fd closed meanwhile
            return std::unexpected(info.error());
        }
        v.fdinfo = std::move(*info);
        auto parsed = parse_fdinfo(v.fdinfo);
        if (!parsed) return std::unexpected(parsed.error().context(path("fdinfo/") + name.data()));
        v.info = *parsed;
        v.pid = pid_;
        out.push_back(std::move(v));
    }
    std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.fd < b.fd; });
    fds_ = std::move(out);
    return &*fds_;
}

Result<const std::string*> TaskView::timers() {
    if (!timers_) {
        auto text = read("timers");
        if (!text) return std::unexpected(text.error());
        timers_ = std::move(*text);
    }
    return &*timers_;
}

Result<const std::string*> TaskView::link(std::string_view name) {
    if (auto it = links_.find(name); it != links_.end()) return &it->second;
    std::string p = path(name);
    auto l = read_link(p);
    if (!l) return l.error().code == ENOENT ? sys_error(ESRCH, p) : std::unexpected(l.error());
    return &links_.emplace(std::string(name), std::move(*l)).first->second;
}

Result<const struct stat*> TaskView::stat_of(std::string_view name) {
    if (auto it = stats_of_.find(name); it != stats_of_.end()) return &it->second;
    std::string p = path(name);
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) return errno_error("stat " + p);
    return &stats_of_.emplace(std::string(name), st).first->second;
}

Result<const std::vector<pid_t>*> TaskView::children() {
    if (children_) return &*children_;
    std::string dir_path = path("task");
    std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(dir_path.c_str()), ::closedir);
    if (!dir) return errno == ENOENT ? sys_error(ESRCH, dir_path) : errno_error(dir_path);
    std::vector<pid_t> out;
    while (dirent* de = ::readdir(dir.get())) {
        if (de->d_name[0] == '.') continue;
        auto text = read("task/" + std::string(de->d_name) + "/children");
        if (!text) continue;  // the thread exited meanwhile
        for (const char* p = text->data(); p < text->data() + text->size();) {
            pid_t child = 0;
            auto [end, ec] = std::from_chars(p, text->data() + text->size(), child);
            if (ec == std::errc() && child > 0) out.push_back(child);
            p = ec == std::errc() ? end + 1 : p + 1;
        }
    }
    children_ = std::move(out);
    return &*children_;
}

std::shared_ptr<HolderScan> TaskView::holder_scan() {
    if (!holder_scan_) holder_scan_ = std::make_shared<HolderScan>();
    return holder_scan_;
}

std::shared_ptr<KcmpCache> TaskView::kcmp() {
    if (!kcmp_) kcmp_ = std::make_shared<KcmpCache>();
    return kcmp_;
}

std::shared_ptr<SysvTables> TaskView::sysv_tables() {
    if (!sysv_tables_) sysv_tables_ = std::make_shared<SysvTables>();
    return sysv_tables_;
}

}  // namespace crfs::state
