// pidfd: pidfd_open in the restored task, with PIDFD_NONBLOCK and PIDFD_THREAD
// as the fd had them (open flags O_NONBLOCK, O_EXCL). Of the task itself:
// pidfd_open(getpid()). pidfd (version 12): of another process of the tree's
// image, its pid in a `pidfd-target` record, which the tree has again (same
// pids). One that exists when the task's fds are made (members are cloned
// parents first, each by its parent before the parent's fds,
// state/tree_restore.h), an ancestor or a child the task clones itself, is
// opened by the task; pidfd2: any other member (a sibling, a grandchild, a
// nephew) is opened by its parent right after its clone and handed over
// (state/pidfd.h), so it and its way up must be cloned as members are, not
// by a maker after its fds (no fd table or cwd shared). thpidfd: a thread of
// the task or of another member (PIDFD_THREAD) is made by the blob once the
// thread exists, over a placeholder stage 1 leaves (state/pidfd.h
// plan_thread_pidfds); thpidfd2: so are its epoll watches, and a later member
// holding its description (a share-fd record) receives it from the first
// holder's blob (plan_taken). A process outside the image, a thread of one,
// one that has exited and was reaped, or a thread's pidfd held by a process
// sharing its fd table: a reason.
#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>

#include "checkpoint/files.h"
#include "common/strfmt.h"
#include "common/unique_fd.h"
#include "restorer/child.h"
#include "state/check.h"
#include "state/kcmp_cache.h"
#include "state/kobj.h"
#include "state/pidfd.h"
#include "state/tree.h"
#include "state/tree_restore.h"
#include "state/unix_tree.h"

