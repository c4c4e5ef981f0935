// The task's fs context: cwd and umask are captured (state/task_attrs.cc)
// and restored in stage 1 (state/task_attrs.cc); a chrooted task is refused
// by the restorer (restorer/validate.cc): a reason here.
//
// A removed cwd (`mkdir d; cd d; rmdir ../d`: a shell left in a removed
// directory, a build step whose temp dir was cleaned under it) is an empty
// directory with no name, as a removed directory held open (fd kind 39,
// state/dir_deleted.cc), and is made again the same way and by the same code:
// the daemon, as the writer, makes a directory in the old parent, removes it,
// gives it the original's owner, mode and mtime, and stage 1 fchdirs to it
// (record 131 deleted-cwd: mode, mtime, the fd of the same directory).
// When the task also holds the directory as an fd (kind 39), the cwd is that
// fd's directory: one directory again, as before. Reasons: those of kind 39
// (owner, parent gone or on another file system) and an O_PATH fd of it (no
// kind makes one). In a tree, a removed cwd several members hold is made
// once (state/fs_tree.cc).
#include "state/fs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dirent.h>

#include <cstdlib>
#include <memory>

#include "common/io.h"
#include "common/strfmt.h"
#include "restorer/files.h"
#include "state/dir_deleted.h"

namespace crfs::state {
namespace {

constexpr std::string_view kDeleted = " (deleted)";

// The removed directory `link` names ("/a/d (deleted)"): its stat through
// `proc_link`, or nullopt when it is no removed directory.
std::optional<struct stat> removed_dir(const std::string& link, const std::string& proc_link) {
    struct stat st {};
    if (!link.starts_with("/") || !link.ends_with(kDeleted) ||
        ::stat(proc_link.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_nlink != 0)
        return std::nullopt;
    return st;
}

std::string strip(const std::string& link) {
    return link.substr(0, link.size() - kDeleted.size());
}

Status bad(const std::string& what) {
    return make_error(EINVAL, "image field out of range: deleted cwd: " + what);
}

}  // namespace

Status detect_fs(TaskView& t, Reasons& out) {
    auto cwd_link = t.link("cwd");
    if (!cwd_link) return std::unexpected(cwd_link.error());
    const std::string* cwd = *cwd_link;
    if (cwd->ends_with(kDeleted) || !cwd->starts_with("/")) {
        auto st = removed_dir(*cwd, t.path("cwd"));
        if (!st) {
            out.push_back("fs: cwd " + *cwd +
                          " is not a removed directory crfs can make again; "
                          "such a cwd" +
                          std::string(kNotYet));
        } else if (auto why = removed_dir_reason(t, strip(*cwd), *st)) {
            out.push_back("fs: cwd " + *why);
        } else if (auto fds = t.fds(); fds) {
            for (const FdView& f : **fds)
                if (f.st.st_dev == st->st_dev && f.st.st_ino == st->st_ino &&
                    (f.info.flags & O_PATH)) {
                    out.push_back(
                        strfmt("fs: cwd {} is also fd {}, opened O_PATH; a removed "
                               "directory held so{}",
                               *cwd, f.fd, kNotYet));
                    break;
                }
        }
    }
    auto root = t.link("root");
    if (!root) return std::unexpected(root.error());
    if (**root != "/")
        out.push_back("fs: root is " + **root + "; chrooted tasks" + std::string(kNotYet));
    return {};
}

Result<std::optional<image::DeletedCwdRecord>> dump_deleted_cwd(pid_t pid, std::string& cwd) {
    std::string proc = strfmt("/proc/{}/", pid);
    auto st = removed_dir(cwd, proc + "cwd");
    if (!st) return std::nullopt;  // detect_fs refused any other cwd that is no path
    image::DeletedCwdRecord r{st->st_mode, -1, st->st_mtim.tv_sec, st->st_mtim.tv_nsec};
    // The lowest fd of this very directory (one description: kind 39's detect).
    std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir((proc + "fd").c_str()), ::closedir);
    if (!dir) return errno_error(proc + "fd");
    while (dirent* de = ::readdir(dir.get())) {
        if (de->d_name[0] == '.') continue;
        int fd = std::atoi(de->d_name);
        struct stat fst {};
        if (::stat((proc + "fd/" + de->d_name).c_str(), &fst) == 0 && fst.st_dev == st->st_dev &&
            fst.st_ino == st->st_ino && (r.fd < 0 || fd < r.fd))
            r.fd = fd;
    }
    cwd = strip(cwd);
    return r;
}

Status check_deleted_cwd(const DecodedImage& img) {
    if (!img.deleted_cwd) return {};
    const auto& r = *img.deleted_cwd;
    if (!plain_path(img.cwd)) return bad("path with an empty, . or .. name");
    if (auto why = bad_removed_dir_mode(r.mode)) return bad(*why);
    if (r.mtime_nsec < 0 || r.mtime_nsec >= 1000000000)
        return bad(strfmt("mtime nanoseconds {}", r.mtime_nsec));
    if (r.fd < 0) return r.fd == -1 ? Status{} : bad(strfmt("fd {}", r.fd));
    for (const auto& f : img.fds)
        if (f.rec.fd == r.fd) {
            const FdEntry* first = &f;
            if (f.rec.same_as >= 0)
                for (const auto& g : img.fds)
                    if (g.rec.fd == f.rec.same_as) first = &g;
            if (first->rec.kind != uint32_t(image::FdKind::kDeletedDir) || first->path != img.cwd)
                return bad(strfmt("fd {} is no removed directory {}", r.fd, img.cwd));
            return {};
        }
    return bad(strfmt("fd {}: no such fd record", r.fd));
}

Result<int> plan_deleted_cwd(const DecodedImage& img, FdPlan& fds,
                             std::vector<std::pair<int, uint64_t>> later, std::vector<int>* early) {
    if (!img.deleted_cwd) return -1;
    const auto& r = *img.deleted_cwd;
    if (r.fd >= 0) {  // the kind 39 fd's directory (check_deleted_cwd: one is there)
        int target = r.fd;
        for (const auto& a : fds.actions)
            if (a.target == target && a.same_as >= 0) target = a.same_as;
        for (const auto& a : fds.actions)
            if (a.target == target && a.prepared >= 0) return a.prepared;
        return make_error(EINVAL, strfmt("bad image: deleted cwd: fd {} is not made", r.fd));
    }
    RemovedDir d{img.cwd,      r.mode, O_RDONLY | O_DIRECTORY, 0, r.mtime_sec,
                 r.mtime_nsec, "cwd",  std::move(later)};
    std::vector<UniqueFd> laters;
    auto made = make_removed_dir(d, img.creds, &laters);
    if (!made) return std::unexpected(made.error());
    int hi = fcntl(made->get(), F_DUPFD_CLOEXEC, fds.min_fd);
    if (hi < 0) return errno_error("dup of the removed cwd");
    fds.copies.emplace_back(hi);
    for (const UniqueFd& l : laters) {
        int e = fcntl(l.get(), F_DUPFD_CLOEXEC, fds.min_fd);
        if (e < 0) return errno_error("dup of the removed cwd");
        fds.copies.emplace_back(e);
        if (early) early->push_back(e);
    }
    return hi;
}

}  // namespace crfs::state
