// signalfd: the signals it reads ("sigmask:" of fdinfo); O_NONBLOCK is in the
// fd record's open flags. The signals themselves stay queued on the task
// (pending signals are the signals kind's); signalfd only reads them.
#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "checkpoint/files.h"
#include "common/strfmt.h"
#include "state/kobj.h"

namespace crfs::state {
namespace {

// SIGKILL and SIGSTOP: signalfd drops them from any mask it is given.
constexpr uint64_t kUnblockable = (1ull << (SIGKILL - 1)) | (1ull << (SIGSTOP - 1));

bool match(const FdView& f) {
    return f.link == "anon_inode:[signalfd]";
}

Result<image::SignalfdRecord> parse(const FdView& f) {
    auto mask = fdinfo_number(f.fdinfo, "sigmask:", 16);
    if (!mask)
        return make_error(ENOTSUP, "signalfd whose fdinfo shows no sigmask" + std::string(kNotYet));
    return image::SignalfdRecord{f.fd, 0, *mask};
}

std::optional<std::string> detect(TaskView&, const FdView& f) {
    return kobj_reason(parse(f));
}

Status dump(pid_t, const FdView& f, TaskFd& t) {
    return kobj_add(t.records, image::RecordType::kSignalfd, f.fd, parse(f));
}

Status check(const FdEntry& f, const DecodedImage&) {
    auto r = kobj_one<image::SignalfdRecord>(f, image::RecordType::kSignalfd, "signalfd");
    if (!r) return std::unexpected(r.error());
    if (r->reserved || (r->mask & kUnblockable))
        return kobj_bad(f, strfmt("signalfd mask 0x{:x} (SIGKILL or SIGSTOP)", r->mask));
    if (f.rec.open_flags & ~uint32_t(O_ACCMODE | O_NONBLOCK))
        return kobj_bad(f, strfmt("signalfd open flags {}", kobj_oct(f.rec.open_flags)));
    return {};
}

Status plan(const FdEntry& f, KobjPlan& p) {
    auto r = kobj_one<image::SignalfdRecord>(f, image::RecordType::kSignalfd, "signalfd");
    if (!r) return std::unexpected(r.error());
    p.flags = (f.rec.open_flags & O_NONBLOCK) ? SFD_NONBLOCK : 0;
    p.n[0] = r->mask;
    return {};
}

int make(const KobjPlan& p, const char*, KobjFail& fail) {
    // The kernel's sigset: 8 bytes (glibc's sigset_t is larger).
    uint64_t mask = p.n[0];
    int fd = int(syscall(SYS_signalfd4, -1, &mask, sizeof mask, p.flags | SFD_CLOEXEC));
    if (fd < 0) fail = {CRFS_RA_STEP_KOBJ, errno, 0};
    return fd;
}

}  // namespace

const KobjKind kSignalfdKind = {
    image::FdKind::kSignalfd, "signalfd", match, detect, dump, check, plan, make, nullptr};

}  // namespace crfs::state