namespace crfs::state {
namespace {

constexpr uint32_t kFlags = O_ACCMODE | O_NONBLOCK | O_EXCL;
// thpidfd: KobjPlan::n[2] of a pidfd of a thread (plan_thread_pidfds); n[1]
// then holds the read end of the thread's process's pipe (tree_pidfd_plan).
// thpidfd2: kTaken, a later holder of a description an earlier member makes
// (its share-fd record); n[1] holds the receiving end of that one's channel.
constexpr uint64_t kOwnThread = 1, kOtherThread = 2, kTaken = 3;

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

// Whether `pid` shares its fd table or (`fs`) cwd with another process of
// `inside`: then a sibling may clone it, after its parent's fds
// (state/tree_share_task.h).
bool shares_table(pid_t pid, const std::vector<pid_t>& inside, KcmpCache& kcmp, bool fs = true) {
    for (pid_t o : inside)
        for (int type : {KCMP_FILES, KCMP_FS})
            if ((fs || type == KCMP_FILES) && o != pid && kcmp.order(type, pid, o) == 0)
                return true;
    return false;
}

// thpidfd: why a pidfd of thread `tid` of member `tgid` cannot be restored in
// t, or none. The blob makes it once the thread exists, over a placeholder
// stage 1 left at the fd (restorer/blob/thread_pidfds.h); thpidfd2: its
// epoll watches are added there too, and another member holding its
// description (a fork after the pidfd_open) receives it from the first
// holder's blob. So no process holding it, and not tgid, may share its fd
// table with another process (the fds the blob replaces and the pipe tgid's
// blob closes would not be its own); a cwd shared (CLONE_FS) is no matter:
// such a taker is cloned where a child is, its fd table its own.
std::optional<std::string> thread_reason(TaskView& t, const FdView& f, pid_t tid, pid_t tgid,
                                         const std::vector<pid_t>& inside) {
    std::string what = strfmt("pidfd of thread {} of pid {}", tid, tgid);
    KcmpCache& kcmp = *t.kcmp();
    std::vector<pid_t> check{t.pid(), tgid};
    for (pid_t o : inside) {  // the other holders of its description
        if (o == t.pid()) continue;
        TaskView v(o, t.self_tgid());
        auto fds = v.fds();
        if (!fds) continue;  // gone: its own reasons say so
        for (const FdView& g : **fds)
            if (g.st.st_ino == f.st.st_ino && g.st.st_dev == f.st.st_dev &&
                kcmp.order(KCMP_FILE, kcmp_fd(t.pid(), f.fd), kcmp_fd(o, g.fd)) == 0) {
                check.push_back(o);
                break;
            }
    }
    for (pid_t p : check)
        if (shares_table(p, inside, kcmp, false))
            return what + strfmt(", and pid {} shares its fd table with another process", p) +
                   std::string(kNotYet);
    return std::nullopt;
}

// Why a pidfd of `target`, another process, cannot be restored in t; none
// when the restore can make it (docs/trees.md "pidfds between members"): an
// ancestor of t exists when t's fds are made; any other member is opened by
// the process that clones it, right after the clone, and handed over to t,
// so the processes on its way from t's ancestors (the target and those of its
// ancestors that are not t's), and its cloner, must be cloned as every member
// is, not after some member's fds: none may share its fd table or cwd.
std::optional<std::string> other_reason(TaskView& t, const FdView& f, pid_t target) {
    std::vector<pid_t> inside = t.image_pids();
    if (inside.empty()) inside = tree_pids(t.pid());
    auto in = [&](pid_t p) { return std::find(inside.begin(), inside.end(), p) != inside.end(); };
    std::string what = strfmt("pidfd of pid {}", target);
    // A checkpoint's image_pids are the live members; a zombie child of one is in the image too.
    auto [ppid, state] = stat_of(target, t.self_tgid());
    bool zombie = state == 'Z' && in(ppid);
    if (!in(target) && !zombie) {
        TaskView v(target, t.self_tgid());
        auto st = v.status();
        if (st && (*st)->tgid != target && in((*st)->tgid))  // PIDFD_THREAD (Linux 6.9)
            return thread_reason(t, f, target, (*st)->tgid, inside);
        return what + " (a process outside the image, or a thread)" + std::string(kNotYet);
    }
    std::vector<pid_t> mine{t.pid()};  // t and its ancestors in the image
    for (pid_t p = parent_of(t.pid(), t.self_tgid()); p > 0 && in(p);
         p = parent_of(p, t.self_tgid()))
        mine.push_back(p);
    if (std::find(mine.begin(), mine.end(), target) != mine.end())
        return std::nullopt;  // an ancestor: it made this task
    pid_t n = target;
    for (size_t hops = 0; std::find(mine.begin(), mine.end(), n) == mine.end(); ++hops) {
        if (hops > inside.size() || (n != target && !in(n)))
            return what + ", a process of another tree" + std::string(kNotYet);
        if (shares_table(n, inside, *t.kcmp()))
            return what +
                   strfmt(
                       ", made after another process's fds: pid {} on its way from "
                       "this one's ancestors shares its fd table or cwd with another "
                       "process",
                       n) +
                   std::string(kNotYet);
        n = parent_of(n, t.self_tgid());
    }
    if (n != t.pid() && shares_table(n, inside, *t.kcmp()))  // the cloner: it hands the pidfd over
        return what +
               strfmt(
                   ", made by pid {}, which shares its fd table or cwd with another "
                   "process",
                   n) +
               std::string(kNotYet);
    return std::nullopt;
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
    if (*pid != t.pid()) return other_reason(t, f, *pid);
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

// Whether process i of the image is made by another's clone after that one's
// fds (a share-task record: it shares an fd table or cwd); `files`: only an fd
// table (its own cloned children then come after its maker's fds too).
bool taker(const DecodedImage& img, int i, bool files) {
    for (const auto& [j, s] : img.share_tasks)
        if (int(j) == i && (s.files_pid || (!files && s.fs_pid))) return true;
    return false;
}

// thpidfd: `tid`, PIDFD_THREAD and not a process of the image, may be a thread: of the task
// (img.threads), or of another member (PIDFD_THREAD, a tree: tree_pidfd_plan
// finds it among the members' threads before any process is made). thpidfd2:
// an epoll's watch of it is added by the blob (plan_thread_pidfds); a later
// holder of its description has a share-fd record (plan_taken).
Status check_thread(const FdEntry& f, const DecodedImage& img, pid_t tid) {
    bool own = std::any_of(img.threads.begin(), img.threads.end(),
                           [&](const ThreadImage& t) { return t.rec.tid == tid; });
    if (!own && img.processes.empty())
        return kobj_bad(f, strfmt("pidfd of thread {}, not a thread of this task", tid));
    return {};
}

// The image's own rule (other_reason): `target` is another process of the
// image, an ancestor of the task, or one whose way from the task's ancestors
// and whose cloner (its parent) hold no process made after another's fds.
Status check_target(const FdEntry& f, const DecodedImage& img, pid_t target) {
    auto bad = [&](const char* what) {
        return kobj_bad(f, strfmt("pidfd of pid {}, {}", target, what));
    };
    int self = index_of(img, img.task.pid), t = index_of(img, target);
    if (img.header.version >= 12 && t < 0 && target > 0 && (f.rec.open_flags & O_EXCL))
        return check_thread(f, img, target);  // thpidfd: PIDFD_THREAD of a tid
    if (img.header.version < 12 || self < 0 || t < 0 || t == self)
        return bad("not another process of this image");
    std::vector<int> mine{self};
    for (int p = parent_index(img, self); p >= 0; p = parent_index(img, p))  // earlier each time
        mine.push_back(p);
    auto is_mine = [&](int i) { return std::find(mine.begin(), mine.end(), i) != mine.end(); };
    if (is_mine(t)) return {};
    int n = t;
    for (; n >= 0 && !is_mine(n); n = parent_index(img, n))  // earlier each time
        if (taker(img, n, false))
            return bad(
                "made after another process's fds (it or an ancestor on its way from the "
                "task's shares an fd table or cwd)");
    if (n < 0) return bad("not in the tree of the task");
    if (n != self && taker(img, n, true))
        return bad("made by a process that shares an fd table (after another one's fds)");
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
    if (p.n[2]) {  // thpidfd: a placeholder the blob replaces (plan_thread_pidfds)
        int fd = p.n[2] != kOwnThread ? fcntl(int(p.n[1]), F_DUPFD_CLOEXEC, 0)
                                      : int(syscall(SYS_pidfd_open, getpid(), 0));
        if (fd < 0) fail = {CRFS_RA_STEP_THREAD_PIDFD, errno, 0};
        return fd;
    }
    if (p.n[1]) {  // pidfd2: opened by the target's cloner (tree_pidfd_plan)
        int fd = -1;
        // End of file: the cloner died before it gave (its own failure is reported too).
        if (int e = recv_one_fd(int(p.n[1]), &fd); e || fd < 0) {
            fail = {CRFS_RA_STEP_SHARE_FD, e ? e : EPIPE, 0};
            return -1;
        }
        return fd;
    }
    pid_t pid = p.n[0] ? pid_t(p.n[0]) : getpid();
    int fd = int(syscall(SYS_pidfd_open, pid, p.flags));
    if (fd < 0) fail = {CRFS_RA_STEP_KOBJ, errno, 0};
    return fd;
}

// A channel from member `from` to `to`, each end above that one's fds.
Result<std::pair<UniqueFd, UniqueFd>> channel(const TreeRestore& tree, int from, int to) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return errno_error("pidfd channel");
    UniqueFd a(sv[0]), b(sv[1]);
    UniqueFd give(fcntl(a.get(), F_DUPFD_CLOEXEC, tree.members[size_t(from)].min_fd));
    UniqueFd take(fcntl(b.get(), F_DUPFD_CLOEXEC, tree.members[size_t(to)].min_fd));
    if (!give || !take) return errno_error("dup of a pidfd channel");
    return std::pair{std::move(give), std::move(take)};
}

}  // namespace

namespace {

crfs_ra_thread_pidfd entry(int fd, pid_t tid, int flags, bool cloexec) {
    crfs_ra_thread_pidfd e{};
    e.fd = fd;
    e.tid = tid;
    e.flags = flags;
    e.cloexec = cloexec;
    e.dup_of = e.give = e.epfd = -1;
    return e;
}

const FdEntry* fd_entry(const DecodedImage& img, int fd) {
    for (const auto& f : img.fds)
        if (f.rec.fd == fd) return &f;
    return nullptr;
}

// Keeps `fd` through member m's stage 1 close.
void keep(TreeRestore::Member& m, int fd) {
    m.share_keep.insert(std::upper_bound(m.share_keep.begin(), m.share_keep.end(), fd), fd);
}

// thpidfd2: fd `a` of member i, given by an earlier member (its share-fd
// record), when that one's fd is a pidfd of a thread (a placeholder until its
// blob): the taker's is a placeholder too, the receiving end of a channel the
// giver's blob sends the description on once made, one message per later
// holder (its entry's give and gives). None when it is no such fd (then
// tree_share_plan's). The giver's entry is in its blob's area already; the
// channel is made at its first taker, and the daemon keeps its receiving end
// (closed at the root's clone) for the later ones.
Result<std::optional<crfs_ra_thread_pidfd>> plan_taken(const DecodedImage& img, FdPlan& fds,
                                                       FdAction& a, TreeRestore& tree, uint32_t i) {
    const FdEntry* f = fd_entry(img, a.target);
    image::ShareFdRecord r;
    if (!f || f->rec.kind != uint32_t(image::FdKind::kShared) || f->kobj.size() != 1 ||
        f->kobj[0].second.size() != sizeof r)
        return std::nullopt;  // check_fields and tree_share_plan refuse it
    std::memcpy(&r, f->kobj[0].second.data(), sizeof r);
    if (r.owner >= i) return std::nullopt;  // check_giver: not an earlier process
    auto& g = tree.members[r.owner];
    const FdEntry* gf = g.img ? fd_entry(*g.img, r.owner_fd) : nullptr;
    if (!g.fds || !g.args || !gf || gf->rec.kind != uint32_t(image::FdKind::kPidfd))
        return std::nullopt;  // check_giver's (a taker's fd is no giver's)
    auto ga = std::find_if(g.fds->actions.begin(), g.fds->actions.end(),
                           [&](const FdAction& x) { return x.target == r.owner_fd; });
    if (ga == g.fds->actions.end() || ga->same_as >= 0 ||
        ga->kobj.kind != uint32_t(image::FdKind::kPidfd) || !ga->kobj.n[2])
        return std::nullopt;
    auto* list = reinterpret_cast<crfs_ra_thread_pidfd*>(g.args->thread_pidfds);
    crfs_ra_thread_pidfd* e = nullptr;
    for (uint64_t k = 0; k < g.args->nr_thread_pidfds; ++k)
        if (list[k].fd == r.owner_fd && list[k].epfd < 0 && list[k].dup_of < 0) e = &list[k];
    if (!e || r.end != image::kShareSame || f->rec.open_flags != gf->rec.open_flags)
        return check::bad_image(
            strfmt("fd {}: given by fd {} of process {}, a pidfd of a thread, as share end {} "
                   "with open flags 0{:o} (its own: 0{:o}): not one description",
                   a.target, r.owner_fd, g.pid, r.end, f->rec.open_flags, gf->rec.open_flags));
    auto made = std::find_if(g.thread_pidfd_recv.begin(), g.thread_pidfd_recv.end(),
                             [&](const auto& c) { return c.first == r.owner_fd; });
    int recv = made == g.thread_pidfd_recv.end() ? -1 : made->second;
    if (recv < 0) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
            return errno_error("thread pidfd channel");
        UniqueFd take_end(sv[0]), give_end(sv[1]);
        UniqueFd give(fcntl(give_end.get(), F_DUPFD_CLOEXEC, g.min_fd));
        if (!give) return errno_error("dup of a thread pidfd channel");
        keep(g, give.get());  // kept through its stage 1's close, closed by its blob
        e->give = give.get();
        recv = take_end.get();
        g.thread_pidfd_recv.push_back({r.owner_fd, recv});
        tree.share_fds.push_back(std::move(give));  // the daemon's copies: closed at the clone
        tree.share_fds.push_back(std::move(take_end));
    }
    UniqueFd take(fcntl(recv, F_DUPFD_CLOEXEC, fds.min_fd));
    if (!take) return errno_error("dup of a thread pidfd channel");
    keep(tree.members[i], take.get());
    ++e->gives;
    a.shared = false;  // no stage 1 hand-over of the giver's placeholder
    a.kobj.kind = uint32_t(image::FdKind::kPidfd);
    a.kobj.flags = e->flags;
    a.kobj.n[0] = uint64_t(e->tid);
    a.kobj.n[1] = uint64_t(take.get());
    a.kobj.n[2] = kTaken;
    fds.copies.push_back(std::move(take));  // closed after its fds (the placeholder is a dup)
    crfs_ra_thread_pidfd t = entry(a.target, e->tid, e->flags, a.cloexec);
    t.recv = 1;
    return t;
}

}  // namespace

