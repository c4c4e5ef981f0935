// eventfd: its counter and EFD_SEMAPHORE, as fdinfo shows them
// ("eventfd-count:", "eventfd-semaphore:"); O_NONBLOCK is in the fd record's
// open flags. Restore: eventfd(0) and one write of the count (eventfd's
// initval is 32 bits, the count 64). Not restored: "eventfd-id", a number the
// kernel hands out and only fdinfo shows.
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "checkpoint/files.h"
#include "common/strfmt.h"
#include "state/kobj.h"

namespace crfs::state {
namespace {

constexpr uint64_t kMaxCount = 0xfffffffffffffffeull;

bool match(const FdView& f) {
    return f.link == "anon_inode:[eventfd]";
}

Result<image::EventfdRecord> parse(const FdView& f) {
    auto count = fdinfo_number(f.fdinfo, "eventfd-count:", 16);
    auto sem = fdinfo_number(f.fdinfo, "eventfd-semaphore:", 10);
    if (!count || !sem || *sem > 1)
        return make_error(ENOTSUP,
                          "eventfd whose fdinfo shows no eventfd-count or "
                          "eventfd-semaphore (a kernel before 6.6?)" +
                              std::string(kNotYet));
    return image::EventfdRecord{f.fd, *sem ? uint32_t(EFD_SEMAPHORE) : 0u, *count};
}

std::optional<std::string> detect(TaskView&, const FdView& f) {
    return kobj_reason(parse(f));
}

Status dump(pid_t, const FdView& f, TaskFd& t) {
    return kobj_add(t.records, image::RecordType::kEventfd, f.fd, parse(f));
}

Status check(const FdEntry& f, const DecodedImage&) {
    auto r = kobj_one<image::EventfdRecord>(f, image::RecordType::kEventfd, "eventfd");
    if (!r) return std::unexpected(r.error());
    if (r->flags & ~uint32_t(EFD_SEMAPHORE))
        return kobj_bad(f, strfmt("eventfd flags 0x{:x}", r->flags));
    if (r->count > kMaxCount) return kobj_bad(f, strfmt("eventfd count 0x{:x}", r->count));
    if (f.rec.open_flags & ~uint32_t(O_ACCMODE | O_NONBLOCK))
        return kobj_bad(f, strfmt("eventfd open flags {}", kobj_oct(f.rec.open_flags)));
    return {};
}

Status plan(const FdEntry& f, KobjPlan& p) {
    auto r = kobj_one<image::EventfdRecord>(f, image::RecordType::kEventfd, "eventfd");
    if (!r) return std::unexpected(r.error());
    p.flags = int(r->flags) | ((f.rec.open_flags & O_NONBLOCK) ? EFD_NONBLOCK : 0);
    p.n[0] = r->count;
    return {};
}

int make(const KobjPlan& p, const char*, KobjFail& fail) {
    int fd = eventfd(0, p.flags | EFD_CLOEXEC);
    if (fd < 0) {
        fail = {CRFS_RA_STEP_KOBJ, errno, 0};
        return -1;
    }
    uint64_t count = p.n[0];
    if (count && write(fd, &count, sizeof count) != sizeof count) {
        fail = {CRFS_RA_STEP_KOBJ, errno ? errno : EIO, 0};
        close(fd);
        return -1;
    }
    return fd;
}

}  // namespace

const KobjKind kEventfdKind = {
    image::FdKind::kEventfd, "eventfd", match, detect, dump, check, plan, make, nullptr};

}  // namespace crfs::state
