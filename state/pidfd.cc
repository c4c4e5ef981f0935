// pidfd of the task itself: pidfd_open(getpid()) in the restored task, with
// PIDFD_NONBLOCK and PIDFD_THREAD as the fd had them (open flags O_NONBLOCK,
// O_EXCL). A pidfd of another process needs the process tree (issue 10): a
// reason naming its pid; of a process that has exited: a reason.
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "checkpoint/files.h"
#include "common/strfmt.h"
#include "state/kobj.h"

namespace crfs::state {
namespace {

constexpr uint32_t kFlags = O_ACCMODE | O_NONBLOCK | O_EXCL;

bool match(const FdView& f) {
    return f.link == "anon_inode:[pidfd]" || f.link.starts_with("pidfd:");
}

std::optional<std::string> detect(TaskView& t, const FdView& f) {
    auto pid = fdinfo_value(f.fdinfo, "Pid:");
    if (!pid) return "pidfd whose fdinfo shows no Pid" + std::string(kNotYet);
    if (*pid == "-1") return "pidfd of a process that has exited" + std::string(kNotYet);
    if (*pid != std::to_string(t.pid()))
        return "pidfd of pid " + std::string(*pid) + " (another process)" + std::string(kNotYet);
    if (f.info.flags & ~(kFlags | O_CLOEXEC))
        return strfmt("pidfd with flags {}{}", kobj_oct(f.info.flags), kNotYet);
    return std::nullopt;
}

Status dump(pid_t, const FdView&, TaskFd&) {
    return {};  // flags: the fd record has them
}

Status check(const FdEntry& f, const DecodedImage&) {
    if (!f.kobj.empty()) return kobj_bad(f, "records for a pidfd");
    if (f.rec.open_flags & ~kFlags)
        return kobj_bad(f, strfmt("pidfd open flags {}", kobj_oct(f.rec.open_flags)));
    return {};
}

Status plan(const FdEntry& f, KobjPlan& p) {
    p.flags = int(f.rec.open_flags & (O_NONBLOCK | O_EXCL));  // PIDFD_NONBLOCK, PIDFD_THREAD
    return {};
}

int make(const KobjPlan& p, const char*, KobjFail& fail) {
    int fd = int(syscall(SYS_pidfd_open, getpid(), p.flags));
    if (fd < 0) fail = {CRFS_RA_STEP_KOBJ, errno, 0};
    return fd;
}

}  // namespace

const KobjKind kPidfdKind = {
    image::FdKind::kPidfd, "pidfd", match, detect, dump, check, plan, make, nullptr};

}  // namespace crfs::state