Result<std::vector<crfs_ra_thread_pidfd>> plan_thread_pidfds(const DecodedImage& img, FdPlan& fds,
                                                             TreeRestore* tree, uint32_t index) {
    std::vector<crfs_ra_thread_pidfd> out;
    auto member = [&](pid_t p) { return p == img.task.pid || index_of(img, p) >= 0; };
    for (auto& a : fds.actions) {
        if (tree && a.shared && a.same_as < 0) {  // thpidfd2: made by an earlier member
            auto t = plan_taken(img, fds, a, *tree, index);
            if (!t) return std::unexpected(t.error());
            if (*t) out.push_back(**t);
            continue;
        }
        if (a.kobj.kind != uint32_t(image::FdKind::kPidfd) || !a.kobj.n[0] || a.same_as >= 0)
            continue;
        pid_t tid = pid_t(a.kobj.n[0]);
        bool own = std::any_of(img.threads.begin(), img.threads.end(),
                               [&](const ThreadImage& t) { return t.rec.tid == tid; });
        if (!own && member(tid)) continue;  // a process: pidfd, pidfd2
        if (!own && !tree)                  // no tree_pidfd_plan to find it and make its pipe
            return check::bad_image(
                strfmt("fd {}: pidfd of thread {}, not a thread of this task", a.target, tid));
        a.kobj.n[2] = own ? kOwnThread : kOtherThread;  // check_thread: PIDFD_THREAD of a tree
        out.push_back(entry(a.target, tid, a.kobj.flags, a.cloexec));
        out.back().wait = !own;
    }
    for (const auto& a : fds.actions)  // dups of them: one description
        for (size_t i = 0, n = out.size(); i < n; ++i)
            if (a.same_as >= 0 && a.same_as == out[i].fd) {
                out.push_back(entry(a.target, 0, 0, a.cloexec));
                out.back().dup_of = a.same_as;
            }
    // thpidfd2: epoll watches of them, added by the blob once they are made
    // (stage 1 would watch the placeholder); the others' stay stage 1's.
    size_t made = out.size();
    auto placeholder = [&](int fd) {
        return std::any_of(out.begin(), out.begin() + ptrdiff_t(made),
                           [&](const crfs_ra_thread_pidfd& e) { return e.fd == fd; });
    };
    for (auto& a : fds.actions) {
        if (a.kobj.kind != uint32_t(image::FdKind::kEpoll) || made == 0) continue;
        auto& ws = a.kobj.watches;
        for (const KobjWatch& w : ws)
            if (placeholder(w.tfd)) {
                out.push_back(entry(w.tfd, 0, 0, false));
                out.back().epfd = a.target;
                out.back().events = w.events;
                out.back().data = w.data;
            }
        std::erase_if(ws, [&](const KobjWatch& w) { return placeholder(w.tfd); });
    }
    return out;
}

