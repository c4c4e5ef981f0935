#include "state/tree_restore.h"

#include <fcntl.h>
#include <linux/kcmp.h>
#include <linux/sched.h>
#include <malloc.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "common/io.h"
#include "common/log.h"
#include "common/own_children.h"
#include "common/procfs.h"
#include "common/strfmt.h"
#include "common/tracers.h"
#include "common/unique_fd.h"
#include "restorer/child.h"
#include "state/check.h"
#include "state/pidfd.h"
#include "state/tree_share_task.h"
#include "state/zombie.h"

namespace crfs {
namespace {

constexpr int kStopWaitMs = 30 * 1000;

// The process records make a tree we can build: distinct pids, each parent an
// earlier process that is no zombie, sessions and groups the restore can
// rebuild (TreeGroups), zombies that can end as they did (state/zombie.h).
Status plan_members(const DecodedImage& root, const RestoreRequest& req, TreeRestore& tree) {
    const auto& procs = root.processes;
    uint32_t known =
        image::kProcessWasStopped | (root.header.version >= 5 ? image::kProcessZombie : 0);
    for (size_t i = 0; i < procs.size(); ++i) {
        const auto& p = procs[i];
        TreeRestore::Member m;
        m.pid = p.pid;
        m.pgid = p.pgid;
        m.sid = p.sid;
        m.stopped = p.flags & image::kProcessWasStopped;
        m.zombie = p.flags & image::kProcessZombie;
        if (p.pid <= 0 || (p.flags & ~known) != 0 || (m.zombie && (m.stopped || i == 0)))
            return check::bad_image(
                strfmt("process record {}: pid {}, flags 0x{:x}", i, p.pid, p.flags));
        for (size_t j = 0; j < i; ++j) {
            if (procs[j].pid == p.pid) return check::bad_image(strfmt("process {} twice", p.pid));
            if (i > 0 && procs[j].pid == p.ppid) m.parent = int(j);
        }
        if (i > 0 && m.parent < 0)
            return check::bad_image(
                strfmt("process {} has parent {}, which is no earlier process of the tree", p.pid,
                       p.ppid));
        if (i > 0 && tree.members[size_t(m.parent)].zombie)
            return check::bad_image(strfmt("process {} has parent {}, a zombie", p.pid, p.ppid));
        if (m.zombie) {
            auto z = std::find_if(root.zombies.begin(), root.zombies.end(),
                                  [&](const auto& e) { return e.first == i; });
            if (z == root.zombies.end())
                return check::bad_image(strfmt("process {}: no zombie record", p.pid));
            if (auto s = state::check_zombie(z->second, p.pid); !s) return s;
            if (!req.writer_is_root &&
                (z->second.uid != req.writer_uid || z->second.gid != req.writer_gid))
                return make_error(EPERM, strfmt("process {}: a zombie of uid {}, gid {}: only root "
                                                "restores another user's zombie",
                                                p.pid, z->second.uid, z->second.gid));
            m.zombie_rec = z->second;
        }
        tree.members.push_back(m);
    }
    if (auto s = plan_share_tasks(root, tree); !s) return s;  // share: state/tree_share_task.h
    return tree.groups.plan(procs);  // sessions and groups (state/tree_leaders.h)
}

// A zombie's stage 1: its session and group as any member's, then it ends as
// the record says; its parent does not reap it (tree_spawn_children).
[[noreturn]] void zombie_main(const TreeRestore& tree, uint32_t index, int status_fd) {
    child_hold_on_fail(-1);  // it has no children: it ends
    const auto& m = tree.members[index];
    bool failed = m.sid == m.pid ? setsid() < 0 : (m.pgid == m.pid && setpgid(0, 0) < 0);
    if (failed) child_fail(status_fd, CRFS_RA_STEP_SESSION, errno, uint64_t(m.pid));
    tree.groups.made(index);
    tree.groups.join(index, status_fd);
    state::child_zombie_exit(m.zombie_rec);
}

// The zombie children of `index` have ended; the SIGCHLD their ending queued
// (all signals are blocked in stage 1) is not the task's: its blob re-queues
// the image's pending signals.
void wait_zombies(const TreeRestore& tree, uint32_t index, int status_fd) {
    bool any = false;
    for (const auto& m : tree.members) {
        if (!m.zombie || m.parent != int(index)) continue;
        siginfo_t si{};
        while (syscall(SYS_waitid, P_PID, m.pid, &si, WEXITED | WNOWAIT, nullptr) < 0)
            if (errno != EINTR) child_fail(status_fd, CRFS_RA_STEP_CHILD, errno, uint64_t(m.pid));
        any = true;
    }
    uint64_t chld = 1ull << (SIGCHLD - 1);
    timespec zero{};
    while (any && syscall(SYS_rt_sigtimedwait, &chld, nullptr, &zero, 8) == SIGCHLD) {
    }
}

// Whether `pid` is a process of this restore: each holds its copy of the go
// pipe's read end at `go` until its blob is past the gate, the very open file
// the daemon holds at `go` (perf: kcmp, one call; the two readlinks of
// /proc/.../fd it replaces were ~40 us a member, two path walks each).
bool ours(pid_t pid, int go) {
    return syscall(SYS_kcmp, getpid(), pid, KCMP_FILE, go, go) == 0;
}

// crfsd is a child subreaper while it kills a failed tree: a member's
// children, whose parent it killed, come to it rather than to init, and it
// reaps them. Counted: trees are restored on several threads at once. While it
// is one, an orphan of another restored tree comes to crfsd too (its adoptive
// parent is crfsd, not init): when the last holder lets go, every child of
// crfsd that crfsd did not make itself is such an orphan, reaped then (a
// zombie) or once it ends (common/own_children.h; docs/trees.md "A failed
// restore").
class Subreaper {
  public:
    Subreaper() {
        std::lock_guard lock(mu_);
        if (holders_++ > 0) return;
        int was = 0;
        syscall(SYS_prctl, PR_GET_CHILD_SUBREAPER, &was, 0, 0, 0);
        was_ = was != 0;
        if (!was_) syscall(SYS_prctl, PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    ~Subreaper() {
        std::lock_guard lock(mu_);  // the next holder waits for the listing
        if (--holders_ > 0) return;
        if (!was_) syscall(SYS_prctl, PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
        auto orphans = own_children::adopt_orphans();
        if (!orphans.reaped.empty() || !orphans.adopted.empty())
            log_debug(
                "restore: orphans that came to crfsd while it was a subreaper: %zu reaped, "
                "%zu watched",
                orphans.reaped.size(), orphans.adopted.size());
    }
    Subreaper(const Subreaper&) = delete;
    Subreaper& operator=(const Subreaper&) = delete;

  private:
    static inline std::mutex mu_;  // guards holders_, was_
    static inline int holders_ = 0;
    static inline bool was_ = false;
};

// Test only: CRFS_TEST_HOLD_SUBREAPER=PATH in crfsd's environment: when PATH
// exists as a failed tree was killed and reaped, kill_tree creates PATH.held
// and, still a subreaper, waits until PATH is gone (at most 60 s), so a test
// can orphan a process of another tree into crfsd meanwhile
// (tests/fs/tree_orphans_mount_test.py). It stalls that close(2).
void test_hold_subreaper() {
    static const char* path = getenv("CRFS_TEST_HOLD_SUBREAPER");
    if (!path || access(path, F_OK) != 0) return;
    std::string held = std::string(path) + ".held";
    close(open(held.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    for (int waited = 0; waited < 60 * 1000 && access(path, F_OK) == 0; waited += 5) usleep(5000);
    unlink(held.c_str());
}

// A pidfd of `pid` when it is a process of this restore: it holds its copy
// `go` of the go pipe (a member), or it is a child of `parent` now (a member
// whose copy went, a zombie, a placeholder: made by a member that is ours; the
// root: crfsd's child).
UniqueFd our_pidfd(pid_t pid, int go, pid_t parent) {
    UniqueFd fd(int(syscall(SYS_pidfd_open, pid, 0)));  // first: what we check is the pidfd's
    if (!fd || (go >= 0 && ours(pid, go))) return fd;
    auto st = read_stat(pid);
    if (!st || st->ppid != parent) fd.reset();
    return fd;
}

// Kills every process of the tree that is ours (members, their zombies and
// placeholders) and reaps each: none is left, not even as a zombie. Members
// hold on after a failure (child_hold_on_fail), so every parent is alive
// here; with crfsd a subreaper, a process whose parent is reaped is crfsd's
// child, so reaping parents first (image order) reaps them all.
void kill_tree(const TreeRestore& tree) {
    if (!tree.cloned) return;  // nothing was made; a pid of the image may be another's
    Subreaper holding;
    std::vector<std::pair<pid_t, UniqueFd>> fds;  // parents before children
    std::vector<bool> mine(tree.members.size());
    auto parent_pid = [&](int parent) {
        return parent < 0 ? getpid() : mine[size_t(parent)] ? tree.members[size_t(parent)].pid : 0;
    };
    for (size_t i = 0; i < tree.members.size(); ++i) {
        const auto& m = tree.members[i];
        auto fd = our_pidfd(m.pid, m.go, parent_pid(m.parent));
        mine[i] = bool(fd);
        if (fd) fds.emplace_back(m.pid, std::move(fd));
    }
    for (const auto& h : tree.groups.placeholders())
        if (auto fd = our_pidfd(h.pid, -1, parent_pid(h.parent)))
            fds.emplace_back(h.pid, std::move(fd));
    for (const auto& [pid, fd] : fds) syscall(SYS_pidfd_send_signal, fd.get(), SIGKILL, nullptr, 0);
    // Each pass reaps, parents first, every process that is crfsd's child by
    // then; one that is not (its parent died before: another's to reap) stays.
    for (bool progress = true; progress && !fds.empty();) {
        progress = false;
        for (auto it = fds.begin(); it != fds.end();) {
            siginfo_t si{};
            if (own_children::waitid_pidfd(it->first, it->second.get(), &si, __WALL) < 0) {
                ++it;
                continue;
            }
            it = fds.erase(it);
            progress = true;
        }
    }
    for (const auto& [pid, fd] : fds)
        log_error(
            "restore: process %d of a failed tree was not crfsd's to reap (its parent "
            "ended before)",
            pid);
    test_hold_subreaper();
}

// A stopped process stops itself after the go; whoever looks next sees it stopped.
void wait_stopped(pid_t pid) {
    for (int waited = 0; waited < kStopWaitMs; waited += 1) {
        auto st = read_stat(pid);
        if (!st || st->state == 'T') return;
        usleep(1000);
    }
}

// treeclone: who clones member j: its maker (a table taker), else its parent.
int cloner(const TreeRestore& tree, size_t j) {
    const auto& m = tree.members[j];
    return m.maker >= 0 ? m.maker : m.parent;
}

// Whether member x is member c, or made by c, or by one c made, and so on.
bool made_under(const TreeRestore& tree, size_t x, size_t c) {
    for (size_t up = 0; up <= tree.members.size(); ++up) {  // bounded: makers come first
        if (x == c) return true;
        int by = cloner(tree, x);
        if (by < 0) return false;
        x = size_t(by);
    }
    return false;
}

// treeclone: `advice` (MADV_DOFORK, MADV_DONTFORK) over the blob areas of
// every process made under member c, and c's own unless `but_c`, in this
// process; 0 or errno. A clone copies every mapping of its maker (each with
// its page tables) and its blob unmaps them all again: a process needs only
// its own area and those of the processes it makes, not the other members'.
// A process's own area is never marked: its code pages stay in the task.
int advise_areas(const TreeRestore& tree, size_t c, bool but_c, int advice) {
    if (tree.clone_all) return 0;
    for (size_t x = 0; x < tree.members.size(); ++x) {
        const auto& m = tree.members[x];
        if (m.area_len && !(but_c && x == c) && made_under(tree, x, c) &&
            madvise(reinterpret_cast<void*>(m.area), m.area_len, advice) < 0)
            return errno;
    }
    return 0;
}

// Writes the go, handing back their syscalls to the members inside one the
// kernel restarts (state/restart.h): each attached at the gate before the go,
// followed after it. A member's ptrace is one thread's (common/tracers.h), so
// the members' stops overlap on a few threads rather than come one after
// another (each follow waits ~15 times for its member to be scheduled): member
// k on worker k % workers, none on the caller's thread unless there are no
// workers (CRFS_TREE_TRACERS=0, or one member). On an error the workers have
// exited before it returns (the members they traced detached); a member the
// caller still traces is killed here, its traced threads reaped
// (RestartHandoff::abandon), and reaped by kill_tree as its tracer.
Status go_with_handoffs(TreeRestore& tree, int go_w, const std::string& go) {
    std::vector<TreeRestore::Member*> handed;
    for (auto& m : tree.members)
        if (!m.restart.empty() && !m.zombie) handed.push_back(&m);
    auto write_go = [&]() -> Status {
        if (auto w = write_full(go_w, go.data(), go.size()); !w)
            return std::unexpected(w.error().context("restore: go pipe"));
        return {};
    };
    if (handed.empty()) return write_go();
    Tracers tracers(handed.size() > 1 ? Tracers::configured() : 0);
    const size_t first = tracers.parallel() ? 1 : 0;  // Tracers: index 0 is the caller's
    auto on_each = [&](auto step) -> Status {
        std::vector<Status> got(handed.size());
        std::vector<std::future<void>> done;
        for (size_t k = 0; k < handed.size(); ++k)
            done.push_back(tracers.post(first + k, [&, k] { got[k] = step(*handed[k]); }));
        for (auto& d : done) d.get();
        for (auto& g : got)
            if (!g) return g;
        return {};
    };
    // On the caller's thread, members it traces whose own steps went well
    // must be let go of too: their traced threads would hold kill_tree's reap.
    auto on_error = [&](Status s) -> Status {
        if (!tracers.parallel())
            for (auto* m : handed) RestartHandoff::abandon(m->restart, m->pid);
        return s;
    };
    if (auto s = on_each(
            [](TreeRestore::Member& m) { return RestartHandoff::attach_all(m.restart, m.pid); });
        !s)
        return on_error(s);
    if (auto w = write_go(); !w) return on_error(w);
    return on_each([](TreeRestore::Member& m) {
        return RestartHandoff::follow_all(m.restart, m.pid, m.stopped);
    });
}

}  // namespace

// treeperf: decode_tree_member of each later live process, in image order,
// on a thread of its own. A stream's records are all in place by then
// (decode_prefix reads only them, through a mapping of its own, and the
// root's decode, which does not change). ~75 us a process, which the
// preparation of the processes, one at a time on one CPU, waited for.
// CRFS_TREE_DECODE_INLINE=1 in crfsd's environment: each in its own
// restore_image run (the old path).
struct TreeDecodeAhead {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::optional<Result<DecodedImage>>> got;
    bool done = false;  // the thread is past its last decode
    std::atomic<bool> stop{false};
    std::thread thread;

    // False: no thread (each process decodes its own).
    bool start(const TreeRestore& tree) {
        got.resize(tree.members.size());
        try {
            thread = std::thread([this, &tree] {
                for (uint32_t i = 1; i < tree.members.size() && !stop; ++i) {
                    if (tree.members[i].zombie) continue;  // no restore_image run
                    auto d = decode_tree_member(tree, i);
                    std::lock_guard lock(mu);
                    got[i].emplace(std::move(d));
                    cv.notify_all();
                }
                std::lock_guard lock(mu);
                done = true;
                cv.notify_all();
            });
        } catch (const std::system_error&) {
            return false;
        }
        return true;
    }
    // Before the root's clone: no thread of the daemon's is left decoding.
    void end() {
        stop = true;
        if (thread.joinable()) thread.join();
    }
    ~TreeDecodeAhead() { end(); }
};

TreeRestore::TreeRestore() = default;
TreeRestore::~TreeRestore() = default;

Result<DecodedImage> tree_decoded(const RestoreRequest& req) {
    TreeRestore& tree = *req.tree;
    uint32_t i = req.tree_index;
    auto* ahead = tree.decode_ahead.get();
    if (!ahead || i >= ahead->got.size()) return decode_tree_member(tree, i);
    std::unique_lock lock(ahead->mu);
    ahead->cv.wait(lock, [&] { return ahead->got[i].has_value() || ahead->done; });
    if (!ahead->got[i]) {  // stopped before it (not on any path today)
        lock.unlock();
        return decode_tree_member(tree, i);
    }
    auto d = std::move(*ahead->got[i]);
    ahead->got[i].reset();
    return d;
}

Result<pid_t> restore_tree(const RestoreRequest& req, const DecodedImage& root) {
    const auto& procs = root.processes;
    if (req.want_pid != root.task.pid || !req.may_choose_pid)
        return make_error(EPERM,
                          strfmt("image holds a tree of {} processes: a tree comes back only "
                                 "with its original pids (its processes name each other by pid: "
                                 "wait, kill, process groups), so restore it into /crfs/{} "
                                 "(choosing pids needs root or the group the administrator named)",
                                 procs.size(), procs.front().pid));
    if (procs.size() > kMaxTreeRestore)
        return make_error(EOPNOTSUPP, strfmt("image holds a tree of {} processes; more than {} "
                                             "not supported yet",
                                             procs.size(), kMaxTreeRestore));
    TreeRestore tree;
    if (auto s = plan_members(root, req, tree); !s) return std::unexpected(s.error());
    if (auto s = tree.groups.check_free(); !s) return std::unexpected(s.error());
    for (const auto& m : tree.members)  // the others are checked by their restore_image
        if (m.zombie && (::kill(m.pid, 0) == 0 || errno == EPERM))
            return make_error(EBUSY,
                              strfmt("pid {} is in use (it would be a zombie of the tree)", m.pid));
    // Each process keeps a copy of the go pipe's read end (tree_go_fd).
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) return errno_error("restore: go pipe");
    UniqueFd go_r(p[0]), go_w(p[1]);
    tree.go_r = go_r.get();
    tree.go_w = go_w.get();
    tree.root_req = req;
    tree.root_img = &root;
    if (req.stream && tree.members.size() > 1 && !getenv("CRFS_TREE_DECODE_INLINE")) {
        tree.decode_ahead = std::make_unique<TreeDecodeAhead>();
        if (!tree.decode_ahead->start(tree)) tree.decode_ahead.reset();
    }

    RestoreRequest first = req;
    first.tree = &tree;
    first.tree_index = 0;
    auto pid = restore_image(first);
    if (!pid && req.stream && tree.cloned) req.stream->final_failure = true;  // streamtree
    if (!pid) {
        kill_tree(tree);  // before the go pipe's end: a blob at its gate would end on it
        return std::unexpected(pid.error());
    }
    size_t live = std::count_if(tree.members.begin(), tree.members.end(),
                                [](const auto& m) { return !m.zombie; });
    if (auto s = tree_seal_memfds(tree); !s) {  // every member mapped its memfds
        kill_tree(tree);
        return std::unexpected(s.error());
    }
    std::string go(live, 'G');
    if (auto s = go_with_handoffs(tree, go_w.get(), go); !s) {
        kill_tree(tree);
        return std::unexpected(s.error());
    }
    tree.sysv.made.keep();   // sysvtree: every member runs; the daemon's attaches go
    tree.names_made.keep();  // failclean
    for (const auto& m : tree.members)
        if (m.stopped) wait_stopped(m.pid);
    return *pid;
}

Status check_tree_member(const DecodedImage& img, const RestoreRequest& req) {
    const auto& procs = img.processes;
    uint32_t i = req.tree_index;
    if (i >= procs.size()) return check::bad_image(strfmt("no process {}", i));
    const auto& p = procs[i];
    const auto& t = img.task;
    if (t.pid != p.pid || t.ppid != p.ppid || t.pgid != p.pgid || t.sid != p.sid)
        return check::bad_image(
            strfmt("process {}: its task record (pid {}, ppid {}, pgid {}, sid {}) is not "
                   "its process record (pid {}, ppid {}, pgid {}, sid {})",
                   i, t.pid, t.ppid, t.pgid, t.sid, p.pid, p.ppid, p.pgid, p.sid));
    return {};
}

int tree_go_fd(const RestoreRequest& req, int min_fd) {
    TreeRestore& tree = *req.tree;
    UniqueFd copy(fcntl(tree.go_r, F_DUPFD_CLOEXEC, min_fd));
    tree.members[req.tree_index].go = copy.get();
    if (!copy && !tree.go_errno) tree.go_errno = errno;  // tree_spawn fails before any clone
    if (copy) tree.go_copies.push_back(std::move(copy));
    return tree.members[req.tree_index].go;
}

bool tree_gate(const RestoreRequest& req, crfs_restorer_args& a) {
    a.stop_self = req.tree->members[req.tree_index].stopped;
    a.go_fd = req.tree->members[req.tree_index].go;
    a.has_go = 1;
    return false;
}

void tree_note_area(const RestoreRequest& req, uint64_t start, uint64_t len) {
    auto& m = req.tree->members[req.tree_index];
    m.area = start;
    m.area_len = len;
}

namespace {

// malloc: malloc_info's arenas in short, each " nr:cur=K top=K bins=K fast=K"
// (kB): the arena's heap size, its top chunk (malloc_info's "rest" counts it
// with the bins' chunks), the chunks in its other bins, its fastbins'.
std::string malloc_arenas() {
    char* buf = nullptr;
    size_t len = 0;
    FILE* f = open_memstream(&buf, &len);
    if (!f) return {};
    (void)malloc_info(0, f);
    std::fclose(f);
    std::string xml(buf, len);
    std::free(buf);
    auto num = [](std::string_view at, std::string_view key) -> uint64_t {
        size_t k = at.find(key);
        return k == std::string_view::npos ? 0
                                           : std::strtoull(at.data() + k + key.size(), nullptr, 10);
    };
    std::string out;
    for (size_t h = xml.find("<heap nr="); h != std::string::npos;
         h = xml.find("<heap nr=", h + 1)) {
        size_t end = xml.find("</heap>", h);
        if (end == std::string::npos) break;
        std::string_view heap(xml.data() + h, end - h);
        uint64_t bins = 0;
        for (size_t t = heap.find(" total=\""); t != std::string_view::npos;
             t = heap.find(" total=\"", t + 1))
            bins += std::strtoull(heap.data() + t + 8, nullptr, 10);
        size_t fast = heap.find("type=\"fast\""), rest = heap.find("type=\"rest\"");
        size_t cur = heap.find("type=\"current\"");
        if (fast == std::string_view::npos || rest == std::string_view::npos ||
            cur == std::string_view::npos)
            continue;
        uint64_t rest_b = num(heap.substr(rest), "size=\"");
        out += strfmt(" {}:cur={} top={} bins={} fast={}", num(heap, "nr=\""),
                      num(heap.substr(cur), "size=\"") >> 10,
                      (rest_b > bins ? rest_b - bins : 0) >> 10, bins >> 10,
                      num(heap.substr(fast), "size=\"") >> 10);
    }
    return out;
}

// member: CRFS_TREE_CLONE_SMAPS=1 (benches, bench/tree_restore_profile.py):
// what the root's clone copies of the daemon, logged: the anonymous memory of
// every mapping but the stacks it marks MADV_DONTFORK, and the largest.
void log_clone_copy(const std::vector<StackRange>& marked) {
    auto text = read_file("/proc/self/smaps");
    if (!text) return;
    struct Area {
        uint64_t kb, start, end;
        std::string name;
    };
    std::vector<Area> areas;
    uint64_t total = 0;
    size_t pos = 0;
    Area cur{};
    uint64_t skip = 0;
    while (pos < text->size()) {
        size_t nl = text->find('\n', pos);
        if (nl == std::string::npos) nl = text->size();
        std::string_view line(text->data() + pos, nl - pos);
        pos = nl + 1;
        unsigned long long a = 0, b = 0, kb = 0;
        if (std::sscanf(std::string(line).c_str(), "%llx-%llx ", &a, &b) == 2 &&
            line.find(':') > line.find(' ')) {
            cur = {0, a, b, std::string(line.substr(std::min(line.size(), size_t(73))))};
            // What the marks cover of it, counted as resident (the buffers'
            // pages are; a stack's are not all, so this may take too much off).
            skip = 0;
            for (const auto& s : marked)
                if (s.start < b && a < s.end)
                    skip += (std::min<uint64_t>(b, s.end) - std::max<uint64_t>(a, s.start)) >> 10;
        } else if (line.starts_with("Anonymous:") &&
                   std::sscanf(std::string(line).c_str(), "Anonymous: %llu", &kb) == 1 &&
                   kb > skip) {
            cur.kb = kb - skip;
            total += cur.kb;
            areas.push_back(cur);
        } else if (line.starts_with("VmFlags:") && line.find(" dc") != std::string_view::npos &&
                   !areas.empty() && areas.back().start == cur.start) {
            total -= areas.back().kb;  // MADV_DONTFORK already: no clone copies it
            areas.pop_back();
        }
    }
    std::sort(areas.begin(), areas.end(), [](const Area& x, const Area& y) { return x.kb > y.kb; });
    std::string top;
    for (size_t i = 0; i < areas.size() && i < 8; ++i)
        top +=
            strfmt(" {:x}-{:x}:{}kB{}", areas[i].start, areas[i].end, areas[i].kb, areas[i].name);
    struct mallinfo2 mi = mallinfo2();
    log_info(
        "tree clone copies %llu kB anonymous in %zu mappings (malloc: %zu kB in use, %zu kB "
        "free); largest:%s",
        (unsigned long long)total, areas.size(), mi.uordblks >> 10, mi.fordblks >> 10, top.c_str());
    log_info("tree clone malloc arenas:%s", malloc_arenas().c_str());
}

}  // namespace

Result<pid_t> tree_spawn(const RestoreRequest& req, const void* plan,
                         void (*run)(const void* plan)) {
    TreeRestore& tree = *req.tree;
    uint32_t i = req.tree_index;
    if (tree.go_errno) return sys_error(tree.go_errno, "restore: copy of the go pipe");
    tree.members[i].plan = plan;
    tree.run = run;
    uint32_t after = i + 1;  // the next process to prepare: zombies need no preparation
    while (after < tree.members.size() && tree.members[after].zombie) ++after;
    if (after < tree.members.size()) {
        RestoreRequest next = tree.root_req;
        next.tree = &tree;
        next.tree_index = after;
        next.want_pid = tree.members[after].pid;
        auto r = restore_image(next);
        if (!r && tree.failure_named) return std::unexpected(r.error());
        if (!r) {
            tree.failure_named = true;  // by the run that failed: the levels above pass it on
            return std::unexpected(r.error().context(strfmt("process {}", next.want_pid)));
        }
        return tree.members[i].pid;
    }
    if (auto s = state::tree_pidfd_plan(tree); !s) return std::unexpected(s.error());
    if (tree.decode_ahead) tree.decode_ahead->end();  // every process took its decode
    // treeclone: every process is a copy of the daemon's memory, each copied
    // with its page tables and unmapped again by its blob: what malloc holds
    // free goes back first, so that no process copies it.
    // CRFS_TREE_CLONE_ALL=1 (benches: the old path): every clone takes it all.
    tree.clone_all = getenv("CRFS_TREE_CLONE_ALL") != nullptr;
    if (!tree.clone_all) malloc_trim(0);
    // clonecost: held across the clone, so that no stack it names is freed
    // (and its range mapped again for something a member needs) before the
    // root has its copy of them all.
    // Taken whatever is copied: a single process's clone marks the other
    // threads' stacks MADV_DONTFORK under it (restore.cc clone_task), this one's among them.
    ThreadStacksHold stacks;
    bool noted = !tree.clone_all && !getenv("CRFS_TREE_CLONE_STACKS");
    // member: and their FUSE request buffers (CRFS_TREE_CLONE_BUFFERS=1: copied).
    if (noted) tree.daemon_stacks = stacks.others(!getenv("CRFS_TREE_CLONE_BUFFERS"));
    // member: the restoring thread's stack below this frame is dead (frames
    // of calls made and returned): no process copies it. CRFS_TREE_CLONE_DEAD=1: copied.
    if (noted && !getenv("CRFS_TREE_CLONE_DEAD")) stacks.drop_dead_stack();
    if (getenv("CRFS_TREE_CLONE_SMAPS")) log_clone_copy(tree.daemon_stacks);
    clone_args ca{};
    ca.exit_signal = SIGCHLD;
    pid_t want = tree.members[0].pid;
    ca.set_tid = reinterpret_cast<uint64_t>(&want);
    ca.set_tid_size = 1;
    long pid;
    int clone_err;
    {
        own_children::Making making;  // crfsd's own child (common/own_children.h)
        pid = syscall(SYS_clone3, &ca, sizeof ca);
        if (pid == 0) {
            tree.run(tree.members[0].plan);
            syscall(SYS_exit_group, 127);
        }
        clone_err = errno;
        making.made(pid);
    }
    tree.cloned = pid > 0;
    tree.share_fds.clear();  // every process has its copies now (state/tree_share_restore.h)
    if (pid < 0) {
        if (clone_err == EEXIST) return make_error(EBUSY, strfmt("pid {} is in use", want));
        return sys_error(clone_err, "clone3");
    }
    return tree.members[i].pid;
}

bool tree_last_prepared(const RestoreRequest& req) {
    const auto& members = req.tree->members;
    for (size_t j = req.tree_index + 1; j < members.size(); ++j)
        if (!members[j].zombie) return false;
    return true;
}

bool tree_member_is_ours(const TreeRestore& tree, uint32_t index) {
    const auto& m = tree.members[index];
    return m.go >= 0 && ours(m.pid, m.go);
}

Status send_stream_go(int go_fd) {
    char go = 'G';
    if (::send(go_fd, &go, 1, MSG_NOSIGNAL) != 1) return errno_error("stream: sending the go");
    return {};
}

Status tree_stream_pages(TreeRestore& tree, RestoreStream& rs) {
    std::vector<TreeRestore::Member*> live;
    for (auto& m : tree.members)
        if (!m.zombie) live.push_back(&m);
    // Named here or the image's (a refusal at close): the runs of the
    // processes before pass it on as it is (tree_spawn).
    auto stop_all = [&](Error why) -> Status {
        tree.failure_named = true;
        for (auto* m : live) ::shutdown(m->stream_go, SHUT_RDWR);  // each blob reads end of file
        return std::unexpected(std::move(why));
    };
    std::vector<StreamReady> ready;
    std::vector<UniqueFd> uffds(live.size()), mems(live.size());
    for (size_t k = 0; k < live.size(); ++k) {
        auto* m = live[k];  // every live process's run set its stream_take before any clone
        auto r = m->stream_take(uffds[k], mems[k]);
        if (!r)
            return stop_all(m == &tree.members.front()
                                ? r.error()
                                : r.error().context(strfmt("process {}", m->pid)));
        ready.push_back(std::move(*r));
    }
    if (auto s = rs.ready(ready); !s) return stop_all(s.error());
    uffds.clear();  // each blob unregisters its ranges after its go
    mems.clear();
    for (auto* m : live)
        if (auto s = send_stream_go(m->stream_go); !s) return stop_all(s.error());
    return {};
}

Error tree_first_failure(const RestoreRequest& req, Error later, const crfs_ra_report& own,
                         Error own_error) {
    // Steps that wait on another member: a group's leader or its joiners
    // (ETIMEDOUT after kLeaderWaitNs), a handover, a unix connection: what
    // fails there may be the other member's failure seen from here.
    bool waits = (own.step == CRFS_RA_STEP_SESSION && own.err == ETIMEDOUT) ||
                 own.step == CRFS_RA_STEP_SHARE_FD || own.step == CRFS_RA_STEP_UNIX_CONNECT ||
                 own.step == CRFS_RA_STEP_THREAD_PIDFD_WAIT ||
                 own.step == CRFS_RA_STEP_THREAD_PIDFD_RECV;
    if (waits) return later;
    if (req.tree_index == 0) return own_error;  // the root's, unnamed as a single process's
    return own_error.context(strfmt("process {}", req.tree->members[req.tree_index].pid));
}

void tree_spawn_children(const TreeRestore& tree, uint32_t index, int status_fd) {
    // clonecost: the root runs on its copy of the restoring thread's stack;
    // the daemon's other threads' stacks (member: and their FUSE request
    // buffers) are no process's, and every process is made under the root. A failure only leaves
    // them to be copied.
    if (index == 0)
        for (const auto& s : tree.daemon_stacks)
            (void)madvise(reinterpret_cast<void*>(s.start), s.end - s.start, MADV_DONTFORK);
    // treeclone: no clone takes these areas but the one made for them
    // (tree_clone_member); a failure only leaves them to be copied.
    (void)advise_areas(tree, index, true, MADV_DONTFORK);
    tree.groups.made(index);
    tree.groups.spawn_placeholders(index, status_fd);
    for (size_t j = 0; j < tree.members.size(); ++j) {  // share: state/tree_share_task.h
        const auto& m = tree.members[j];
        if ((m.maker >= 0 ? m.maker : m.parent) == int(index))
            tree_clone_member(tree, j, m.clone_flags, status_fd);
    }
    tree.groups.join(index, status_fd);
    tree.groups.reap_placeholders(index, status_fd);
    wait_zombies(tree, index, status_fd);
}

void tree_clone_member(const TreeRestore& tree, size_t j, uint64_t flags, int status_fd) {
    clone_args ca{};
    ca.flags = flags;
    // With CLONE_PARENT clone3 wants none: the child gets the maker's (SIGCHLD).
    ca.exit_signal = (flags & CLONE_PARENT) ? 0 : SIGCHLD;
    pid_t want = tree.members[j].pid;
    ca.set_tid = reinterpret_cast<uint64_t>(&want);
    ca.set_tid_size = 1;
    // treeclone: it takes its own area and those of the processes it makes.
    if (int err = advise_areas(tree, j, false, MADV_DOFORK))
        child_fail(status_fd, CRFS_RA_STEP_CHILD, err, uint64_t(want));
    long pid = syscall(SYS_clone3, &ca, sizeof ca);
    if (pid == 0 && tree.members[j].zombie) zombie_main(tree, uint32_t(j), status_fd);
    if (pid == 0) {
        tree.run(tree.members[j].plan);
        syscall(SYS_exit_group, 127);
    }
    if (pid < 0) child_fail(status_fd, CRFS_RA_STEP_CHILD, errno, uint64_t(want));
    state::child_pidfd_give(tree, j, pid_t(pid), status_fd);  // pidfd2: before anything waits
    (void)advise_areas(tree, j, false, MADV_DONTFORK);
}

}  // namespace crfs
