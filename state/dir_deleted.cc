// A removed directory still held open (`mkdir d; fd = open(d, O_DIRECTORY);
// rmdir d`): a build's temp dir removed under a long-running tool, a dirfd
// kept for openat. rmdir needs the directory empty and nothing can be made in
// it afterwards (ENOENT), so it is an empty directory with no name: the image
// holds its fd record only (fd kind 39: parent path, mode, flags, offset,
// mtime), and the restore makes it again, as the writer, in the directory it
// lived in: a fresh directory there (of its old name when that is free, else
// of a unique one), opened with the original flags, removed, given the original owner, mode and
// mtime and seeked to the offset, and that very description dup'd into the task
// (FdAction::prepared). A parent that is gone, or that the writer may not
// write to, fails the restore with the kernel's error; never another place.
//
// Exact: the fd is a directory with nlink 0; getdents, openat(fd, "x",
// O_CREAT) and mkdirat fail ENOENT as before; flags, offset (the original's
// getdents cookie, taken back by lseek on the same file system), mode, owner
// and mtime the same. Not kept, as for any file crfs makes (deleted files:
// state/file_deleted.cc): the inode number, atime, ctime, the parent's mtime
// and ctime (the restore's mkdir and rmdir in it), and, when its old name is
// taken again in the parent, the name /proc/PID/fd/N shows (".crfs-deldir-...
// (deleted)", as a deleted file's copy shows "#INODE (deleted)").
//
// Reasons: owned by someone else than the task's fsuid:fsgid (the new one is
// the writer's, as a deleted file's copy); its parent gone or on another file
// system now. A second open file description of it in the task is opened
// again from the first fd's (state/file_reopen.cc, kind 40), as for two
// members of a tree (state/tree_share.cc); one at an offset (read before the
// rmdir) is opened and seeked here with the first, before the rmdir, a later
// tree member's too (share39: state/fs_tree.cc later_at_offset).
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstring>

#include "checkpoint/files.h"
#include "common/strfmt.h"
#include "restorer/files.h"
#include "state/dir_deleted.h"
#include "state/file_kind.h"
#include "state/fs.h"