namespace {

// Whether member i shares its fd table with another member (either way
// round): its table or the pipe its blob closes is not its own alone. A
// cwd shared (CLONE_FS) is no matter: such a taker is cloned where a child
// is, and makes its own fds (state/tree_share_task.h).
bool shares_with_another(const TreeRestore& tree, int i) {
    if (tree.members[size_t(i)].files_with >= 0) return true;
    for (const auto& m : tree.members)
        if (m.files_with == i) return true;
    return false;
}

// thpidfd: the member whose threads hold `tid`, or -1.
int thread_owner(const TreeRestore& tree, pid_t tid) {
    for (size_t i = 0; i < tree.members.size(); ++i) {
        const DecodedImage* img = tree.members[i].img;
        if (img && !tree.members[i].zombie)
            for (const auto& t : img->threads)
                if (t.rec.tid == tid) return int(i);
    }
    return -1;
}

// thpidfd: holder h's pidfd of a thread (plan_thread_pidfds marked it); one
// of another member t waits on t's pipe, made once per t.
Status plan_thread_target(TreeRestore& tree, int h, FdAction& a, std::vector<int>& made_r) {
    auto& ms = tree.members;
    pid_t tid = pid_t(a.kobj.n[0]);
    int t = a.kobj.n[2] == kOwnThread ? h : thread_owner(tree, tid);
    if (t < 0)
        return check::bad_image(
            strfmt("fd {}: pidfd of thread {}, not a thread of a process of the tree (held by "
                   "pid {})",
                   a.target, tid, ms[size_t(h)].pid));
    if (shares_with_another(tree, h) || shares_with_another(tree, t))
        return check::bad_image(
            strfmt("fd {}: pidfd of thread {}, and pid {} or pid {} shares its fd table with "
                   "another process",
                   a.target, tid, ms[size_t(h)].pid, ms[size_t(t)].pid));
    if (t == h) return {};
    if (a.kobj.n[2] != kOtherThread || !ms[size_t(t)].args)
        return check::bad_image(strfmt("fd {}: pidfd of thread {}", a.target, tid));
    if (made_r[size_t(t)] < 0) {  // its pipe: the write end above its fds, closed by its blob
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0) return errno_error("thread pidfd pipe");
        UniqueFd r(p[0]), w(p[1]);
        UniqueFd give(fcntl(w.get(), F_DUPFD_CLOEXEC, ms[size_t(t)].min_fd));
        if (!give) return errno_error("dup of a thread pidfd pipe");
        auto& keep = ms[size_t(t)].share_keep;  // kept through its stage 1's close
        keep.insert(std::upper_bound(keep.begin(), keep.end(), give.get()), give.get());
        ms[size_t(t)].args->threads_made_fd = give.get();
        ms[size_t(t)].args->has_threads_made = 1;
        tree.share_fds.push_back(std::move(give));  // the daemon's copy: closed at the clone
        made_r[size_t(t)] = r.get();
        tree.share_fds.push_back(std::move(r));
    }
    UniqueFd take(fcntl(made_r[size_t(t)], F_DUPFD_CLOEXEC, ms[size_t(h)].min_fd));
    if (!take) return errno_error("dup of a thread pidfd pipe");
    a.kobj.n[1] = uint64_t(take.get());
    auto& keep = ms[size_t(h)].share_keep;
    keep.insert(std::upper_bound(keep.begin(), keep.end(), take.get()), take.get());
    ms[size_t(h)].fds->copies.push_back(std::move(take));  // closed after its fds
    return {};
}

}  // namespace

