// An unlinked regular file (deleted, renamed over, or made with O_TMPFILE and
// never linked): no path can bring it back, so its content goes into the
// image (fd-data records) with the fd record's mode, and the restore makes a
// new unlinked file holding it, as the writer, owned like the task's fsuid.
//
//   deleted      the copy is made with O_TMPFILE next to where the file lived
//                (else in /tmp, else a memfd) and stage 1 reopens it through
//                /proc/self/fd with the image's flags and offset.
//   O_TMPFILE    the flag stays in the description's flags (F_GETFL shows
//                it), so the file is made again the way the task made it:
//                open(dir, O_TMPFILE | its flags) in the directory it lived in,
//                as the writer, filled, given its mode and owner and offset,
//                and that very description dup'd into the task. A directory
//                gone (or on another file system) is a reason; one the writer
//                may not write to fails the restore (the kernel decides).
//
// Reasons: larger than kMaxDeletedFileBytes, sparse (the copy is dense), owned
// by someone else than the task's fsuid/fsgid (the copy is the writer's).
// A second open file description of it in the task (opened twice before the
// unlink) is opened again from the first fd's (state/file_reopen.cc, kind 40).
// An O_TMPFILE file whose O_TMPFILE description is a later one than its
// lowest fd's (which was opened through /proc/self/fd, then moved below it
// by dup2): the file is made with that later description's flags (it goes to
// the later fd, FilePlanIn::early) and the first's is opened again from it.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "checkpoint/files.h"
#include "checkpoint/task_attrs.h"
#include "common/io.h"
#include "common/strfmt.h"
#include "restorer/files.h"
#include "state/file_kind.h"

