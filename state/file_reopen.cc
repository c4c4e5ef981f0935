// Another open file description, in one process, of an object with no name
// (deltwice, fd kind 40): a deleted file the task opened twice before it was
// unlinked (a log reopened after rotation deleted it, a temp file opened once
// O_RDONLY and once O_WRONLY), or a removed directory opened twice before its
// rmdir. Restored as each description's own object they would be two; so the
// object is made once, for its first fd, and every later description is
// opened again from that fd, as two members of a tree do (docs/trees.md
// "Objects with no name opened by two members", state/tree_share_restore.cc).
//
//   detect   a later description's own reasons (below); the object's are its
//            kind's, given for every fd of it (state/file_deleted.cc,
//            state/dir_deleted.cc)
//   dump     the lowest fd of the object (the first) is its kind's record, as
//            for one description; the lowest fd of each later description is
//            kind 40 naming the first (FdRecord.rdev) with its own open flags
//            and offset; its dups stay dups of it (same_as)
//   check    the first: an earlier fd record, its own description, of a deleted
//            file, removed directory or memfd (kinds 2, 39, 36; 43: a tree
//            member's removed cwd) of the same inode; flags the reopen gives
//            (state/tree_share.h reopen_flags: a directory's at an offset,
//            opened by its name, O_NOFOLLOW too)
//   restore  stage 1, once the first is in place (fds are made in image order,
//            the first is earlier): open(/proc/self/fd/FIRST, flags) with the
//            task's ids (the kernel checks the access mode against the object,
//            as for the task's own open), checked to be the first's inode
//            (ESTALE), seeked to its offset. Two are made by the daemon with
//            their first instead (FilePlanIn::early, FdAction::prepared): a
//            removed directory's at an offset (opened and seeked before the
//            rmdir: ext4's lseek takes no getdents cookie after it; a kind
//            43's by the restore of the member whose cwd it is, taken by
//            state/fs_tree.cc plan_deleted_cwd: fdshare), and the
//            O_TMPFILE description of an O_TMPFILE file whose first was
//            opened through /proc/self/fd (the file is made by it, and the
//            first opened again from it: state/file_deleted.cc)
//
// Reasons: flags an open cannot give (FASYNC; O_NOFOLLOW on a directory at
// offset 0, which refuses the link), access mode 3. A memfd's descriptions are the memfd kind's
// (state/memfd.cc reopens each from its record); a kind 40 naming a memfd is
// restored the same way.
#include <dirent.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <cstring>

#include "checkpoint/files.h"
#include "common/strfmt.h"
#include "restorer/child.h"
#include "restorer/files.h"
#include "state/check.h"
#include "state/file_kind.h"
#include "state/kcmp_cache.h"
#include "state/tree_share.h"

