// Directory descriptors: reopened by path, as the writer, checked to be the
// same inode (dev, ino), and seeked to their offset: the filesystem's getdents
// cookie (ext4 hash, tmpfs index, ...), which lseek takes back in the same
// directory. Entries created or removed since the checkpoint change what the
// next getdents returns, as they would have for the running task. Refused: a
// directory no longer at its path (removed, moved, replaced); /proc is the
// procfs kind's (state/fds.cc).
#include <fcntl.h>
#include <unistd.h>

#include "checkpoint/files.h"
#include "common/strfmt.h"
#include "state/kobj.h"

namespace crfs::state {

Status kobj_still_there(const FdEntry& f);  // state/opath.cc

namespace {

constexpr uint32_t kOLargefile = 0100000;
constexpr uint32_t kFlags =
    O_DIRECTORY | kOLargefile | O_NONBLOCK | O_NOATIME | O_NOFOLLOW | O_SYNC | O_DSYNC | FASYNC;

bool match(const FdView& f) {
    // A removed one (nlink 0) is the deleted-directory kind's (state/dir_deleted.cc).
    return S_ISDIR(f.st.st_mode) && f.st.st_nlink > 0 && !(f.info.flags & O_PATH) &&
           f.link.starts_with("/") && !f.link.starts_with("/proc/");
}

std::optional<std::string> detect(TaskView&, const FdView& f) {
    return path_still_names(f, "directory");
}

Status dump(pid_t, const FdView&, TaskFd&) {
    return {};  // path, flags, offset, dev, ino: the fd record has them
}

Status check(const FdEntry& f, const DecodedImage&) {
    if (!f.kobj.empty()) return kobj_bad(f, "records for a directory fd");
    if (f.rec.open_flags & ~kFlags)  // O_RDONLY: directories are not opened for writing
        return kobj_bad(f, strfmt("directory open flags {}", kobj_oct(f.rec.open_flags)));
    return {};
}

Status plan(const FdEntry& f, KobjPlan& p) {
    if (auto s = kobj_still_there(f); !s) return s;
    p.flags = int(f.rec.open_flags) | O_DIRECTORY;
    p.dev = dev_t(f.rec.dev);
    p.ino = ino_t(f.rec.ino);
    p.n[0] = f.rec.pos;
    return {};
}

int make(const KobjPlan& p, const char* path, KobjFail& fail) {
    int fd = kobj_open_same(path, p.flags | O_NOCTTY, p.dev, p.ino, fail);
    if (fd < 0) return -1;
    if (p.n[0] && lseek(fd, off_t(p.n[0]), SEEK_SET) < 0) {
        fail = {CRFS_RA_STEP_SEEK_FD, errno, 0};
        close(fd);
        return -1;
    }
    return fd;
}

}  // namespace

const KobjKind kDirectoryKind = {
    image::FdKind::kDirectory, "directory", match, detect, dump, check, plan, make, nullptr};

}  // namespace crfs::state