namespace crfs::state {
namespace {

constexpr std::string_view kDeleted = " (deleted)";
constexpr uint32_t kTmpfileBit = O_TMPFILE & ~O_DIRECTORY;  // the kernel's __O_TMPFILE

bool is_tmpfile(uint32_t open_flags) {
    return open_flags & kTmpfileBit;
}

// The directory of an absolute path ("/a/b" -> "/a", "/b" -> "/").
std::string dir_of(const std::string& path) {
    size_t slash = path.rfind('/');
    return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

bool match(const FdView& f) {
    return S_ISREG(f.st.st_mode) && f.st.st_nlink == 0;  // memfds: kernel objects, matched first
}

std::string name_of(const FdView& f) {
    std::string name = f.link;
    if (name.ends_with(kDeleted)) name.resize(name.size() - kDeleted.size());
    return name;
}

std::optional<std::string> tmpfile_reason(const FdView& f, const std::string& name) {
    std::string dir = dir_of(name);
    struct stat st {};
    if (name.empty() || name[0] != '/' || ::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        return "deleted file " + name + " opened with O_TMPFILE: its directory " + dir +
               " is gone; such a file" + std::string(kNotYet);
    if (st.st_dev != f.st.st_dev)
        return "deleted file " + name + " opened with O_TMPFILE: its directory " + dir +
               " is now on another file system; such a file" + std::string(kNotYet);
    return std::nullopt;
}

std::optional<std::string> detect(TaskView& t, const FdView& f) {
    std::string name = name_of(f);
    if (is_tmpfile(f.info.flags))
        if (auto why = tmpfile_reason(f, name)) return why;
    uint64_t size = uint64_t(f.st.st_size);
    if (size > kMaxDeletedFileBytes)
        return "deleted file " + name + " of " + std::to_string(size) + " bytes is larger than " +
               std::to_string(kMaxDeletedFileBytes) + "; larger deleted files" +
               std::string(kNotYet);
    // The copy is written dense and owned by the task's fsuid/fsgid.
    if (auto fd = open_fd(t.path("fd/" + std::to_string(f.fd)), O_RDONLY); fd && size) {
        off_t hole = ::lseek(fd->get(), 0, SEEK_HOLE);
        if (hole >= 0 && uint64_t(hole) < size)
            return "sparse deleted file " + name + " (its holes would be filled)" +
                   std::string(kNotYet);
    }
    auto status = t.status();
    if (status && (f.st.st_uid != (*status)->uid[3] || f.st.st_gid != (*status)->gid[3]))
        return "deleted file " + name + " owned by " + std::to_string(f.st.st_uid) + ":" +
               std::to_string(f.st.st_gid) + ", not by the task's fsuid:fsgid" +
               std::string(kNotYet);
    // Opened twice (not dup'd): the later description opened again from the first
    // (state/file_reopen.cc), unless its flags say it cannot be.
    return later_description(t, f, "deleted file " + name, image::FdKind::kDeleted);
}

Status dump(pid_t pid, const FdView& f, TaskFd& t) {
    t.path = name_of(f);
    if (reopened_dump(pid, f, t)) return {};  // a later description: the first has the content
    const struct stat& st = f.st;
    if (uint64_t(st.st_size) > kMaxDeletedFileBytes)
        return make_error(EFBIG,
                          strfmt("fd {}: deleted file of {} bytes is too large", f.fd, st.st_size));
    auto in = open_fd(proc_path(pid, strfmt("fd/{}", f.fd)), O_RDONLY);
    if (!in) return std::unexpected(in.error());
    t.content.resize(size_t(st.st_size));
    ssize_t n = pread(in->get(), t.content.data(), t.content.size(), 0);
    if (n != st.st_size)
        return make_error(EIO, strfmt("fd {}: read deleted file {}", f.fd, t.path));
    return {};
}

Status bad(const FdEntry& f, const std::string& what) {
    return make_error(EINVAL, strfmt("image field out of range: fd {}: {}", f.rec.fd, what));
}

Status check(const FdEntry& f, const DecodedImage&) {
    uint32_t fl = f.rec.open_flags;
    // O_TMPFILE: both its bits, and write access (the kernel's own rule for it).
    if (is_tmpfile(fl) && ((fl & O_TMPFILE) != O_TMPFILE || (fl & O_ACCMODE) == O_RDONLY))
        return bad(f, strfmt("O_TMPFILE with open flags 0{:o}", fl));
    return {};
}

// Fills `fd` with the content of deleted fd `f` (its fd-data runs in the image).
Status fill(const FdEntry& f, int image_fd, int fd) {
    for (const auto& [off, len] : f.data_runs) {
        loff_t in = loff_t(off);
        uint64_t left = len;
        while (left) {
            ssize_t n = copy_file_range(image_fd, &in, fd, nullptr, left, 0);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                // Fall back to pread/write (copy_file_range across filesystems or
                // into an O_APPEND file refuses).
                char buf[65536];
                ssize_t r = pread(image_fd, buf, std::min<uint64_t>(left, sizeof buf), in);
                if (r <= 0)
                    return errno_error(strfmt("fd {}: reading deleted file content", f.rec.fd));
                if (write(fd, buf, size_t(r)) != r)
                    return errno_error(strfmt("fd {}: writing deleted file copy", f.rec.fd));
                n = r;
                in += r;
            }
            left -= uint64_t(n);
        }
    }
    return {};
}

// An unlinked file holding the content of deleted fd `f`: O_TMPFILE with the
// image's flags in the directory it lived in (`exact`), or a copy reopened
// later: O_TMPFILE next to where it lived, else in /tmp, else a memfd.
// `exact_flags`: the O_TMPFILE description's (f's own, or a later one's).
Result<UniqueFd> make_copy(const FdEntry& f, const FilePlanIn& in, bool exact,
                           uint32_t exact_flags) {
    std::string dir = dir_of(f.path);
    int fd = -1;
    if (exact) {
        int flags = int(exact_flags & ~uint32_t(O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC));
        fd = ::open(dir.c_str(), flags | O_NOCTTY | O_CLOEXEC, 0600);
        if (fd < 0)
            return errno_error(
                strfmt("fd {}: O_TMPFILE in {} (the file lived there)", f.rec.fd, dir));
    } else {
        for (const std::string& d : {dir, std::string("/tmp")}) {
            fd = ::open(d.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
            if (fd >= 0) break;
        }
        if (fd < 0) fd = ::memfd_create("crfs-deleted", MFD_CLOEXEC);
        if (fd < 0) return errno_error(strfmt("fd {}: copy of deleted {}", f.rec.fd, f.path));
    }
    UniqueFd out(fd);
    if (auto s = fill(f, in.image_fd, fd); !s) return std::unexpected(s.error());
    // Owned like the task that had it open (a root writer's copy is root's).
    if ((in.chown && fchown(fd, in.img.creds.uid[3], in.img.creds.gid[3]) != 0) ||
        fchmod(fd, f.rec.mode & 07777) != 0)
        return errno_error(strfmt("fd {}: chown/chmod of deleted file copy", f.rec.fd));
    return out;
}

Status plan(const FdEntry& f, FilePlanIn& in, FdAction& a) {
    bool exact = is_tmpfile(f.rec.open_flags);
    // A later description (kind 40) that is the O_TMPFILE one (check: at most one).
    const FdEntry* tmp = nullptr;
    for (const FdEntry& e : in.img.fds)
        if (!exact && e.rec.kind == uint32_t(image::FdKind::kReopened) && e.rec.same_as < 0 &&
            image::reopened_first(e.rec) == uint64_t(f.rec.fd) && is_tmpfile(e.rec.open_flags))
            tmp = &e;
    auto copy = make_copy(f, in, exact || tmp, tmp ? tmp->rec.open_flags : f.rec.open_flags);
    if (!copy) return std::unexpected(copy.error());
    int hi = fcntl(copy->get(), F_DUPFD_CLOEXEC, in.min_fd);
    if (hi < 0) return errno_error("dup of deleted file copy");
    in.copies.emplace_back(hi);
    a.type = S_IFREG;
    if (tmp) {  // the later fd's description, at its offset; the first's reopened from it
        if (lseek(hi, off_t(tmp->rec.pos), SEEK_SET) < 0)
            return errno_error(strfmt("fd {}: seek of the O_TMPFILE file", tmp->rec.fd));
        in.early.emplace_back(tmp->rec.fd, hi);
    }
    if (exact) {  // this description goes into the task: its offset set here
        if (lseek(hi, off_t(f.rec.pos), SEEK_SET) < 0)
            return errno_error(strfmt("fd {}: seek of the O_TMPFILE file", f.rec.fd));
        a.prepared = hi;
        a.seek = false;
        return {};
    }
    a.seek = true;
    a.path = strfmt("/proc/self/fd/{}", hi);
    return {};
}

}  // namespace

const FileKind kDeletedFileKind = {
    image::FdKind::kDeleted, "deleted file", match, detect, dump, check, plan, kTmpfileBit};

}  // namespace crfs::state
