// pidfd: pidfd_open in the restored task, with PIDFD_NONBLOCK and PIDFD_THREAD
// as the fd had them (open flags O_NONBLOCK, O_EXCL). Of the task itself:
// pidfd_open(getpid()). pidfd (version 12): of another process of the tree's
// image that exists when the task's fds are made (members are cloned parents
// first, each by its parent before the parent's fds, state/tree_restore.h):
// an ancestor of the task, or a child the task clones itself (one that shares
// no fd table or cwd, which another member might make later); its pid in a
// `pidfd-target` record, and the restore opens that pid, which the tree has
// again (same pids). Any other process (outside the image, another branch of
// the tree, a thread) or one that has exited and was reaped: a reason.
#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>

#include "checkpoint/files.h"
#include "common/strfmt.h"
#include "state/kcmp_cache.h"
#include "state/kobj.h"
#include "state/tree.h"

namespace crfs::state {
namespace {

constexpr uint32_t kFlags = O_ACCMODE | O_NONBLOCK | O_EXCL;

bool match(const FdView& f) {
    return f.link == "anon_inode:[pidfd]" || f.link.starts_with("pidfd:");
}

// (ppid, state) of /proc/<pid>/stat; (0, '?') when gone.
std::pair<pid_t, char> stat_of(pid_t pid, pid_t self_tgid) {
    TaskView v(pid, self_tgid);
    auto s = v.stat();
    return s ? std::pair{(*s)->ppid, (*s)->state} : std::pair{pid_t(0), '?'};
}
pid_t parent_of(pid_t pid, pid_t self_tgid) {
    return stat_of(pid, self_tgid).first;
}

// Whether `pid` shares its fd table or cwd with another process of `inside`:
// then a sibling may clone it, after its parent's fds (state/tree_share_task.h).
bool shares_table(pid_t pid, const std::vector<pid_t>& inside, KcmpCache& kcmp) {
    for (pid_t o : inside)
        for (int type : {KCMP_FILES, KCMP_FS})
            if (o != pid && kcmp.order(type, pid, o) == 0) return true;
    return false;
}

// Why a pidfd of `target`, another process, cannot be restored in t; none
// when the target is an ancestor or a child t clones before its fds.
std::optional<std::string> other_reason(TaskView& t, pid_t target) {
    std::vector<pid_t> inside = t.image_pids();
    if (inside.empty()) inside = tree_pids(t.pid());
    auto in = [&](pid_t p) { return std::find(inside.begin(), inside.end(), p) != inside.end(); };
    std::string what = strfmt("pidfd of pid {}", target);
    // A checkpoint's image_pids are the live members; a zombie child of one is in the image too.
    auto [ppid, state] = stat_of(target, t.self_tgid());
    bool zombie = state == 'Z' && in(ppid);
    if (!in(target) && !zombie)
        return what + " (a process outside the image, or a thread)" + std::string(kNotYet);
    for (pid_t p = parent_of(t.pid(), t.self_tgid()); p > 0 && in(p);
         p = parent_of(p, t.self_tgid()))
        if (p == target) return std::nullopt;  // an ancestor: it made this task
    if (ppid == t.pid()) {
        if (!shares_table(target, inside, *t.kcmp()))
            return std::nullopt;  // cloned before this one's fds
        return what + ", a child that shares its fd table or cwd with another process (it is " +
               "made after its maker's fds)" + std::string(kNotYet);
    }
    return what + ", a process of the image that is neither an ancestor nor a child of this " +
           "one (it may not exist yet when this one's fds are made)" + std::string(kNotYet);
}

std::optional<pid_t> target_of(const FdView& f) {
    auto v = fdinfo_value(f.fdinfo, "Pid:");
    pid_t pid = 0;
    if (!v || std::from_chars(v->data(), v->data() + v->size(), pid).ec != std::errc{})
        return std::nullopt;
    return pid;
}

std::optional<std::string> detect(TaskView& t, const FdView& f) {
    auto pid = target_of(f);
    if (!pid) return "pidfd whose fdinfo shows no Pid" + std::string(kNotYet);
    if (*pid == -1) return "pidfd of a process that has exited" + std::string(kNotYet);
    if (f.info.flags & ~(kFlags | O_CLOEXEC))
        return strfmt("pidfd with flags {}{}", kobj_oct(f.info.flags), kNotYet);
    if (*pid != t.pid()) return other_reason(t, *pid);
    return std::nullopt;
}

Status dump(pid_t pid, const FdView& f, TaskFd& t) {
    auto target = target_of(f);  // flags: the fd record has them
    if (target && *target != pid)
        t.records.push_back(
            kobj_record(image::RecordType::kPidfdTarget, image::PidfdTargetRecord{f.fd, *target}));
    return {};
}

// The index of process `pid` in the image, or -1.
int index_of(const DecodedImage& img, pid_t pid) {
    for (size_t i = 0; i < img.processes.size(); ++i)
        if (img.processes[i].pid == pid) return int(i);
    return -1;
}

// The index of process i's parent as the restore makes it (state/tree_restore.cc:
// an earlier process; the first has none in the image, whatever its ppid says), or -1.
int parent_index(const DecodedImage& img, int i) {
    if (i <= 0) return -1;
    for (int j = 0; j < i; ++j)
        if (img.processes[size_t(j)].pid == img.processes[size_t(i)].ppid) return j;
    return -1;
}

// The image's own rule (other_reason): `target` is an ancestor of the task or
// a child of it that shares no fd table or cwd; never a pid of the host.
Status check_target(const FdEntry& f, const DecodedImage& img, pid_t target) {
    auto bad = [&](const char* what) {
        return kobj_bad(f, strfmt("pidfd of pid {}, {}", target, what));
    };
    int self = index_of(img, img.task.pid), t = index_of(img, target);
    if (img.header.version < 12 || self < 0 || t < 0 || t == self)
        return bad("not another process of this image");
    for (int p = parent_index(img, self); p >= 0; p = parent_index(img, p))  // earlier each time
        if (p == t) return {};
    if (parent_index(img, t) != self) return bad("neither an ancestor nor a child of the task");
    for (const auto& [i, s] : img.share_tasks)
        if (int(i) == t && (s.files_pid || s.fs_pid))
            return bad("a child sharing its fd table or cwd (made after the task's fds)");
    return {};
}

Status check(const FdEntry& f, const DecodedImage& img) {
    if (f.rec.open_flags & ~kFlags)
        return kobj_bad(f, strfmt("pidfd open flags {}", kobj_oct(f.rec.open_flags)));
    if (f.kobj.empty()) return {};
    auto r = kobj_one<image::PidfdTargetRecord>(f, image::RecordType::kPidfdTarget, "pidfd-target");
    if (!r) return std::unexpected(r.error());
    return check_target(f, img, r->pid);
}

Status plan(const FdEntry& f, KobjPlan& p) {
    p.flags = int(f.rec.open_flags & (O_NONBLOCK | O_EXCL));  // PIDFD_NONBLOCK, PIDFD_THREAD
    auto recs = kobj_records(f, image::RecordType::kPidfdTarget);
    if (!recs.empty()) {  // checked: one record
        image::PidfdTargetRecord r;
        std::memcpy(&r, recs[0]->data(), sizeof r);
        p.n[0] = uint64_t(r.pid);
    }
    return {};
}

int make(const KobjPlan& p, const char*, KobjFail& fail) {
    pid_t pid = p.n[0] ? pid_t(p.n[0]) : getpid();
    int fd = int(syscall(SYS_pidfd_open, pid, p.flags));
    if (fd < 0) fail = {CRFS_RA_STEP_KOBJ, errno, 0};
    return fd;
}

}  // namespace

const KobjKind kPidfdKind = {
    image::FdKind::kPidfd, "pidfd", match, detect, dump, check, plan, make, nullptr};

}  // namespace crfs::state
