// O_PATH descriptors: reopened by path with O_PATH (O_NOFOLLOW when the fd
// holds a symbolic link itself), as the writer, and checked to be the same
// inode (dev, ino). Nothing else is open: O_PATH gives no access to content.
// Refused: a path that no longer names the file (deleted, moved, replaced),
// a file in /proc or one without a path (nsfs, anonymous inodes).
#include <fcntl.h>
#include <unistd.h>

#include "checkpoint/files.h"
#include "common/strfmt.h"
#include "state/kobj.h"

namespace crfs::state {
namespace {

constexpr uint32_t kOLargefile = 0100000;  // the kernel's (glibc defines it 0 here)
constexpr uint32_t kFlags = O_PATH | O_NOFOLLOW | O_DIRECTORY | kOLargefile;

bool match(const FdView& f) {
    return f.info.flags & O_PATH;
}

std::optional<std::string> detect(TaskView&, const FdView& f) {
    if (f.link.starts_with("/proc/"))
        return "O_PATH descriptor of a file in /proc " + f.link + std::string(kNotYet);
    if (!f.link.starts_with("/"))
        return "O_PATH descriptor of " + f.link + " (no path to reopen)" + std::string(kNotYet);
    return path_still_names(f, "O_PATH descriptor of");
}

Status dump(pid_t, const FdView&, TaskFd&) {
    return {};  // path, flags, dev, ino, mode: the fd record has them
}

Status check(const FdEntry& f, const DecodedImage&) {
    if (!f.kobj.empty()) return kobj_bad(f, "records for an O_PATH fd");
    if (!(f.rec.open_flags & O_PATH) || (f.rec.open_flags & ~kFlags))
        return kobj_bad(f, strfmt("O_PATH open flags {}", kobj_oct(f.rec.open_flags)));
    return {};
}

// The path names the recorded inode now, looked up as the writer.
Status still_there(const FdEntry& f, bool nofollow) {
    struct stat st {};
    if ((nofollow ? ::lstat(f.path.c_str(), &st) : ::stat(f.path.c_str(), &st)) != 0)
        return errno_error(strfmt("fd {}: {}", f.rec.fd, f.path));
    if (st.st_dev != f.rec.dev || st.st_ino != f.rec.ino)
        return make_error(ESTALE,
                          strfmt("fd {}: {} is no longer the file it was (inode {} on "
                                 "{:x}, image has {} on {:x})",
                                 f.rec.fd, f.path, st.st_ino, st.st_dev, f.rec.ino, f.rec.dev));
    return {};
}

Status plan(const FdEntry& f, KobjPlan& p) {
    bool nofollow = S_ISLNK(f.rec.mode);
    if (auto s = still_there(f, nofollow); !s) return s;
    p.flags = O_PATH | (nofollow ? O_NOFOLLOW : 0);
    p.dev = dev_t(f.rec.dev);
    p.ino = ino_t(f.rec.ino);
    return {};
}

int make(const KobjPlan& p, const char* path, KobjFail& fail) {
    return kobj_open_same(path, p.flags, p.dev, p.ino, fail);
}

}  // namespace

const KobjKind kOpathKind = {
    image::FdKind::kOpath, "O_PATH", match, detect, dump, check, plan, make, nullptr};

// Shared with dirfd.cc: the same look-up for a directory.
Status kobj_still_there(const FdEntry& f) {
    return still_there(f, false);
}

}  // namespace crfs::state