Status tree_pidfd_plan(TreeRestore& tree) {
    auto& ms = tree.members;
    std::vector<int> made_r(ms.size(), -1);  // thpidfd: each member's pipe, read end
    for (size_t h = 0; h < ms.size(); ++h) {
        if (!ms[h].fds) continue;  // a zombie
        for (auto& a : ms[h].fds->actions) {
            if (a.kobj.kind != uint32_t(image::FdKind::kPidfd) || !a.kobj.n[0] || a.same_as >= 0)
                continue;
            if (a.kobj.n[2] == kTaken) {  // thpidfd2: its giver's blob makes it
                if (shares_with_another(tree, int(h)))
                    return check::bad_image(
                        strfmt("fd {}: pidfd of thread {} given by another process, and pid {} "
                               "shares its fd table with another process",
                               a.target, a.kobj.n[0], ms[h].pid));
                continue;
            }
            if (a.kobj.n[2]) {
                if (auto s = plan_thread_target(tree, int(h), a, made_r); !s) return s;
                continue;
            }
            int t = -1;
            for (size_t i = 0; i < ms.size(); ++i)
                if (ms[i].pid == pid_t(a.kobj.n[0])) t = int(i);
            bool direct = t >= 0 && ms[size_t(t)].parent == int(h);  // its child: at its turn
            for (int p = int(h); p >= 0 && t >= 0; p = ms[size_t(p)].parent) direct |= p == t;
            if (direct) continue;
            // check_target: a member its parent clones with no flags, before its fds
            int c = t < 0 ? -1 : ms[size_t(t)].parent;
            if (c < 0 || ms[size_t(t)].maker >= 0 || ms[size_t(t)].clone_flags ||
                ms[size_t(c)].min_fd < 0 || ms[size_t(c)].files_with >= 0)
                return check::bad_image(
                    strfmt("fd {}: pidfd of pid {}, which its parent does "
                           "not clone before its fds",
                           a.target, a.kobj.n[0]));
            auto ch = channel(tree, c, int(h));
            if (!ch) return std::unexpected(ch.error().context(strfmt("fd {}", a.target)));
            auto& [give, take] = *ch;
            a.kobj.n[1] = uint64_t(take.get());
            auto& keep = ms[h].share_keep;  // kept through its stage 1's close
            keep.insert(std::upper_bound(keep.begin(), keep.end(), take.get()), take.get());
            ms[h].fds->copies.push_back(std::move(take));  // closed after its fds
            ms[size_t(t)].pidfd_gives.push_back({give.get(), a.kobj.flags});
            tree.share_fds.push_back(std::move(give));  // the daemon's copy: closed at the clone
        }
    }
    return {};
}

void child_pidfd_give(const TreeRestore& tree, size_t j, pid_t pid, int status_fd) {
    for (const auto& g : tree.members[j].pidfd_gives) {
        int fd = int(syscall(SYS_pidfd_open, pid, g.flags));
        if (fd < 0) child_fail(status_fd, CRFS_RA_STEP_PIDFD_GIVE, errno, uint64_t(pid));
        if (int e = send_one_fd(g.channel, fd))
            child_fail(status_fd, CRFS_RA_STEP_PIDFD_GIVE, e, uint64_t(pid));
        ::close(fd);
    }
}

const KobjKind kPidfdKind = {
    image::FdKind::kPidfd, "pidfd", match, detect, dump, check, plan, make, nullptr};

}  // namespace crfs::state
