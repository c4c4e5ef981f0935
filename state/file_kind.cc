// The dispatcher of the file kinds (state/file_kind.h): one table, walked by
// every caller, so detect, dump and restore always agree on the kind.
#include "state/file_kind.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint/files.h"
#include "common/strfmt.h"
#include "restorer/child.h"
#include "restorer/files.h"

namespace crfs::state {
namespace {

// Deleted first: a regular file with no link left is that kind.
constexpr const FileKind* kKinds[] = {&kDeletedFileKind, &kRegularFileKind, &kCharDevFileKind,
                                      &kDeletedDirKind,  &kReopenedKind,    &kTreeCwdDirKind};

const FileKind* by_view(const FdView& f) {
    for (const FileKind* k : kKinds)
        if (k->match(f)) return k;
    return nullptr;
}

const FileKind* by_kind(uint32_t kind) {
    for (const FileKind* k : kKinds)
        if (uint32_t(k->kind) == kind) return k;
    return nullptr;
}

}  // namespace

bool file_match(const FdView& f) {
    return by_view(f) != nullptr;
}

std::optional<std::string> file_detect(TaskView& t, const FdView& f) {
    const FileKind* k = by_view(f);
    return k ? k->detect(t, f) : std::nullopt;
}

Status file_dump(pid_t pid, const FdView& f, TaskFd& t, bool& claimed) {
    const FileKind* k = by_view(f);
    claimed = k != nullptr;
    if (!k) return {};
    t.rec.kind = uint32_t(k->kind);
    return k->dump(pid, f, t);
}

bool is_file(uint32_t fd_kind) {
    return by_kind(fd_kind) != nullptr;
}

uint32_t file_own_flags(uint32_t fd_kind) {
    const FileKind* k = by_kind(fd_kind);
    return k ? k->own_flags : 0;
}

Status file_check(const FdEntry& f, const DecodedImage& img) {
    const FileKind* k = by_kind(f.rec.kind);
    if (!k)
        return make_error(EINVAL,
                          strfmt("image field out of range: fd {}: kind {}", f.rec.fd, f.rec.kind));
    if (!f.kobj.empty())
        return make_error(EINVAL, strfmt("image field out of range: fd {}: kernel-object "
                                         "records for a file",
                                         f.rec.fd));
    return k->check(f, img);
}

Status file_plan(const FdEntry& f, FilePlanIn& in, FdAction& a) {
    const FileKind* k = by_kind(f.rec.kind);
    if (!k) return make_error(EINVAL, strfmt("fd {}: kind {} is no file", f.rec.fd, f.rec.kind));
    return k->plan(f, in, a);
}

int file_open(const FdAction& a, int status_fd) {
    if (a.reopen_of >= 0) return reopen_open(a, status_fd);  // file_reopen.cc
    int fd = ::open(a.path.c_str(), a.open_flags | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) child_fail(status_fd, CRFS_RA_STEP_OPEN_FD, errno, uint64_t(a.target));
    struct stat st;
    if (fstat(fd, &st) < 0) child_fail(status_fd, CRFS_RA_STEP_FD_TYPE, errno, uint64_t(a.target));
    if ((st.st_mode & S_IFMT) != a.type || (a.type == S_IFCHR && st.st_rdev != a.rdev))
        child_fail(status_fd, CRFS_RA_STEP_FD_TYPE, ESTALE, uint64_t(a.target));
    if (!(a.open_flags & O_NONBLOCK) && fcntl(fd, F_SETFL, a.open_flags & ~O_NONBLOCK) < 0)
        child_fail(status_fd, CRFS_RA_STEP_OPEN_FD, errno, uint64_t(a.target));
    return fd;
}

bool bad_image_path(const std::string& p) {
    return p.empty() || p[0] != '/' || p.find('\0') != std::string::npos;
}

}  // namespace crfs::state
