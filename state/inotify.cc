// inotify: each watch by path and mask, in wd order.
//
// fdinfo names a watched inode (ino, sdev, and a file handle), not a path.
// Turning the handle into a path needs open_by_handle_at (CAP_DAC_READ_SEARCH):
// a root lookup on the caller's behalf, so crfs does not. It looks for the
// inode among the paths the task itself holds (its fds, cwd, exe, and the
// directories above them), each stat'ed with the caller's credentials, as
// detect and dump run: `tail -f` watches the file it has open and its
// directory. A watch not found there is a reason naming its inode.
// Restore adds each watch by that path as the writer (the kernel decides),
// in wd order, and checks it gets the same wd: wds with gaps (a watch removed
// since) are a reason. Queued events (FIONREAD on the task's own file through
// pidfd_getfd) are a reason: they cannot be queued again.
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "checkpoint/files.h"
#include "common/strfmt.h"
#include "common/unique_fd.h"
#include "state/kobj.h"

namespace crfs::state {
namespace {

// The bits of an inotify mark fdinfo can show (events and IN_ONESHOT, IN_EXCL_UNLINK, ...).
constexpr uint32_t kMask =
    IN_ALL_EVENTS | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK | IN_ONESHOT;
constexpr uint32_t kFlags = O_ACCMODE | O_NONBLOCK;

struct Watch {
    int wd;
    uint32_t mask;
    dev_t dev;
    ino_t ino;
    std::string path;
};

bool match(const FdView& f) {
    return f.link == "anon_inode:inotify";
}

Result<std::vector<Watch>> parse(std::string_view text) {
    std::vector<Watch> out;
    for (const std::string& line : fdinfo_lines(text, "inotify ")) {
        unsigned wd = 0, sdev = 0, mask = 0, ignored = 0;
        unsigned long ino = 0;
        if (std::sscanf(line.c_str(), "inotify wd:%x ino:%lx sdev:%x mask:%x ignored_mask:%x", &wd,
                        &ino, &sdev, &mask, &ignored) != 5 ||
            ignored || (mask & ~kMask) || wd == 0 || wd > INT32_MAX)
            return make_error(ENOTSUP, "inotify watch \"" + line + "\"" + std::string(kNotYet));
        // The kernel's dev_t: major in the bits above 20.
        out.push_back({int(wd), mask, makedev(sdev >> 20, sdev & 0xfffff), ino_t(ino), {}});
    }
    return out;
}

// Paths the task holds, and the directories above them.
std::vector<std::string> candidates(TaskView& t) {
    std::set<std::string> seen;
    std::vector<std::string> out;
    auto add = [&](std::string p) {
        while (p.starts_with("/") && seen.insert(p).second) {
            out.push_back(p);
            size_t slash = p.rfind('/');
            p = slash == 0 ? (p == "/" ? "" : "/") : p.substr(0, slash);
        }
    };
    if (auto fds = t.fds())
        for (const FdView& v : **fds)
            if (!v.link.ends_with(" (deleted)")) add(v.link);
    for (const char* link : {"cwd", "exe"}) {
        char buf[4096];
        ssize_t n = ::readlink(t.path(link).c_str(), buf, sizeof buf);
        if (n > 0) add(std::string(buf, size_t(n)));
    }
    return out;
}

// Each watch with its path, or why not.
Result<std::vector<Watch>> resolve(TaskView& t, const FdView& f) {
    auto watches = parse(f.fdinfo);
    if (!watches) return std::unexpected(watches.error());
    // fdinfo lists the newest watch first.
    std::sort(watches->begin(), watches->end(),
              [](const Watch& a, const Watch& b) { return a.wd < b.wd; });
    std::vector<std::string> paths;
    bool looked = false;
    int expect = 1;
    for (Watch& w : *watches) {
        if (w.wd != expect++)
            return make_error(ENOTSUP, strfmt("inotify with watch descriptors that have gaps "
                                              "(wd {}: a watch was removed){}",
                                              w.wd, kNotYet));
        if (!looked) paths = candidates(t), looked = true;
        for (const std::string& p : paths) {
            struct stat st {};
            if (::lstat(p.c_str(), &st) == 0 && st.st_dev == w.dev && st.st_ino == w.ino) {
                w.path = p;
                break;
            }
        }
        if (w.path.empty())
            return make_error(ENOTSUP,
                              strfmt("inotify watch {} on inode {} of device {}:{}, which is not "
                                     "a file, directory or parent the task holds open{}",
                                     w.wd, w.ino, major(w.dev), minor(w.dev), kNotYet));
    }
    // Events already queued cannot be queued again.
    UniqueFd pidfd(int(syscall(SYS_pidfd_open, t.pid(), 0)));
    UniqueFd own(pidfd ? int(syscall(SYS_pidfd_getfd, pidfd.get(), f.fd, 0)) : -1);
    int queued = 0;
    if (!own || ioctl(own.get(), FIONREAD, &queued) < 0)
        return make_error(ENOTSUP, strfmt("inotify whose queued events cannot be counted ({}){}",
                                          std::strerror(errno), kNotYet));
    if (queued)
        return make_error(ENOTSUP,
                          strfmt("inotify with {} bytes of queued events{}", queued, kNotYet));
    return watches;
}

std::optional<std::string> detect(TaskView& t, const FdView& f) {
    if (f.info.flags & ~(kFlags | O_CLOEXEC))
        return "inotify with flags " + kobj_oct(f.info.flags) + std::string(kNotYet);
    if (auto r = resolve(t, f); !r) return r.error().what;
    return std::nullopt;
}

Status dump(pid_t pid, const FdView& f, TaskFd& t) {
    TaskView view(pid, getpid());
    auto watches = resolve(view, f);
    if (!watches) return std::unexpected(watches.error().context(strfmt("fd {}", f.fd)));
    for (const Watch& w : *watches) {
        image::InotifyWatchRecord r{
            f.fd, w.wd, w.mask, uint32_t(w.path.size()), uint64_t(w.dev), uint64_t(w.ino)};
        auto rec = kobj_record(image::RecordType::kInotifyWatch, r);
        rec.second += w.path;
        t.records.push_back(std::move(rec));
    }
    return {};
}

Result<std::vector<Watch>> records(const FdEntry& f) {
    std::vector<Watch> out;
    for (const auto& [type, p] : f.kobj) {
        image::InotifyWatchRecord r;
        if (type != image::RecordType::kInotifyWatch || p.size() < sizeof r)
            return kobj_bad(f, "an inotify fd with records of another kind");
        std::memcpy(&r, p.data(), sizeof r);
        std::string path = p.substr(sizeof r);
        if (r.path_len != path.size() || path.empty() || path[0] != '/' ||
            path.find('\0') != std::string::npos)
            return kobj_bad(f, strfmt("inotify watch {}: path not absolute or holds a NUL", r.wd));
        if (r.wd != int32_t(out.size() + 1) || (r.mask & ~kMask) || !(r.mask & IN_ALL_EVENTS))
            return kobj_bad(f, strfmt("inotify watch {} (wants {}) with mask 0x{:x}", r.wd,
                                      out.size() + 1, r.mask));
        out.push_back({r.wd, r.mask, dev_t(r.dev), ino_t(r.ino), std::move(path)});
    }
    return out;
}

Status check(const FdEntry& f, const DecodedImage&) {
    if (f.rec.open_flags & ~kFlags)
        return kobj_bad(f, strfmt("inotify open flags {}", kobj_oct(f.rec.open_flags)));
    auto w = records(f);
    if (!w) return std::unexpected(w.error());
    return {};
}

Status plan(const FdEntry& f, KobjPlan& p) {
    auto watches = records(f);
    if (!watches) return std::unexpected(watches.error());
    p.flags = (f.rec.open_flags & O_NONBLOCK) ? IN_NONBLOCK : 0;
    for (Watch& w : *watches) {
        // As the writer: the path must still name the inode the task watched.
        struct stat st {};
        if (::lstat(w.path.c_str(), &st) != 0)
            return errno_error(strfmt("fd {}: inotify watch {}: {}", f.rec.fd, w.wd, w.path));
        if (st.st_dev != w.dev || st.st_ino != w.ino)
            return make_error(ESTALE, strfmt("fd {}: inotify watch {}: {} is no longer the file "
                                             "it watched",
                                             f.rec.fd, w.wd, w.path));
        p.watches.push_back({w.wd, w.mask, 0});
        p.paths.push_back(std::move(w.path));
    }
    return {};
}

int make(const KobjPlan& p, const char*, KobjFail& fail) {
    int fd = inotify_init1(p.flags | IN_CLOEXEC);
    if (fd < 0) {
        fail = {CRFS_RA_STEP_KOBJ, errno, 0};
        return -1;
    }
    for (size_t i = 0; i < p.watches.size(); ++i) {
        // IN_DONT_FOLLOW: the path found is the inode itself, a symlink included.
        int wd = inotify_add_watch(fd, p.paths[i].c_str(), p.watches[i].events | IN_DONT_FOLLOW);
        if (wd != p.watches[i].tfd) {
            fail = {CRFS_RA_STEP_INOTIFY_WATCH, wd < 0 ? errno : EBADSLT,
                    uint64_t(uint32_t(p.watches[i].tfd))};
            close(fd);
            return -1;
        }
    }
    return fd;
}

}  // namespace

const KobjKind kInotifyKind = {
    image::FdKind::kInotify, "inotify", match, detect, dump, check, plan, make, nullptr};

}  // namespace crfs::state