namespace crfs::state {
namespace {

constexpr std::string_view kDeleted = " (deleted)";
constexpr uint32_t kOLargefile = 0100000;  // the kernel's (glibc defines it 0 here)
// What fdinfo can show for a directory (O_RDONLY: directories are not opened
// for writing); the directory kind's (state/dirfd.cc).
constexpr uint32_t kFlags =
    O_DIRECTORY | kOLargefile | O_NONBLOCK | O_NOATIME | O_NOFOLLOW | O_SYNC | O_DSYNC | FASYNC;

bool match(const FdView& f) {
    return S_ISDIR(f.st.st_mode) && f.st.st_nlink == 0 && !(f.info.flags & O_PATH) &&
           f.link.starts_with("/") && f.link.ends_with(kDeleted);
}

std::string name_of(const FdView& f) {
    return f.link.substr(0, f.link.size() - kDeleted.size());
}

// The directory of an absolute path ("/a/b" -> "/a", "/b" -> "/").
std::string dir_of(const std::string& path) {
    size_t slash = path.rfind('/');
    return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

std::string not_yet(std::string what) {
    return what + "; such a directory" + std::string(kNotYet);
}

std::optional<std::string> detect(TaskView& t, const FdView& f) {
    std::string name = name_of(f);
    if (auto why = removed_dir_reason(t, name, f.st)) return why;
    // Another description of it in the task (a dup shares this one): opened again
    // from the first (state/file_reopen.cc), at offset 0 only.
    return later_description(t, f, "deleted directory " + name, image::FdKind::kDeletedDir);
}

Status dump(pid_t pid, const FdView& f, TaskFd& t) {
    t.path = name_of(f);       // flags, offset, mode, mtime: the fd record has them
    reopened_dump(pid, f, t);  // a later description: kind 40, opened again from the first
    return {};
}

Status bad(const FdEntry& f, const std::string& what) {
    return make_error(EINVAL, strfmt("image field out of range: fd {}: {}", f.rec.fd, what));
}

Status check(const FdEntry& f, const DecodedImage&) {
    const auto& r = f.rec;
    if (!plain_path(f.path)) return bad(f, "deleted directory path with an empty, . or .. name");
    if (auto why = bad_removed_dir_mode(r.mode)) return bad(f, *why);
    if (r.open_flags & ~kFlags)
        return bad(f, strfmt("deleted directory open flags 0{:o}", r.open_flags));
    if (r.mtime_nsec < 0 || r.mtime_nsec >= 1000000000)
        return bad(f, strfmt("deleted directory mtime nanoseconds {}", r.mtime_nsec));
    return {};
}

Status plan(const FdEntry& f, FilePlanIn& in, FdAction& a) {
    RemovedDir d{f.path,          f.rec.mode,       int(f.rec.open_flags),    f.rec.pos,
                 f.rec.mtime_sec, f.rec.mtime_nsec, strfmt("fd {}", f.rec.fd)};
    // deltwice: its later descriptions at an offset (kind 40, checked), made with it.
    std::vector<int> later_fds;
    for (const FdEntry& e : in.img.fds)
        if (e.rec.kind == uint32_t(image::FdKind::kReopened) && e.rec.same_as < 0 &&
            image::reopened_first(e.rec) == uint64_t(f.rec.fd) && e.rec.pos) {
            d.later.emplace_back(int(e.rec.open_flags), e.rec.pos);
            later_fds.push_back(e.rec.fd);
        }
    // share39: the later members' (share-fd end 4) at an offset, after those.
    std::vector<std::pair<uint32_t, int>> keys;
    if (in.tree) {
        auto k = later_at_offset(*in.tree, in.index, in.img, f.rec.fd, d.later);
        if (!k) return std::unexpected(k.error());
        keys = std::move(*k);
    }
    std::vector<UniqueFd> laters;
    auto made = make_removed_dir(d, in.img.creds, &laters);
    if (!made) return std::unexpected(made.error());
    int hi = fcntl(made->get(), F_DUPFD_CLOEXEC, in.min_fd);
    if (hi < 0) return errno_error("dup of the deleted directory");
    in.copies.emplace_back(hi);
    std::vector<int> theirs;
    for (size_t i = 0; i < laters.size(); ++i) {
        int l = fcntl(laters[i].get(), F_DUPFD_CLOEXEC, in.min_fd);
        if (l < 0) return errno_error("dup of the deleted directory");
        in.copies.emplace_back(l);
        if (i < later_fds.size())
            in.early.emplace_back(later_fds[i], l);
        else
            theirs.push_back(l);
    }
    if (in.tree) keep_early(*in.tree, in.index, keys, theirs);
    a.type = S_IFDIR;
    a.prepared = hi;  // its flags and offset set here
    a.seek = false;
    return {};
}

}  // namespace

std::optional<std::string> removed_dir_reason(TaskView& t, const std::string& name,
                                              const struct stat& st) {
    std::string dir = dir_of(name);
    auto status = t.status();
    if (status && (st.st_uid != (*status)->uid[3] || st.st_gid != (*status)->gid[3]))
        return not_yet(strfmt("deleted directory {} owned by {}:{}, not by the task's fsuid:fsgid",
                              name, st.st_uid, st.st_gid));
    struct stat parent {};
    if (::stat(dir.c_str(), &parent) != 0 || !S_ISDIR(parent.st_mode))
        return not_yet(
            strfmt("deleted directory {}: the directory it lived in, {}, is gone", name, dir));
    if (parent.st_dev != st.st_dev)
        return not_yet(
            strfmt("deleted directory {}: the directory it lived in, {}, is now on "
                   "another file system",
                   name, dir));
    return std::nullopt;
}

bool plain_path(const std::string& p) {
    if (p.size() < 2 || p.size() >= PATH_MAX || p[0] != '/' || p.back() == '/') return false;
    for (size_t at = 1; at <= p.size();) {
        size_t end = p.find('/', at);
        if (end == std::string::npos) end = p.size();
        std::string_view part(p.data() + at, end - at);
        if (part.empty() || part == "." || part == ".." || part.size() > NAME_MAX) return false;
        at = end + 1;
    }
    return true;
}

std::optional<std::string> bad_removed_dir_mode(uint32_t mode) {
    if (!S_ISDIR(mode) || (mode & ~uint32_t(S_IFMT | 07777)))
        return strfmt("deleted directory mode 0{:o}", mode);
    return std::nullopt;
}

namespace {

// A name no one uses in `parent`, made as a directory: the original's when it
// is free (the fd's /proc link then reads as before), else ".crfs-deldir-<random>".
Result<std::string> make_unique_dir(int parent, const RemovedDir& d, const std::string& dir) {
    std::string name = d.path.substr(d.path.rfind('/') + 1);
    for (int tries = 0; tries < 64; ++tries) {
        if (tries) {
            uint64_t r = 0;
            if (getrandom(&r, sizeof r, 0) != sizeof r) return errno_error("getrandom");
            name = strfmt(".crfs-deldir-{:016x}", r);
        }
        if (::mkdirat(parent, name.c_str(), 0700) == 0) return name;
        if (errno != EEXIST)
            return errno_error(
                strfmt("{}: mkdir in {} (the deleted directory lived there)", d.what, dir));
    }
    return make_error(EEXIST, strfmt("{}: no free name in {}", d.what, dir));
}

}  // namespace

Result<UniqueFd> make_removed_dir(const RemovedDir& d, const image::CredsRecord& creds,
                                  std::vector<UniqueFd>* later) {
    std::string dir = dir_of(d.path);
    int p = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (p < 0)
        return errno_error(strfmt("{}: open {} (the deleted directory lived there)", d.what, dir));
    UniqueFd parent(p);
    auto name = make_unique_dir(p, d, dir);
    if (!name) return std::unexpected(name.error());
    int fd = ::openat(p, name->c_str(), d.flags | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        ::unlinkat(p, name->c_str(), AT_REMOVEDIR);
        return make_error(e, strfmt("{}: open of the new directory in {}", d.what, dir));
    }
    UniqueFd out(fd);
    // Before the rmdir: a removed ext4 directory has size 0 and lseek takes no
    // hash cookie any more (EINVAL); the task's offset was set before its rmdir too.
    if (d.pos && ::lseek(fd, off_t(d.pos), SEEK_SET) != off_t(d.pos)) {
        int e = errno;
        ::unlinkat(p, name->c_str(), AT_REMOVEDIR);
        return make_error(e, strfmt("{}: seek of the deleted directory", d.what));
    }
    // deltwice: a later description at an offset, opened and seeked as the first.
    std::vector<UniqueFd> laters;
    for (const auto& [flags, pos] : d.later) {
        UniqueFd o(::openat(p, name->c_str(), flags | O_NOCTTY | O_CLOEXEC));
        if (!o || ::lseek(o.get(), off_t(pos), SEEK_SET) != off_t(pos)) {
            int e = errno;
            ::unlinkat(p, name->c_str(), AT_REMOVEDIR);
            return make_error(e, strfmt("{}: another description of the deleted directory at "
                                        "offset {}",
                                        d.what, pos));
        }
        laters.push_back(std::move(o));
    }
    if (::unlinkat(p, name->c_str(), AT_REMOVEDIR) != 0)
        return errno_error(strfmt("{}: rmdir of the new directory in {}", d.what, dir));
    // The one removed must be the one opened (a writable parent's other users
    // could have swapped the name), and is given the original's owner, mode, mtime.
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_nlink != 0)
        return make_error(ESTALE, strfmt("{}: the directory made in {} is not the one "
                                         "removed",
                                         d.what, dir));
    for (const UniqueFd& o : laters) {
        struct stat ost {};
        if (::fstat(o.get(), &ost) != 0 || ost.st_ino != st.st_ino || ost.st_dev != st.st_dev)
            return make_error(ESTALE, strfmt("{}: another description made in {} is not of the "
                                             "directory removed",
                                             d.what, dir));
    }
    if ((st.st_uid != creds.uid[3] || st.st_gid != creds.gid[3]) &&
        ::fchown(fd, creds.uid[3], creds.gid[3]) != 0)
        return errno_error(strfmt("{}: chown of the deleted directory to {}:{}", d.what,
                                  creds.uid[3], creds.gid[3]));
    const struct timespec times[2] = {{0, UTIME_OMIT}, {d.mtime_sec, d.mtime_nsec}};
    if (::fchmod(fd, d.mode & 07777) != 0 || ::futimens(fd, times) != 0)
        return errno_error(strfmt("{}: chmod/utimes of the deleted directory", d.what));
    // The kernel drops a set-group-ID bit the writer may not set: not the original's.
    if (::fstat(fd, &st) != 0 || (st.st_mode & 07777) != (d.mode & 07777))
        return make_error(EPERM, strfmt("{}: the deleted directory's mode is 0{:o}, not 0{:o}",
                                        d.what, st.st_mode & 07777, d.mode & 07777));
    if (later) *later = std::move(laters);
    return out;
}

const FileKind kDeletedDirKind = {
    image::FdKind::kDeletedDir, "deleted directory", match, detect, dump, check, plan, kFlags};

}  // namespace crfs::state