namespace crfs::state {
namespace {

using K = image::FdKind;
constexpr uint32_t kTmpfileBit = O_TMPFILE & ~O_DIRECTORY;  // the kernel's __O_TMPFILE

bool reopenable(uint32_t kind) {
    return kind == uint32_t(K::kDeleted) || kind == uint32_t(K::kDeletedDir) ||
           kind == uint32_t(K::kMemfd) || kind == uint32_t(K::kTreeCwdDir);
}

// The fd record of fd `fd` recorded before `f`, or null.
const FdEntry* earlier_record(const DecodedImage& img, const FdEntry& f, uint64_t fd) {
    for (const FdEntry& e : img.fds) {
        if (&e == &f) break;
        if (uint64_t(e.rec.fd) == fd) return &e;
    }
    return nullptr;
}

bool match(const FdView&) {
    return false;  // the deleted file and directory kinds dump it (reopened_dump)
}

std::optional<std::string> detect(TaskView&, const FdView&) {
    return std::nullopt;
}

Status dump(pid_t, const FdView& f, TaskFd&) {
    return make_error(EINVAL, strfmt("fd {}: kind 40 is dumped by its object's kind", f.fd));
}

Status check(const FdEntry& f, const DecodedImage& img) {
    const auto& r = f.rec;
    uint64_t at = image::reopened_first(r);
    const FdEntry* first = at < uint64_t(r.fd) ? earlier_record(img, f, at) : nullptr;
    if (!first || first->rec.same_as != -1 || !reopenable(first->rec.kind) ||
        first->rec.dev != r.dev || first->rec.ino != r.ino || first->rec.mode != r.mode)
        return check::bad(strfmt(
            "fd {}: opened again from fd {}, which is no earlier fd of its own description of "
            "a deleted file, directory or memfd of its inode",
            r.fd, at));
    uint32_t flags = reopen_flags(first->rec.kind, r.pos);  // fdshare: O_NOFOLLOW early
    bool dir = S_ISDIR(first->rec.mode);
    // The O_TMPFILE description of an O_TMPFILE file whose first is not: made
    // first (state/file_deleted.cc), with both bits and write access, only one.
    if (r.open_flags & kTmpfileBit) {
        bool one = true;
        for (const FdEntry& e : img.fds)
            one = one && (&e == &f || e.rec.same_as >= 0 || e.rec.kind != uint32_t(K::kReopened) ||
                          image::reopened_first(e.rec) != at || !(e.rec.open_flags & kTmpfileBit));
        if (first->rec.kind != uint32_t(K::kDeleted) || (first->rec.open_flags & kTmpfileBit) ||
            (r.open_flags & O_TMPFILE) != O_TMPFILE || (r.open_flags & O_ACCMODE) == O_RDONLY ||
            !one)
            return check::bad(
                strfmt("fd {}: opened again from fd {} with O_TMPFILE (open flags 0{:o})", r.fd, at,
                       r.open_flags));
        flags |= O_TMPFILE;
    }
    // A directory's offset: opened before the rmdir by its first's kind 39, or
    // by the restore of the tree member whose cwd its first's kind 43 names
    // (fdshare: state/fs_tree.cc).
    if ((r.open_flags & ~flags) || (r.open_flags & O_ACCMODE) == O_ACCMODE ||
        r.pos > uint64_t(INT64_MAX) ||
        (dir && r.pos && first->rec.kind != uint32_t(K::kDeletedDir) &&
         first->rec.kind != uint32_t(K::kTreeCwdDir)))
        return check::bad(strfmt("fd {}: opened again from fd {} with open flags 0{:o}, offset {}",
                                 r.fd, at, r.open_flags, r.pos));
    return {};
}

Status plan(const FdEntry& f, FilePlanIn& in, FdAction& a) {
    const FdEntry* first = earlier_record(in.img, f, image::reopened_first(f.rec));  // check
    if (!first) return make_error(EINVAL, strfmt("fd {}: no first fd", f.rec.fd));
    a.type = S_ISDIR(first->rec.mode) ? S_IFDIR : S_IFREG;
    // fdshare: a kind 43's at an offset is opened by the restore of the member
    // whose cwd it is, before its rmdir, and taken by plan_deleted_cwd.
    if (a.type == S_IFDIR && f.rec.pos && first->rec.kind == uint32_t(K::kTreeCwdDir)) {
        a.seek = false;
        return {};
    }
    // Made with the first: a directory's at an offset (before its rmdir), the
    // O_TMPFILE description of an O_TMPFILE file.
    if ((a.type == S_IFDIR && f.rec.pos) || (f.rec.open_flags & kTmpfileBit)) {
        for (const auto& [target, fd] : in.early)
            if (target == f.rec.fd) {
                a.prepared = fd;
                a.seek = false;
                return {};
            }
        return make_error(EINVAL, strfmt("fd {}: not made with fd {}", f.rec.fd, first->rec.fd));
    }
    a.reopen_of = first->rec.fd;
    a.seek = f.rec.pos != 0;
    return {};
}

}  // namespace

const FileKind kReopenedKind = {
    K::kReopened, "reopened", match, detect,
    dump,         check,      plan,  kTmpfileBit};  // its check vouches for an O_TMPFILE one

std::optional<int> first_fd_of_inode(pid_t pid, const FdView& f) {
    std::string dir = strfmt("/proc/{}/fd", pid);
    DIR* d = opendir(dir.c_str());
    if (!d) return std::nullopt;
    std::optional<int> first;
    while (dirent* e = readdir(d)) {
        int fd = -1;
        auto [p, ec] = std::from_chars(e->d_name, e->d_name + std::strlen(e->d_name), fd);
        if (ec != std::errc() || *p != '\0' || fd >= f.fd || (first && fd >= *first)) continue;
        struct stat st {};
        if (::stat(strfmt("{}/{}", dir, fd).c_str(), &st) == 0 && st.st_ino == f.st.st_ino &&
            st.st_dev == f.st.st_dev)
            first = fd;
    }
    closedir(d);
    return first;
}

bool reopened_dump(pid_t pid, const FdView& f, TaskFd& t) {
    auto first = first_fd_of_inode(pid, f);  // f leads its description: first is another
    if (!first) return false;
    t.rec.kind = uint32_t(K::kReopened);
    t.rec.rdev = uint64_t(*first);
    t.content.clear();
    return true;
}

std::optional<std::string> later_description(TaskView& t, const FdView& f, const std::string& what,
                                             image::FdKind kind) {
    auto fds = t.fds();
    if (!fds) return std::nullopt;  // the fd table's own read reports it
    const FdView* first = nullptr;
    for (const FdView& o : **fds)
        if (o.fd < f.fd && o.st.st_ino == f.st.st_ino && o.st.st_dev == f.st.st_dev) {
            first = &o;
            break;  // sorted: the lowest
        }
    if (!first) return std::nullopt;
    int r = t.kcmp()->order(KCMP_FILE, kcmp_fd(t.pid(), first->fd), kcmp_fd(t.pid(), f.fd));
    if (r == 0 || r == -EBADF || r == -ESRCH) return std::nullopt;  // a dup; closed: next read
    if (r < 0)
        return strfmt(
            "{}: cannot tell whether fd {} holds the same open file description (kcmp): {}", what,
            first->fd, std::strerror(-r));
    uint32_t flags = f.info.flags & ~uint32_t(O_CLOEXEC);
    // The O_TMPFILE description of an O_TMPFILE file, later than one opened
    // through /proc/self/fd: the file is made by it (state/file_deleted.cc).
    if (kind == K::kDeleted && (flags & kTmpfileBit) && !(first->info.flags & kTmpfileBit))
        flags &= ~uint32_t(O_TMPFILE);
    std::string another =
        strfmt("{}, another open file description of it than fd {}'s,", what, first->fd);
    if ((flags & ~reopen_flags(uint32_t(kind), f.info.pos)) || (flags & O_ACCMODE) == O_ACCMODE)
        return strfmt(
            "{} has open flags 0{:o}, which an open of it through /proc/self/fd "
            "cannot give; such a description{}",
            another, flags, kNotYet);
    return std::nullopt;
}

int reopen_self(int fd, int flags) {
    char path[32] = "/proc/self/fd/";
    auto [end, ec] = std::to_chars(path + 14, path + sizeof path - 1, fd);
    *end = '\0';
    struct stat want {
    }, got{};
    if (::fstat(fd, &want) != 0) return -errno;
    int out = ::open(path, flags | O_CLOEXEC);
    if (out < 0) return -errno;
    if (::fstat(out, &got) == 0 && got.st_ino == want.st_ino && got.st_dev == want.st_dev)
        return out;
    ::close(out);
    return -ESTALE;
}

int reopen_open(const FdAction& a, int status_fd) {
    int fd = reopen_self(a.reopen_of, a.open_flags);
    if (fd == -ESTALE) child_fail(status_fd, CRFS_RA_STEP_REOPEN_OTHER, ESTALE, uint64_t(a.target));
    if (fd < 0) child_fail(status_fd, CRFS_RA_STEP_REOPEN, -fd, uint64_t(a.target));
    return fd;
}

std::string reopen_step_text(const DecodedImage& img, uint32_t step, int fd) {
    std::string first = "an earlier fd", object = "object";
    for (const FdEntry& f : img.fds)
        if (f.rec.fd == fd && f.rec.kind == uint32_t(K::kReopened)) {
            first = strfmt("fd {}", image::reopened_first(f.rec));
            object = S_ISDIR(f.rec.mode) ? "deleted directory" : "deleted file or memfd";
        }
    if (step == CRFS_RA_STEP_REOPEN_OTHER)
        return strfmt("fd {}, opened again through /proc/self/fd of {}, is another file", fd,
                      first);
    return strfmt(
        "opening fd {} again through /proc/self/fd of {}, as another open file "
        "description of its {}",
        fd, first, object);
}

}  // namespace crfs::state
