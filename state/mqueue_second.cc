// Another open file description of an unlinked POSIX message queue (issue 11,
// mq2): two mq_opens of one name before its mq_unlink leave a task with two
// descriptions of one queue that no name reaches any more.
//
//   detect   state/mqueue.cc: the queue's own reasons (every description of
//            it is inspected); a second description in the task is no reason
//   dump     the lowest fd of the task holding the queue is its first (kind
//            kMqueue: attributes, messages, state/mqueue.cc); every other
//            description's lowest fd is a record naming that first fd, with
//            its own open flags (FdRecord.open_flags)
//   restore  stage 1, after the first fd is in place (fds are made in
//            order, the first is lower): the queue opened again through
//            /proc/self/fd/FIRST with this fd's flags, with the task's ids
//            (the kernel decides, as for mq_open by name); a new description
//            of the same inode, checked (dev, inode)
// A second description held by another member of a tree too is handed over
// by the tree's rules (state/tree_share.h); one member's description opened
// separately from another member's is the tree's reason.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint/files.h"
#include "common/strfmt.h"
#include "state/file_kind.h"
#include "state/kobj.h"
#include "state/mqueue.h"

namespace crfs::state {

void mqueue_second_dump(const FdView& f, int first, TaskFd& t) {
    image::MqueueSecondRecord r{};
    r.fd = f.fd;
    r.first = first;
    t.rec.kind = uint32_t(image::FdKind::kMqueueSecond);
    t.records.push_back(kobj_record(image::RecordType::kMqueueSecond, r));
    t.path.clear();  // the first's record names the queue
}

namespace {

bool match(const FdView&) {
    return false;  // state/mqueue.cc claims every mqueue fd and dumps this kind
}

std::optional<std::string> detect(TaskView&, const FdView&) {
    return std::nullopt;
}

Status dump(pid_t, const FdView& f, TaskFd&) {
    return make_error(EINVAL, strfmt("fd {}: mqueue-second is dumped by the mqueue kind", f.fd));
}

Result<image::MqueueSecondRecord> parse(const FdEntry& f) {
    auto r =
        kobj_one<image::MqueueSecondRecord>(f, image::RecordType::kMqueueSecond, "mqueue-second");
    if (!r) return r;
    if (r->reserved[0] || r->reserved[1])
        return kobj_bad(f, strfmt("mqueue-second reserved {} {}", r->reserved[0], r->reserved[1]));
    return r;
}

// The first fd: an earlier fd, its own description, an unlinked queue.
Status check(const FdEntry& f, const DecodedImage& img) {
    auto r = parse(f);
    if (!r) return std::unexpected(r.error());
    const FdEntry* first = nullptr;
    for (const FdEntry& e : img.fds)
        if (e.rec.fd == r->first) first = &e;
    if (r->first < 0 || r->first >= f.rec.fd || !first || first->rec.same_as >= 0 ||
        first->rec.kind != uint32_t(image::FdKind::kMqueue) || !mqueue_unlinked(*first))
        return kobj_bad(
            f, strfmt("mqueue-second of fd {}, which is no earlier unlinked queue", r->first));
    return mqueue_check_flags(f);
}

Status plan(const FdEntry& f, KobjPlan& k) {
    auto r = parse(f);
    if (!r) return std::unexpected(r.error());
    k.flags = int(f.rec.open_flags);
    k.n[0] = uint64_t(r->first);
    return {};
}

// Stage 1 (no allocation): /proc/self/fd/FIRST opened with the flags, the
// first's inode (state/file_reopen.cc).
int make(const KobjPlan& p, const char*, KobjFail& fail) {
    int fd = reopen_self(int(p.n[0]), p.flags);
    if (fd < 0) fail = {CRFS_RA_STEP_MQ_SECOND, -fd, 0};
    return fd < 0 ? -1 : fd;
}

}  // namespace

const KobjKind kMqueueSecondKind = {
    image::FdKind::kMqueueSecond, "mqueue-second", match, detect, dump, check, plan, make, nullptr};

}  // namespace crfs::state
