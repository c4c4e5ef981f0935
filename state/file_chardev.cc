// A character device without state of its own (/dev/null, zero, full, random,
// urandom): reopening its path gives an equivalent file, so the path and the
// open flags are all there is. Restore reopens the path in stage 1 and checks
// it is the recorded device (rdev); the file policy checks the same before
// (state/file_policy.h). Every other device is a reason: reopening it would
// give a new device state. Terminals are kernel objects (state/tty.cc).
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "checkpoint/files.h"
#include "common/strfmt.h"
#include "restorer/files.h"
#include "state/fds.h"
#include "state/file_kind.h"

namespace crfs::state {
namespace {

struct Stateless {
    unsigned major, minor;
};
constexpr Stateless kStatelessChar[] = {
    {1, 3}, {1, 5}, {1, 7}, {1, 8}, {1, 9}};  // null zero full random urandom

bool match(const FdView& f) {
    return S_ISCHR(f.st.st_mode);
}

std::optional<std::string> detect(TaskView&, const FdView& f) {
    if (stateless_char_device(f)) return std::nullopt;
    unsigned ma = major(f.st.st_rdev), mi = minor(f.st.st_rdev);
    return "character device " + f.link + " (" + std::to_string(ma) + ":" + std::to_string(mi) +
           ", reopening it would give a new device state)" + std::string(kNotYet);
}

Status dump(pid_t, const FdView&, TaskFd&) {
    return {};  // the path, flags and rdev of the fd record
}

// Path, flags and rdev: the fd table's fields (state/fd_check.cc); the file
// policy checks the device found at the path.
Status check(const FdEntry&, const DecodedImage&) {
    return {};
}

Status plan(const FdEntry& f, FilePlanIn&, FdAction& a) {
    a.seek = false;
    a.type = S_IFCHR;
    a.rdev = dev_t(f.rec.rdev);
    return {};
}

}  // namespace

bool stateless_char_device(const FdView& f) {
    if (!S_ISCHR(f.st.st_mode)) return false;
    for (const auto& s : kStatelessChar)
        if (s.major == major(f.st.st_rdev) && s.minor == minor(f.st.st_rdev)) return true;
    return false;
}

const FileKind kCharDevFileKind = {
    image::FdKind::kCharDev, "character device", match, detect, dump, check, plan, 0};

}  // namespace crfs::state
