#include "checkpoint/checkpoint.h"

#include <linux/kcmp.h>
#include <linux/userfaultfd.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "checkpoint/files.h"
#include "checkpoint/freeze.h"
#include "checkpoint/image_sink.h"
#include "checkpoint/incremental.h"
#include "checkpoint/live_snapshot.h"
#include "checkpoint/parasite.h"
#include "checkpoint/pid_lock.h"
#include "checkpoint/remote_syscall.h"
#include "checkpoint/task_attrs.h"
#include "common/image_writer.h"
#include "common/io.h"
#include "common/log.h"
#include "common/strfmt.h"
#include "common/test_hold.h"
#include "common/tracers.h"
#include "state/file_policy.h"
#include "state/fs.h"
#include "state/itimers.h"
#include "state/kcmp_cache.h"
#include "state/locks.h"
#include "state/memfd.h"
#include "state/memory_dump.h"
#include "state/mlockall.h"
#include "state/registry.h"
#include "state/regs.h"
#include "state/seccomp.h"
#include "state/settings.h"
#include "state/signals.h"
#include "state/sysv_msg.h"
#include "state/sysv_sem.h"
#include "state/sysv_shm.h"
#include "state/sysv_tables.h"
#include "state/task_attrs.h"
#include "state/threads.h"
#include "state/timers.h"
#include "state/tree.h"
#include "state/tree_dump.h"
#include "state/tree_share_dump.h"
#include "state/tree_share_task.h"
#include "state/tree_shmem_dump.h"
#include "state/tty.h"

namespace crfs {

using image::RecordType;

namespace {

// CRFS_CHECKPOINT_TRACE=1 logs how long each phase took (for tuning), and
// when it ended ("@" CLOCK_MONOTONIC in us: to set beside a reader's clock).
class PhaseTrace {
  public:
    PhaseTrace() : on_(getenv("CRFS_CHECKPOINT_TRACE") != nullptr), last_(monotonic_ns()) {}
    void mark(const char* phase) {
        if (!on_) return;
        uint64_t now = monotonic_ns();
        log_info("checkpoint: phase %s: %llu us @%llu", phase,
                 (unsigned long long)((now - last_) / 1000), (unsigned long long)(now / 1000));
        last_ = now;
    }
    void note(const std::string& what) {
        if (on_) log_info("checkpoint: %s", what.c_str());
    }

  private:
    bool on_;
    uint64_t last_;
};

// Everything captured while the task was frozen.
struct Capture {
    TaskAttrs attrs;
    TaskRegs regs;
    TaskSignals signals;
    image::ThreadRecord main_thread{};
    image::ThreadAttrsRecord main_attrs{};  // fid: state/thread_attrs.h
    std::vector<ThreadCapture> threads;     // every thread but the main one
    image::ItimersRecord itimers{};
    uint64_t brk = 0;
    std::vector<TaskFd> fds;
    MemoryDump memory;
    Fingerprints prints;      // fidelity: content of the files a restore reopens
    TaskSettings settings;    // fidelity: scheduling, prctl, membarrier (state/settings.h)
    state::MemfdDump memfds;  // kobj: every memfd the task holds or maps (state/memfd.h)
    std::vector<SeccompFilterEntry> seccomp;                      // fid-exact: state/seccomp.cc
    state::PosixTimers timers;                                    // fid-exact: state/timers.cc
    std::vector<image::FileLockRecord> locks;                     // fid-exact: state/locks.cc
    std::vector<image::KeepRecord> keeps;                         // incr: pages left to the base
    uint32_t mlockall_flags = 0;                                  // fid: state/mlockall.h
    std::optional<image::DeletedCwdRecord> deleted_cwd;           // delcwd: state/fs.h
    std::optional<image::DeletedCwdFromRecord> deleted_cwd_from;  // cwdtree: state/fs.h
    bool was_stopped = false;
    uint64_t frozen_ns = 0;
    uint64_t captured_at_ns = 0;
    std::vector<state::ZombieDump> zombies;  // life: the root's holds the tree's (state/zombie.h)
    std::optional<image::TtyRecord> tty;     // tty: its terminal; written in the root's records
    std::optional<image::ShareTaskRecord> share_task;  // share: state/tree_share_task.h
    std::vector<image::SysvShmRecord> sysv_shm;        // sysv: state/sysv_shm.h
    std::vector<std::string> sysv_msg;                 // sem: state/sysv_msg.h
    std::vector<std::string> sysv_sem;                 // sem: state/sysv_sem.h
    // overlap: the pages to copy once every member is captured (copy_planned).
    std::optional<PagePlan> plan;
};

// overlap (docs/trees.md "A tree's copy under its stream"): a tree whose
// members are all copied while frozen has its records sent while its pages
// are still being copied, member by member in image order, by the thread
// that froze it (and copy_threads() - 1 others); it is thawed after the
// last copy. The capture's thread and the image's writer meet here.
// thaw: a tree with a member snapshotted live is handed over the same way,
// before its thaw (`live`): that thread then only thaws it (LiveTreeImage).
struct TreeCopy {
    std::mutex mu;
    std::condition_variable cv;
    bool published = false;           // `captures` are here, their pages to be copied
    bool live = false;                // from `published` on: only the thaw is left
    bool ended = false;               // capture_tree returned
    std::vector<Capture> captures;    // from `published` on
    size_t copied = 0;                // captures [0, copied) have their pages in their buffers
    bool thawed = false;              // the tree runs again: `frozen_ns` is set
    Status failed;                    // a copy or the thaw failed (after `published`)
    bool stop = false;                // the image's writer is gone: copy no more, thaw
    std::vector<uint64_t> frozen_ns;  // each member's, once `thawed`

    void publish(std::vector<Capture> c, bool only_thaw = false) {
        std::lock_guard l(mu);
        captures = std::move(c);
        live = only_thaw;
        published = true;
        cv.notify_all();
    }
    bool stopped() {
        std::lock_guard l(mu);
        return stop;
    }
    // The thread that froze the tree is done: the tree thawed, `thaw` the
    // first failure (of a copy or the thaw), each member's frozen time.
    void end(Status thaw, std::vector<uint64_t> frozen) {
        std::lock_guard l(mu);
        failed = std::move(thaw);
        frozen_ns = std::move(frozen);
        thawed = true;
        cv.notify_all();
    }
    // Waits until member `i`'s pages are copied (or no more will be).
    Status wait_copied(size_t i) {
        std::unique_lock l(mu);
        cv.wait(l, [&] { return copied > i || thawed; });
        if (copied > i) return {};
        if (!failed) return failed;
        return make_error(EIO, strfmt("member {}: its pages were not copied", i));
    }
};

uint64_t realtime_ns() {
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}

Status check_task(pid_t pid, uint64_t starttime, const TaskStat& st) {
    if (st.starttime != starttime)
        return make_error(ESRCH, strfmt("task {} is gone (pid reused)", pid));
    if (st.state == 'Z' || st.state == 'X')
        return make_error(ESRCH, strfmt("task {} is exiting", pid));
    return {};
}

// Takes the task's connections read in repair mode out of it again.
void end_repair(pid_t pid, const std::vector<TaskFd>& fds) {
    for (const TaskFd& f : fds)
        if (f.inet && f.inet->repair && f.rec.same_as < 0) state::tcp_end_repair(pid, f.rec.fd);
}

// The view of `pid` the root's detect made (a tree's member), or a new one
// that keeps those it makes (the root's: state/tree.cc fills `views`).
state::TaskView& member_view(pid_t pid, state::MemberViews& views) {
    auto& v = views[pid];
    if (!v) {
        v = std::make_shared<state::TaskView>(pid, getpid());
        v->set_member_views(&views);
    }
    return *v;
}

// A tree's members' views read ahead, each on its member's tracer, while the
// tree is frozen and before the root's capture: the /proc files of a member
// that the root's tree-wide detect (state/tree.cc) and the member's capture
// read from its view (stat, status, each thread's status, smaps, fds, timers,
// the cwd and root links, the stats of its status file and IPC namespace), so
// that the detect, one thread checking every member, finds them read and the
// reads use both CPUs. Nothing shared is touched: the views are made here
// first, and each is its tracer's alone until all are read; a read that fails
// is not kept, and the detect reads it again and says why.
// CRFS_TREE_VIEWS_SERIAL=1 in crfsd's environment: not read ahead (the old
// path, for benches).
void read_ahead(FrozenTree& tree, Tracers& tracers, state::MemberViews& views) {
    auto& members = tree.members();
    if (getenv("CRFS_TREE_VIEWS_SERIAL") || !tracers.parallel() || members.size() < 2) return;
    std::vector<state::TaskView*> ahead;
    for (auto& m : members) ahead.push_back(&member_view(m.pid, views));
    auto read = [&](size_t i) {
        state::TaskView& v = *ahead[i];
        (void)v.stat();
        (void)v.status();
        for (FrozenTask* t : members[i].threads.others()) (void)v.thread_status(t->pid());
        (void)v.smaps();
        (void)v.fds();
        // And what the root's detect asked of each member's /proc on its own
        // thread (~3 ms of a 64-process tree's): its timers, cwd and root
        // links, the owner of its status file, its IPC namespace.
        (void)v.timers();
        (void)v.link("cwd");
        (void)v.link("root");
        (void)v.stat_of("status");
        (void)v.stat_of("ns/ipc");
    };
    std::vector<std::future<void>> done;
    for (size_t i = 1; i < members.size(); ++i)
        done.push_back(tracers.post(members[i].tracer, [&read, i] { read(i); }));
    read(0);  // the root's, here
    for (auto& d : done) d.get();
}

// perf: a tree's kcmp sorts made on its tracers while frozen, and adopted by
// the cache its views share (state/kcmp_cache.h: a sorted set answers any two
// of its items). The root's tree-wide detect sorted them on its own thread,
// the other CPU idle (~2,500 calls of ~2.4 us, most of its ~8.5 ms, in the
// 64 x 1 MiB bench tree). The members' memory, signal handlers, fd tables and
// fs are sorted while their views are read ahead (posted when made); the fds
// of each inode that 8 or more fds of the tree hold once they were, each inode
// in two halves, merged by its sort here (finish). Each job has its own cache:
// nothing shared is touched until all ran. CRFS_TREE_KCMP_SERIAL=1 in crfsd's
// environment: not sorted ahead (the old path, for benches).
class Presort {
  public:
    Presort(FrozenTree& tree, Tracers& tracers) : tree_(tree), tracers_(tracers) {
        auto& members = tree.members();
        on_ = !getenv("CRFS_TREE_KCMP_SERIAL") && tracers.parallel() && members.size() >= kMin;
        if (!on_) return;
        std::vector<state::KcmpItem> procs;
        for (auto& m : members) procs.push_back({m.pid, 0});
        for (int type : {KCMP_VM, KCMP_SIGHAND, KCMP_FILES, KCMP_FS}) post(type, procs);
    }
    ~Presort() {
        for (auto& d : done_) d.wait();  // the jobs use this object's members
    }
    // The fds' sorts, from the views read ahead (a view whose fds were not
    // read: its detect reads them and says why), then every cache adopted.
    void finish(state::MemberViews& views) {
        if (!on_) return;
        std::map<std::pair<dev_t, ino_t>, std::vector<state::KcmpItem>> by_inode;
        for (auto& m : tree_.members())
            if (auto fds = member_view(m.pid, views).fds(); fds)
                for (const state::FdView& f : **fds)
                    by_inode[{f.st.st_dev, f.st.st_ino}].push_back(state::kcmp_fd(m.pid, f.fd));
        std::vector<std::vector<state::KcmpItem>> merged;
        for (auto& [inode, items] : by_inode) {
            if (items.size() < kMin) continue;
            // In the order classes() sorts them: its merge sort's halves are these.
            std::sort(items.begin(), items.end());
            items.erase(std::unique(items.begin(), items.end()), items.end());
            const auto mid = items.begin() + long(items.size() / 2);
            post(KCMP_FILE, {items.begin(), mid});
            post(KCMP_FILE, {mid, items.end()});
            merged.push_back(std::move(items));
        }
        for (auto& d : done_) d.get();
        done_.clear();
        auto shared = member_view(tree_.members().front().pid, views).kcmp();
        for (auto& job : jobs_) shared->adopt(std::move(job->cache));
        for (const auto& items : merged) (void)shared->classes(KCMP_FILE, items);
    }

  private:
    static constexpr size_t kMin = 8;  // fewer: the detect's pairs ask about as much
    struct Job {
        int type;
        std::vector<state::KcmpItem> items;
        state::KcmpCache cache;
    };
    void post(int type, std::vector<state::KcmpItem> items) {
        jobs_.push_back(std::make_unique<Job>(Job{type, std::move(items), {}}));
        Job* job = jobs_.back().get();
        done_.push_back(tracers_.post(jobs_.size(), [job] {
            (void)job->cache.classes(job->type, job->items);  // a failure: the detect asks
        }));
    }
    FrozenTree& tree_;
    Tracers& tracers_;
    bool on_ = false;
    std::vector<std::unique_ptr<Job>> jobs_;
    std::vector<std::future<void>> done_;
};

// Held by a member's capture but for its ptrace stops (the remote syscalls)
// when members are captured together (capture_tree): the rest reads what the
// members' views share (the views themselves, their kcmp answers, the holder
// scan) and is one member's at a time. Without a mutex it does nothing.
class Serial {
  public:
    explicit Serial(std::mutex* mu)
        : lock_(mu ? std::unique_lock(*mu) : std::unique_lock<std::mutex>()) {}
    void unlock() {
        if (lock_.mutex()) lock_.unlock();
    }
    void lock() {
        if (lock_.mutex()) lock_.lock();
    }

  private:
    std::unique_lock<std::mutex> lock_;
};

// Test only: whether the file at `path` (null: its variable unset) holds `member`.
bool names_member(const char* path, size_t member) {
    if (!path) return false;
    auto text = read_file(path);
    return text && !text->empty() && std::strtoul(text->c_str(), nullptr, 10) == member;
}

// Test only: CRFS_TEST_CAPTURE_FAIL=PATH in crfsd's environment; while PATH
// holds a number N, the capture of a tree's member N (0: the root) fails
// right after its parasite ran, before the remote syscalls are finished.
bool fault_at(size_t member) {
    static const char* path = getenv("CRFS_TEST_CAPTURE_FAIL");
    return names_member(path, member);
}

// Test only: CRFS_TEST_HOLD_FROZEN=PATH in crfsd's environment: a capture,
// the task attached and frozen, makes PATH.held and waits until PATH exists
// (at most 60 s), so a test can look at a task while its checkpoint holds it
// (tests/fs/busy_reason_mount_test.py).
void test_hold_frozen() {
    static const char* path = getenv("CRFS_TEST_HOLD_FROZEN");
    test_hold_until_made(path);
}

// overlap: a member's memory planned while frozen, its pages copied later
// (copy_planned), once the tree's sharing took out what another member holds.
// A plan that reads shared memory through files (an fd per mapping) is
// copied now, as before: held until the copies, a tree's many such fds could
// pass the worker's RLIMIT_NOFILE.
Result<MemoryDump> planned_memory(pid_t pid, std::vector<MapsEntry> maps, PageBuffer buffer,
                                  std::optional<PagePlan>& plan) {
    auto p = plan_pages(pid, maps);
    if (!p) return std::unexpected(p.error());
    if (!p->fds.empty()) {
        if (auto r = copy_pages(pid, *p, buffer); !r) return std::unexpected(r.error());
        return copied_dump(std::move(maps), *p, std::move(buffer));
    }
    MemoryDump d;
    d.maps = std::move(maps);
    d.runs = p->runs;  // the sharing (state/tree_shmem_dump.h) erases from these
    d.pages_scanned = p->pages_scanned;
    d.buffer = std::move(buffer);
    plan = std::move(*p);
    return d;
}

// Test only: CRFS_TEST_COPY_FAIL=PATH in crfsd's environment; while PATH
// holds a number N, the copy of a tree's member N fails (overlap: its
// records were sent).
bool copy_fault_at(size_t member) {
    static const char* path = getenv("CRFS_TEST_COPY_FAIL");
    return names_member(path, member);
}

// overlap: how many threads copy a tree's members as its image goes out:
// CRFS_TREE_COPY_THREADS=N in crfsd's environment (1..8), else kCopyThreads.
size_t copy_threads() {
    constexpr size_t kCopyThreads = 1;
    const char* n = getenv("CRFS_TREE_COPY_THREADS");
    unsigned long v = n ? std::strtoul(n, nullptr, 10) : 0;
    return v >= 1 && v <= 8 ? v : kCopyThreads;
}

// Test only: CRFS_TEST_COPY_HOLD=PATH in crfsd's environment: a tree copied
// as its image goes out (overlap) makes PATH.held before the copy of its last
// member and waits until PATH exists (at most 60 s), so a test can look at
// the tree while the first bytes are out (tests/fs/tree_copy_mount_test.py).
void test_hold_copy() {
    static const char* path = getenv("CRFS_TEST_COPY_HOLD");
    test_hold_until_made(path);
}

// overlap: copies the runs of `plan` the tree's sharing left in d.runs (both
// in address order) into d.buffer; d.runs then says where each lies.
Status copy_planned(pid_t pid, PagePlan& plan, MemoryDump& d) {
    size_t kept = 0, j = 0;
    uint64_t pages = 0;
    for (size_t r = 0; r < plan.runs.size() && j < d.runs.size(); ++r) {
        if (plan.runs[r].vaddr != d.runs[j].vaddr) continue;
        plan.runs[kept] = plan.runs[r];
        plan.sources[kept] = plan.sources[r];
        pages += plan.runs[r].nr_pages;
        ++kept, ++j;
    }
    if (j != d.runs.size())
        return make_error(EIO, strfmt("task {}: a run to copy is not in its plan", pid));
    plan.runs.resize(kept);
    plan.sources.resize(kept);
    plan.pages = pages;
    if (auto r = copy_pages(pid, plan, d.buffer); !r) return r;
    d.runs = std::move(plan.runs);
    d.pages_copied = pages;
    return {};
}

// What a capture reads of the task's own /proc files and ptrace alone (its
// personality, links, auxv and limits; its registers; its main thread's
// record): no view, nothing another member's capture touches. The task is
// frozen: the same whenever read while it is. On the thread that traces it.
struct OwnReads {
    TaskAttrs attrs;
    TaskRegs regs;
    image::ThreadRecord main_thread{};
};

Result<OwnReads> read_own(pid_t pid, const ProcStat& frozen_stat) {
    OwnReads r;
    auto attrs = read_task_attrs(pid);
    if (!attrs) return std::unexpected(attrs.error());
    r.attrs = std::move(*attrs);
    auto regs = read_regs(pid);
    if (!regs) return std::unexpected(regs.error());
    r.regs = std::move(*regs);
    auto main_thread = read_thread_record(pid, pid, &frozen_stat.comm);  // perf: its stat's
    if (!main_thread) return std::unexpected(main_thread.error());
    r.main_thread = *main_thread;
    return r;
}

// Runs on the thread that traces the task (common/tracers.h): ptrace is per
// thread, and should anything leave the task attached, the thread's exit
// detaches it. The task is one of a tree frozen, and released, by
// capture_tree (state/tree_dump.h), whose freeze read `frozen_stat` once it
// was frozen; `live`: its memory is write-protected for
// a live snapshot instead of copied. `checked`: a member the root's detect
// already checked, every kind on its view, in this freeze (state/tree.cc
// detect_member), and found nothing. `serial`: held but for the ptrace stops
// (Serial), when members are captured together. `fault`: fail (tests).
// `arena`: a tree's page buffers (PageArena), where its copy takes its room.
// `spare`: a page buffer with its first room reserved before the freeze (a
// live snapshot of a process with no children), taken and grown if short.
// `detected`: called once the task's detect found nothing, still under
// `serial` (a tree's root: its detect checked every member, and the others'
// captures start from there). `own`: its read_own, made ahead on this
// thread (a tree's members but the root: capture_tree), else read here.
Result<Capture> capture(pid_t pid, const ProcStat& frozen_stat, FrozenThreads& frozen, bool live,
                        Tracking* track, std::vector<pid_t> image_pids, state::MemberViews& views,
                        bool checked, std::mutex* serial, bool fault,
                        std::shared_ptr<PageArena> arena, PageBuffer* spare, ProtectAhead* ahead,
                        bool copy_later, const std::function<void()>& detected,
                        std::optional<Result<OwnReads>> own) {
    Capture c;
    PhaseTrace trace;
    // timer: the other threads' queues, read with the POSIX timers.
    std::map<pid_t, std::vector<image::SiginfoRecord>> thread_queues;
    // perf: its stat as its freeze read it once frozen (state/tree_dump.h),
    // not read again: what it gives here (start time, comm) stays so.
    const TaskStat* st = &frozen_stat;
    const uint64_t starttime = st->starttime;

    // Size the page buffer before the copy, so the copy does not fault it in.
    // The task is frozen: its RSS is what the copy takes, give or take the
    // kernel's per-CPU counter slack; the buffer grows if it is more. (It was
    // RSS + 1 MiB, pre-faulted: at 1 MiB per process, twice the memory.)
    // A live snapshot copies little; it is likely where the task has
    // CAP_SYS_PTRACE (only a guess for the size: the kernel decides below).
    // A tree's member takes its exact room from the tree's arena at the copy.
    PageBuffer buffer;
    if (arena) {
        buffer.draw_from(std::move(arena));
    } else {
        if (spare) buffer = std::move(*spare);
        auto status = read_task_status(pid);
        if (!status) return std::unexpected(status.error());
        bool small = live && (status->cap_eff >> 19 & 1);
        // incr: a delta copies what was written since the last one; the buffer grows if needed.
        uint64_t want = track && track->delta ? 0 : status->rss_bytes;
        if (auto r = buffer.reserve(small ? 1 << 20 : want + (128 << 10)); !r)
            return std::unexpected(r.error());
        trace.mark("reserve buffer");
    }

    // perf: what the task's own /proc files and ptrace alone give
    // (read_own), read before Serial, so that a tree's members read it on
    // both CPUs at once (~0.2 ms of each member's ~0.5-0.75 ms under Serial,
    // measured); a tree's members but the root read it ahead, while the
    // root's detect runs (capture_tree).
    if (!own) own.emplace(read_own(pid, frozen_stat));
    if (!*own) return std::unexpected(own->error());
    c.regs = std::move((*own)->regs);
    c.main_thread = (*own)->main_thread;

    Serial one_at_a_time(serial);
    FrozenTask& task = frozen.main();
    c.captured_at_ns = realtime_ns();
    c.was_stopped = task.was_stopped();
    trace.mark("freeze");
    test_hold_frozen();
    // The same detection as `reason` (state/registry.h), now that nothing can
    // change. Its parse of smaps is the memory dump's too: one read, not two
    // (the costliest /proc file: ~10 us per area).
    state::TaskView& view = member_view(pid, views);  // a tree's: read once (state/kind.h)
    // One process: nothing reads its view after this capture (a tree's members'
    // are read again for what they share), so its smaps is taken, not copied.
    bool alone = image_pids.empty();
    view.set_image_pids(std::move(image_pids));  // a tree's: what members share is restored
    // A member the root's tree-wide detect checked (its view, the same frozen
    // state) is not checked again: the same kinds would read the same.
    if (auto why = checked ? Result<state::Reasons>() : state::detect_reasons(view);
        !why || !why->empty())
        return why ? make_error(EBUSY, strfmt("task {}: {}", pid, why->front()))
                   : std::unexpected(why.error());
    if (detected) detected();
    trace.mark("detect");
    std::vector<MapsEntry> maps;
    if (alone) {
        auto taken = view.take_smaps();
        if (!taken) return std::unexpected(taken.error());
        maps = std::move(*taken);
    } else {
        auto smaps = view.smaps();
        if (!smaps) return std::unexpected(smaps.error());
        maps = **smaps;
    }
    if (auto s = view.status(); s && (*s)->seccomp == 2) {  // fid-exact
        auto filters = state::dump_seccomp(pid, (*s)->seccomp_filters);
        if (!filters) return std::unexpected(filters.error());
        c.seccomp = std::move(*filters);
    }
    auto locks = state::dump_locks(view);  // fid-exact
    if (!locks) return std::unexpected(locks.error());
    c.locks = std::move(*locks);

    // Its stat and status as its view read them while frozen (perf: not twice).
    auto view_stat = view.stat();
    if (!view_stat) return std::unexpected(view_stat.error());
    auto view_status = view.status();
    if (!view_status) return std::unexpected(view_status.error());
    c.attrs = std::move((*own)->attrs);
    if (auto r = with_stat(c.attrs, **view_stat, **view_status); !r)
        return std::unexpected(r.error());
    auto deleted_cwd = state::dump_deleted_cwd(pid, c.attrs.cwd);  // delcwd
    if (!deleted_cwd) return std::unexpected(deleted_cwd.error());
    c.deleted_cwd = *deleted_cwd;
    // The pid might have been reused between the first look and the seize.
    if (auto ok = check_task(pid, starttime, c.attrs.stat); !ok) return std::unexpected(ok.error());

    auto fds = read_fds(view);  // the fds its detect read, once
    if (!fds) return std::unexpected(fds.error());
    c.fds = std::move(*fds);
    auto tty = state::dump_tty(pid, c.attrs.stat, c.fds);  // tty: state/tty.h
    if (!tty) return std::unexpected(tty.error());
    c.tty = *tty;
    // Connections read in repair mode stay in it only if the image is made.
    struct RepairGuard {
        pid_t pid;
        const std::vector<TaskFd>& fds;
        bool armed = true;
        ~RepairGuard() {
            if (armed) end_repair(pid, fds);
        }
    } repair_guard{pid, c.fds};
    trace.mark("attrs, regs, fds");

    uint64_t vdso_start = 0, vdso_end = 0;
    UniqueFd uffd;                                 // live snapshot
    if (track) check_tracking_uffd(maps, *track);  // incr
    for (const auto& m : maps)
        if (m.path == "[vdso]") vdso_start = m.start, vdso_end = m.end;
    // SIGTRAP: the statuses as read while frozen (parasite.h), from the view,
    // before the stops, which read nothing shared.
    auto status_frozen = view.status();
    if (!status_frozen) return std::unexpected(status_frozen.error());
    std::vector<FrozenTask*> others = frozen.others();
    std::vector<const ProcStatus*> thread_statuses;
    for (FrozenTask* t : others) {
        auto ts = view.thread_status(t->pid());  // read by its detect while frozen
        if (!ts) return std::unexpected(ts.error().context(strfmt("thread {}", t->pid())));
        thread_statuses.push_back(*ts);
    }
    // For the memfds and System V objects below, outside Serial: the image's
    // pids as its view has them, and the tables read once for the whole
    // checkpoint (thread-safe: state/sysv_tables.h).
    const std::vector<pid_t> image_pids_now = view.image_pids();
    const std::shared_ptr<state::SysvTables> sysv = view.sysv_tables();
    // And its fds' links and timers as its view read them (the memfds' and
    // the POSIX timers' dumps).
    std::string timers_text;
    if (auto t = view.timers(); t) {
        timers_text = **t;
    } else {
        return std::unexpected(t.error());
    }
    std::vector<std::pair<int, std::string>> fd_links;
    {
        auto fdv = view.fds();
        if (!fdv) return std::unexpected(fdv.error());
        for (const state::FdView& f : **fdv) fd_links.emplace_back(f.fd, f.link);
    }
    one_at_a_time.unlock();
    {
        auto rs = RemoteSyscall::prepare(task, vdso_start, vdso_end);
        if (!rs) return std::unexpected(rs.error());
        // The parasite's area, kept mapped for the other threads (they share
        // it: one stop each instead of three) and for the delta tracking's
        // userfaultfd (take_task_uffd: its two calls run there); unmapped
        // before the main thread's registers are put back (finish), or on
        // an error here.
        ParasiteArea area;
        // perf: the live snapshot's userfaultfd made by the parasite's batch
        // and taken over while its area is mapped: a stop fewer than
        // take_task_uffd's own call. CRFS_UFFD_OWN_CALL=1 in crfsd's
        // environment: made after, as before.
        const ParasiteOutput::Call make_uffd{SYS_userfaultfd, {task_uffd_flags()}, 0};
        const bool uffd_in_batch = live && !ahead && !getenv("CRFS_UFFD_OWN_CALL");
        const bool makes_uffd = (live && !ahead && !uffd_in_batch) || (track && !track->uffd);
        bool uffd_taken = false;
        // fid: mlockall's flags from the parasite's own area (state/mlockall.h).
        std::optional<uint32_t> locked_flags;
        auto out = run_parasite(
            **rs,
            [&](uint64_t area, const ParasiteOutput& o) -> Status {
                if (auto made = uffd_in_batch ? also_result(o) : std::nullopt) {
                    auto fd = adopt_task_uffd(pid, **rs, *made, kLiveUffdFeatures, nullptr);
                    if (!fd) return std::unexpected(fd.error());
                    uffd = std::move(*fd);
                    uffd_taken = true;
                }
                auto f = state::mlockall_of_area(pid, area, lock_probe_result(o));
                if (!f) return std::unexpected(f.error());
                locked_flags = *f;
                return {};
            },
            *status_frozen, others.empty() && !makes_uffd ? nullptr : &area,
            uffd_in_batch ? &make_uffd : nullptr, maps.empty() ? 0 : maps.front().start);
        if (!out) return std::unexpected(out.error());
        if (fault) return make_error(EIO, strfmt("task {}: CRFS_TEST_CAPTURE_FAIL", pid));
        auto sig = read_signals(pid, *out, (*rs)->saved_sigmask());
        if (!sig) return std::unexpected(sig.error());
        c.signals = std::move(*sig);
        c.itimers = dump_itimers(*out);  // state/itimers.h
        c.brk = uint64_t(out->brk);
        ParasiteAnswers asked(**rs, *out);  // the batch's answers (checkpoint/parasite.h)
        auto settings = read_task_settings(pid, asked.in());  // fidelity
        if (!settings) return std::unexpected(settings.error());
        c.settings = std::move(*settings);
        auto locked =
            locked_flags
                ? Result<uint32_t>(*locked_flags)
                : state::dump_mlockall(pid, [&](long nr, const std::array<uint64_t, 6>& v) {
                      return (*rs)->call(nr, v[0], v[1], v[2], v[3], v[4], v[5]);
                  });  // fid
        if (!locked) return std::unexpected(locked.error());
        c.mlockall_flags = *locked;
        {  // fid-exact: POSIX timers, asked in the task
            auto timers = state::dump_posix_timers(pid, timers_text, asked.in(), [&]() -> Status {
                auto again = read_signals(pid, *out, (*rs)->saved_sigmask());
                if (!again) return std::unexpected(again.error());
                c.signals = std::move(*again);
                // timer: a timer may signal another thread: its queue too, at this instant.
                for (FrozenTask* t : frozen.others()) {
                    auto q = peek_pending(t->pid(), false);
                    if (!q) return std::unexpected(q.error());
                    thread_queues[t->pid()] = std::move(*q);
                }
                return {};
            });
            if (!timers) return std::unexpected(timers.error());
            c.timers = std::move(*timers);
        }
        auto cctid = read_tid_address(pid, asked.in());
        if (!cctid) return std::unexpected(cctid.error());
        c.main_thread.clear_child_tid = *cctid;
        auto attrs = state::dump_thread_attrs(pid, asked.in());  // fid
        if (!attrs) return std::unexpected(attrs.error());
        c.main_attrs = *attrs;
        // Else made by the parasite's batch, or before the freeze (taken for protect_memory).
        if (live && !ahead && !uffd_taken) {
            auto fd = take_task_uffd(pid, **rs, kLiveUffdFeatures, 0, &area);
            if (!fd) return std::unexpected(fd.error());
            uffd = std::move(*fd);
        }
        if (track && !track->uffd) {  // incr: asynchronous, so user-mode faults suffice
            auto fd = take_task_uffd(pid, **rs, kTrackUffdFeatures, UFFD_USER_MODE_ONLY, &area);
            if (!fd) return std::unexpected(fd.error());
            if (!*fd)
                return make_error(EOPNOTSUPP,
                                  "no asynchronous write-protect userfaultfd for the "
                                  "task (Linux 6.7 or later), so no delta tracking");
            track->uffd = std::move(*fd);
        }
        for (size_t i = 0; i < others.size(); ++i) {
            FrozenTask* t = others[i];
            auto th = capture_thread(pid, *t, vdso_start, vdso_end, thread_statuses[i], &area);
            if (!th) return std::unexpected(th.error().context(strfmt("thread {}", t->pid())));
            // timer: the queue read together with the timers (one instant for both).
            if (auto q = thread_queues.find(t->pid()); q != thread_queues.end())
                th->pending = std::move(q->second);
            c.threads.push_back(std::move(*th));
        }
        if (auto r = area.unmap(); !r) return std::unexpected(r.error());
        if (auto r = (*rs)->finish(); !r) return std::unexpected(r.error());
        // The saved registers, with a syscall restart applied, are what the task resumes with.
        const user_regs_struct resumed = restart_fixup((*rs)->saved_regs());
        std::memcpy(&c.regs.gp, &resumed, sizeof c.regs.gp);
        c.regs.restart = syscall_restart((*rs)->saved_regs());
    }
    trace.mark("remote syscalls");
    // A plain copy reads this member's own pages into its own slice of the
    // tree's arena (thread-safe) and asks no view: outside Serial, so that one
    // member's copy overlaps another's reads on the other CPU.
    // CRFS_TREE_COPY_SERIAL=1 in crfsd's environment: under it (the old path).
    // A live member's protect_memory (its own userfaultfd, pagemap and mem
    // file) is outside it too (session 38: the 16 x 16 MiB tree's "members
    // captured" 17.7 -> 15.2 ms); CRFS_TREE_PROTECT_SERIAL=1: under it.
    const bool outside_serial = serial && !track && !(live && ahead) &&
                                (!uffd || !getenv("CRFS_TREE_PROTECT_SERIAL")) &&
                                !getenv("CRFS_TREE_COPY_SERIAL");
    if (serial && !outside_serial) {
        one_at_a_time.lock();
        trace.mark("wait for the other members");
    }

    // ProtectAhead's uffd: its thread answered the faults of the remote
    // syscalls' writes into memory it protected (the scratch on a thread's
    // stack) until now; protect_memory protects those pages again.
    if (live && ahead) uffd = ahead->take();
    auto mem = track  ? dump_memory_tracked(pid, std::move(maps), std::move(buffer), *track)
               : uffd ? protect_memory(pid, std::move(maps), std::move(buffer), std::move(uffd))
               : copy_later ? planned_memory(pid, std::move(maps), std::move(buffer), c.plan)
                            : dump_memory(pid, std::move(maps), std::move(buffer));
    if (!mem) return std::unexpected(mem.error());
    c.memory = std::move(*mem);
    if (track) c.keeps = std::move(track->keeps);
    if (c.memory.live && !getenv("CRFS_LIVE_RSEQ_FAULTS")) {
        // perf: the rseq areas' faults answered while frozen, not at the
        // thaw (LiveMemory::save_ahead). CRFS_LIVE_RSEQ_FAULTS=1 in crfsd's
        // environment: left to the thaw (the old path).
        std::vector<uint64_t> rseq{c.main_thread.rseq_addr};
        for (const ThreadCapture& t : c.threads) rseq.push_back(t.rec.rseq_addr);
        c.memory.live->save_ahead(rseq);
    }
    trace.mark("memory");
    // perf: these read only the task's own files and the tables, not a view:
    // outside Serial (they were under it, a second wait for it per member).
    auto memfds = state::dump_memfds(pid, fd_links, c.memory.maps);  // kobj, while frozen
    if (!memfds) return std::unexpected(memfds.error());
    c.memfds = std::move(*memfds);
    auto sysv_shm = state::dump_sysv_shm(c.memory.maps);  // sysv, while frozen
    if (!sysv_shm) return std::unexpected(sysv_shm.error());
    c.sysv_shm = std::move(*sysv_shm);
    auto sysv_msg = state::dump_sysv_msg(pid, image_pids_now, *sysv);  // sem, while frozen
    if (!sysv_msg) return std::unexpected(sysv_msg.error());
    c.sysv_msg = std::move(*sysv_msg);
    auto sysv_sem = state::dump_sysv_sem(pid, image_pids_now, *sysv);  // sem, while frozen
    if (!sysv_sem) return std::unexpected(sysv_sem.error());
    c.sysv_sem = std::move(*sysv_sem);

    trace.mark("memfds, sysv");
    repair_guard.armed = false;  // capture_tree ends repair if another process fails
    return c;                    // released, and its files fingerprinted, by capture_tree
}

// share (state/tree_share_task.h): a member sharing an earlier one's fd table
// or fs gets a share-task record; its fds are its group's first's, not written.
Status share_tasks_between_members(std::span<const pid_t> pids, std::vector<Capture>& out,
                                   state::KcmpCache& kcmp) {
    std::vector<pid_t> ppids;
    for (const Capture& c : out) ppids.push_back(pid_t(c.attrs.stat.ppid));
    std::vector<image::ShareTaskRecord> recs;
    state::Reasons why;
    state::classify_task_sharing(pids, ppids, recs, why, kcmp);
    if (!why.empty()) return make_error(EBUSY, why.front());
    for (size_t i = 0; i < out.size(); ++i) {
        if (!recs[i].files_pid && !recs[i].fs_pid) continue;
        out[i].share_task = recs[i];
        if (!recs[i].files_pid) continue;
        if (!out[i].locks.empty())
            return make_error(EBUSY, state::share_lock_reason(pids[i], recs[i].files_pid));
        out[i].fds.clear();
    }
    return {};
}

// The task and its descendants (state/tree_dump.h), parents first; a task
// without children is one capture, as before. (Its children are listed only
// once it is frozen: a child forked just before is in the image.)
// live: a tree's member whose memory (its RSS as read while frozen) is at
// least this is snapshotted live, as a single process is (its pages stay in
// it, write-protected, and are streamed after the thaw); a smaller one is
// copied while frozen, into the tree's arena: for it the userfaultfd's two
// calls (two tracee stops, run in the parasite's area: take_task_uffd), its
// registration and its fault thread cost more than the copy (measured when
// they were four stops). CRFS_TREE_LIVE_MIN_KIB=K in crfsd's environment
// sets the bound (a huge K: every member copied while frozen, the old path).
uint64_t live_member_min_bytes() {
    static const uint64_t bytes = [] {
        const char* k = getenv("CRFS_TREE_LIVE_MIN_KIB");
        return k && *k ? std::strtoull(k, nullptr, 10) << 10 : uint64_t(4) << 20;
    }();
    return bytes;
}

bool big_enough_for_live(state::MemberViews& views, pid_t pid) {
    auto v = views.find(pid);
    if (v == views.end()) return false;
    auto st = v->second->status();
    return st && (*st)->rss_bytes >= live_member_min_bytes();
}

// ProtectAhead (checkpoint/live_snapshot.h) is tried for a process holding at
// least this (its RSS): below it the write-protect walk costs less than the
// stop that makes the userfaultfd before the freeze. CRFS_LIVE_AHEAD_MIN_KIB=K
// in crfsd's environment sets it (a huge K: protected while frozen only).
uint64_t protect_ahead_min_bytes() {
    const char* k = getenv("CRFS_LIVE_AHEAD_MIN_KIB");  // read each time: tests set it
    return k && *k ? std::strtoull(k, nullptr, 10) << 10 : uint64_t(64) << 20;
}

// Starts ProtectAhead for `root` and each descendant listed now (`root_kids`:
// the root's children, listed already), into `out`: those holding at least
// protect_ahead_min_bytes. The freeze lists the tree again; a process not in
// it by then, or whose pid was reused, is let go unprotected when `out` goes.
// Nothing is listed with a bound of 2^50 bytes or more (a smaller huge bound
// lists the tree and reads each status, protecting nothing).
// `copied`: the anonymous memory of those listed that a tree copies while
// frozen (below live_member_min_bytes), what its arena is warmed with.
// perf: each one's anonymous memory read from statm (~12 us), and its
// status (~35 us) only where that reaches `min`: what ProtectAhead write-
// protects is anonymous memory (64 x 1 MiB: ~1.3 ms less before the freeze,
// one CPU). Its status's count also held shmem and swap.
Status protect_tree_ahead(pid_t root, std::vector<pid_t> root_kids,
                          std::vector<std::unique_ptr<ProtectAhead>>& out, uint64_t& copied) {
    const uint64_t min = protect_ahead_min_bytes();
    if (min >= uint64_t(1) << 50) return {};
    constexpr size_t kMaxListed = 4096;  // a hint: past this, the rest protected while frozen
    std::vector<pid_t> todo{root};
    for (size_t i = 0; i < todo.size() && i < kMaxListed; ++i) {
        pid_t p = todo[i];
        auto kids =
            i == 0 ? Result<std::vector<pid_t>>(std::move(root_kids)) : state::list_children(p);
        if (kids) todo.insert(todo.end(), kids->begin(), kids->end());
        auto anon = read_anon_bytes(p);
        if (!anon) continue;  // gone: the freeze says so if it matters
        if (*anon < live_member_min_bytes()) copied += *anon;
        if (*anon < min) continue;
        auto status = read_status(p);
        if (!status) continue;
        auto a = ProtectAhead::start(p, *status, min);
        if (!a) return std::unexpected(a.error());
        if (*a) out.push_back(std::move(*a));
    }
    return {};
}

// A live snapshot is taken of a single process and of each member of a tree
// that holds enough memory (big_enough_for_live); the rest are copied while frozen.
// overlap: with `overlap`, a plain tree's captures are handed to it before
// their pages are copied (TreeCopy); the vector returned is then empty.
Result<std::vector<Capture>> capture_tree(pid_t pid, uint64_t starttime, bool live,
                                          ChainTracking* track, TreeCopy* overlap) {
    std::vector<Capture> out;
    // Each member traced by one of a few threads (the root by this one), so
    // that the members' captures overlap their ptrace stops: before the tree
    // (which releases its members on them), gone after it.
    Tracers tracers(Tracers::configured());
    PhaseTrace trace;
    // A live snapshot of a process with no children (as good as every image of
    // one process): its page buffer's first room reserved now, not while it is
    // frozen (a fresh huge page faulted in: 0.3-4 ms on this VM). A tree's
    // members draw from the arena instead: one that gained a child by the
    // freeze leaves it unused. And of a process or a tree, the memory of each
    // process holding enough is write-protected now (protect_tree_ahead).
    // A tree's arena (see below) is warmed now for the memory its listed
    // members below live_member_min_bytes hold, while it is frozen and
    // captured (PageArena::warm). CRFS_TREE_ARENA_COLD=1 in crfsd's
    // environment: not warmed, the copy faults it in (the old path).
    std::optional<PageBuffer> spare;
    std::vector<std::unique_ptr<ProtectAhead>> aheads;
    std::shared_ptr<PageArena> warmed;
    if (live && !track) {
        auto kids = state::list_children(pid);
        if (kids && kids->empty()) {
            if (auto r = spare.emplace().reserve(1 << 20); !r) return std::unexpected(r.error());
        }
        const bool tree_ahead = kids && !kids->empty();
        uint64_t copied = 0;
        if (auto r = protect_tree_ahead(pid, kids ? std::move(*kids) : std::vector<pid_t>{}, aheads,
                                        copied);
            !r)
            return std::unexpected(r.error());
        if (tree_ahead && copied && !getenv("CRFS_TREE_PAGE_BUFFERS") &&
            !getenv("CRFS_TREE_ARENA_COLD")) {
            warmed = std::make_shared<PageArena>();
            if (warmed->warm(copied))
                trace.note(strfmt("arena warmed ahead: {} KiB", copied >> 10));
        }
    }
    trace.mark(aheads.empty() ? "buffer before the freeze" : "buffer, memory protected ahead");
    auto tree = FrozenTree::freeze(pid, &tracers);
    if (!tree) return std::unexpected(tree.error());
    trace.mark("tree frozen");
    if (tree->members().front().starttime != starttime)
        return make_error(ESRCH, strfmt("task {} is gone (pid reused)", pid));
    auto& members = tree->members();
    std::vector<pid_t> pids;
    for (auto& m : members) pids.push_back(m.pid);
    std::vector<TrackedMember> tracked;  // incr: each member's tracking (incremental.h)
    if (track) {
        std::vector<std::pair<pid_t, uint64_t>> now;
        for (auto& m : members) now.emplace_back(m.pid, m.starttime);
        track->delta = track->delta && same_members(track->members, now);
        tracked = std::exchange(track->members, {});
    }
    std::vector<Tracking> tracking(members.size());  // incr: reused if it was tracked
    for (size_t i = 0; i < members.size(); ++i) {
        tracking[i].delta = track && track->delta;
        for (TrackedMember& was : tracked)
            if (was.pid == members[i].pid && was.starttime == members[i].starttime)
                tracking[i].uffd = std::move(was.uffd);
    }
    state::MemberViews views;  // read while frozen: each member's once, one holder scan
    // perf: the children the freeze's last pass listed, every member frozen by
    // then: the lists a read now gives (the root's detect asked each again).
    for (auto& m : members) member_view(m.pid, views).set_children(std::move(m.children));
    Presort presort(*tree, tracers);
    read_ahead(*tree, tracers, views);
    trace.mark("members' views read ahead");
    presort.finish(views);
    trace.mark("kcmp sorted ahead");
    // The members' page buffers, one arena (state/memory_dump.h PageArena): a
    // plain tree, copied while frozen whole. CRFS_TREE_PAGE_BUFFERS=1 in
    // crfsd's environment: a buffer of its own per member, pre-faulted (the old path).
    std::shared_ptr<PageArena> arena;
    if (members.size() > 1 && !track && !getenv("CRFS_TREE_PAGE_BUFFERS"))
        arena = warmed ? std::move(warmed) : std::make_shared<PageArena>();
    warmed.reset();  // not a tree after all: the warming stops
    // live: which members are snapshotted live (see live_member_min_bytes).
    std::vector<char> live_at(members.size());
    for (size_t i = 0; i < members.size(); ++i)
        live_at[i] = members.size() == 1
                         ? live && tree->zombies().empty()
                         : live && !track && big_enough_for_live(views, members[i].pid);
    // overlap: a plain tree (each member copied while frozen) whose image is
    // streamed has its pages copied after every member's capture, while its
    // records go out. CRFS_TREE_COPY_FIRST=1 in crfsd's environment: each
    // member's pages copied in its capture, the tree thawed before the
    // image's first byte (the old path).
    const bool copy_later = overlap && arena && std::ranges::none_of(live_at, std::identity{}) &&
                            !getenv("CRFS_TREE_COPY_FIRST");
    // Each member's ProtectAhead, if it has one: the same process (pid and
    // start time). Its stops count as its frozen time (the image's stats).
    std::vector<ProtectAhead*> ahead_of(members.size(), nullptr);
    for (size_t i = 0; i < members.size(); ++i)
        for (auto& a : aheads)
            if (a->pid() == members[i].pid && a->starttime() == members[i].starttime)
                ahead_of[i] = a.get();
    // perf: each member's capture is moved straight to its place in `out`
    // (a Capture is ~4 KiB: a vector of results, then `out` grown from it,
    // were ~200 pages of fresh memory faulted in for 64 members, ~12 us each
    // on this VM); `got` says how it went (none: not started).
    out.resize(members.size());
    std::vector<std::optional<Status>> got(members.size());
    std::mutex serial;                // Serial: the captures but for their stops, one at a time
    std::atomic<bool> failed{false};  // a member failed: those not started yet are not
    // The members' own reads (read_own), made ahead on their tracers (why:
    // below); each taken by its capture, queued after it on the same tracer.
    std::vector<std::optional<Result<OwnReads>>> own(members.size());
    std::vector<std::future<void>> own_read;
    auto capture_member = [&](size_t i, bool checked, std::mutex* one_at_a_time,
                              const std::function<void()>& detected = {}) {
        if (failed) return;
        FrozenTree::Member& m = members[i];
        auto c =
            capture(m.pid, m.stat, m.threads, live_at[i], track ? &tracking[i] : nullptr,
                    pids.size() > 1 ? pids : std::vector<pid_t>{}, views, checked, one_at_a_time,
                    fault_at(i), arena, i == 0 && members.size() == 1 && spare ? &*spare : nullptr,
                    ahead_of[i], copy_later, detected, std::move(own[i]));
        if (c) {
            out[i] = std::move(*c);
            got[i].emplace();
        } else {
            got[i].emplace(std::unexpected(c.error()));
            failed = true;
        }
    };
    std::mutex* one_at_a_time = tracers.parallel() ? &serial : nullptr;
    std::vector<std::future<void>> done;
    // The other members' captures, once the root's detect checked every
    // member whose view it made: asked of `views` before any other capture
    // may add to it.
    std::vector<char> checked(members.size());
    auto capture_others = [&] {
        for (size_t i = 1; i < members.size(); ++i)
            if (auto v = views.find(members[i].pid); v != views.end())
                checked[i] = v->second->tree_checked() && getenv("CRFS_TREE_CHECK_EACH") == nullptr;
        for (size_t i = 1; i < members.size(); ++i)
            done.push_back(
                tracers.post(members[i].tracer, [&capture_member, &checked, i, one_at_a_time] {
                    capture_member(i, checked[i], one_at_a_time);
                }));
    };
    // The root first: its detect checks every member, on views it keeps.
    // perf: with tracers, the others start as soon as that detect passed (in
    // it, under Serial), so the rest of the root's capture overlaps theirs
    // (its stops and memory were ~1.5 ms of a 16 x 16 MiB tree's, alone).
    // CRFS_TREE_ROOT_ALONE=1 in crfsd's environment: the root's whole
    // capture first, alone (the old path).
    // The others' own reads are posted first: they run during the root's
    // detect (~4 ms of a 64-process tree's) instead of after it. 64 x 1 MiB,
    // 20 rounds beside the old path, medians: members captured 22.7 -> 21.6
    // ms, though the detect, sharing the CPUs with them, 4.3 -> 5.5 ms.
    // CRFS_TREE_OWN_LATER=1 in crfsd's environment: each read in its capture
    // (the old path).
    if (one_at_a_time && members.size() > 1 && !getenv("CRFS_TREE_ROOT_ALONE")) {
        if (!getenv("CRFS_TREE_OWN_LATER"))
            for (size_t i = 1; i < members.size(); ++i)
                own_read.push_back(tracers.post(members[i].tracer, [&, i] {
                    if (!failed) own[i].emplace(read_own(members[i].pid, members[i].stat));
                }));
        tracers.run(members[0].tracer,
                    [&] { capture_member(0, false, one_at_a_time, capture_others); });
    } else {
        tracers.run(members[0].tracer, [&] { capture_member(0, false, nullptr); });
        if (!failed) capture_others();
    }
    for (auto& d : own_read) d.get();  // before `own` goes, whatever failed
    for (auto& d : done) d.get();
    trace.mark("members captured");
    // Written in the members' order; the first member that failed fails the image.
    size_t failing = members.size();
    for (size_t i = 0; i < members.size(); ++i) {
        if (!got[i]) continue;  // not started: a member failed
        if (!*got[i]) {
            failing = i;
            break;
        }
        if (track)
            track->members.push_back({pids[i], members[i].starttime, std::move(tracking[i].uffd)});
    }
    if (failing < members.size()) {  // no image: the members captured leave repair mode
        for (size_t i = 0; i < members.size(); ++i)
            if (got[i] && *got[i]) end_repair(pid_t(out[i].attrs.stat.pid), out[i].fds);
        const Error& e = got[failing]->error();
        if (failing == 0) return std::unexpected(e);
        return std::unexpected(e.context(strfmt("pid {}", pids[failing])));
    }
    if (out.size() > 1) {  // share: while frozen (state/tree_share_dump.h)
        std::vector<std::vector<TaskFd>*> fds;
        for (Capture& c : out) fds.push_back(&c.fds);
        std::vector<MemoryDump*> mems;  // shm: state/tree_shmem_dump.h
        for (Capture& c : out) mems.push_back(&c.memory);
        // The members' views: their fds read once, the kcmp answers of their checks
        // (the root's view's) asked once.
        std::vector<state::TaskView*> member_views;
        for (pid_t p : pids) member_views.push_back(&member_view(p, views));
        std::shared_ptr<state::KcmpCache> kcmp = member_view(pid, views).kcmp();
        auto s = share_between_members(pids, fds, member_views);
        if (s) s = share_shmem_between_members(pids, mems);
        std::vector<state::MemfdDump*> memfds;
        for (Capture& c : out) memfds.push_back(&c.memfds);
        if (s) share_memfds_between_members(memfds);
        std::vector<std::vector<image::SysvShmRecord>*> shms;  // sysvtree: state/sysv_shm.h
        for (Capture& c : out) shms.push_back(&c.sysv_shm);
        if (s) s = state::share_sysv_shm_between_members(pids, mems, shms);
        if (s) s = share_tasks_between_members(pids, out, *kcmp);  // share: fd tables, fs
        std::vector<state::MemberCwd> cwds;  // cwdtree: a removed cwd made once
        for (Capture& c : out) cwds.push_back({&c.deleted_cwd, &c.deleted_cwd_from, &c.fds});
        if (s) s = state::share_removed_cwds(pids, cwds);
        if (!s) {
            for (const Capture& done : out) end_repair(pid_t(done.attrs.stat.pid), done.fds);
            return std::unexpected(s.error());
        }
    }
    out.front().zombies = tree->zombies();  // life
    trace.mark("shared between members");
    if (copy_later) {
        // overlap: the files fingerprinted while frozen (the records go out
        // before the thaw), the captures handed to the image's writer, then
        // each member's pages copied in image order, and the tree thawed.
        OpenedFiles opened;
        for (Capture& c : out) c.prints = fingerprint_files(c.fds, c.memory.maps, &opened);
        trace.mark("file fingerprints, frozen");
        overlap->publish(std::move(out));
        std::vector<Capture>& caps = overlap->captures;  // their pages: the copiers' until copied
        // Members taken in image order by this thread and copy_threads()-1 others.
        std::atomic<size_t> next{0};
        std::vector<char> done(caps.size());  // under overlap->mu
        Status ok;                            // under overlap->mu
        auto copy_members = [&] {
            for (size_t i; (i = next++) < caps.size();) {
                if (overlap->stopped()) return;
                if (i + 1 == caps.size()) test_hold_copy();
                Status r = copy_fault_at(i) ? make_error(EIO, "CRFS_TEST_COPY_FAIL")
                           : caps[i].plan  // else copied in its capture (planned_memory)
                               ? copy_planned(pids[i], *caps[i].plan, caps[i].memory)
                               : Status{};
                caps[i].plan.reset();
                std::lock_guard l(overlap->mu);
                if (!r) {
                    if (ok) ok = std::unexpected(r.error().context(strfmt("pid {}", pids[i])));
                    next = caps.size();  // the others stop too
                    return;
                }
                done[i] = 1;
                while (overlap->copied < caps.size() && done[overlap->copied]) ++overlap->copied;
                overlap->cv.notify_all();
            }
        };
        std::vector<std::thread> helpers;
        for (size_t t = 1, n = copy_threads(); t < n; ++t) helpers.emplace_back(copy_members);
        copy_members();
        for (auto& t : helpers) t.join();
        trace.mark("members' pages copied");
        if (!ok)  // no image: the connections leave repair mode before the thaw
            for (const Capture& c : caps) end_repair(pid_t(c.attrs.stat.pid), c.fds);
        auto thawed = tree->release();
        trace.mark("thaw");
        std::vector<uint64_t> frozen;
        for (auto& m : tree->members()) frozen.push_back(m.threads.frozen_ns());
        overlap->end(ok ? thawed : ok, std::move(frozen));
        return std::vector<Capture>{};
    }
    // A member's frozen time, once the tree is thawed: its stops, with those
    // of its ProtectAhead.
    auto frozen_time = [&](size_t i) {
        return tree->members()[i].threads.frozen_ns() +
               (ahead_of[i] ? ahead_of[i]->stopped_ns() : 0);
    };
    // thaw: a tree with a member snapshotted live, whose image is streamed,
    // has its records sent while it is thawed: the files fingerprinted while
    // frozen (the records go out before the thaw), the captures handed to
    // the image's writer, then the tree thawed by this thread while the
    // first member's pages stream (each member's stats, which hold its frozen
    // time, come after its pages: LiveTreeImage). perf: the thaw was before
    // the first byte (a 16 x 16 MiB tree's: ~4 ms on this VM, each member's
    // way back into its syscall). CRFS_TREE_THAW_FIRST=1 in crfsd's
    // environment: thawed before the first byte (the old path).
    if (overlap && out.size() > 1 &&
        std::ranges::any_of(out, [](const Capture& c) { return c.memory.live != nullptr; }) &&
        !getenv("CRFS_TREE_THAW_FIRST")) {
        OpenedFiles opened;
        for (Capture& c : out) c.prints = fingerprint_files(c.fds, c.memory.maps, &opened);
        trace.mark("file fingerprints, frozen");
        overlap->publish(std::move(out), true);  // the writer's from here on
        auto thawed = tree->release();
        trace.mark("thaw");
        std::vector<uint64_t> frozen;
        for (size_t i = 0; i < tree->members().size(); ++i) frozen.push_back(frozen_time(i));
        overlap->end(std::move(thawed), std::move(frozen));
        return std::vector<Capture>{};
    }
    if (auto r = tree->release(); !r) return std::unexpected(r.error());
    trace.mark("thaw");
    OpenedFiles opened;  // perf: the members' libraries opened once
    for (size_t i = 0; i < out.size(); ++i) {
        out[i].frozen_ns = frozen_time(i);
        // fidelity: hashed while the tasks run again (docs/files.md).
        out[i].prints = fingerprint_files(out[i].fds, out[i].memory.maps, &opened);
    }
    trace.mark("file fingerprints");
    return out;
}

class ImageSnapshot : public Snapshot {
  public:
    uint64_t size() const override { return stream_.size(); }
    Result<size_t> read(uint64_t offset, void* buf, size_t len) const override {
        return stream_.read(offset, buf, len);
    }

    std::vector<Capture> captures;  // own the page buffers and file contents the stream points into
    ImageStream stream_;
    uint64_t records_ = 0;  // before the trailer
};

void copy_str(char* dst, size_t n, const std::string& s) {
    std::memset(dst, 0, n);
    std::memcpy(dst, s.data(), std::min(n - 1, s.size()));
}

// One process's records but its pages and stats; after its process record,
// in a tree (whose pages and stats are in its page section: build_pages).
void build_records(ImageWriter& w, Capture& c, pid_t pid) {
    const TaskAttrs& a = c.attrs;
    uint32_t flags = c.was_stopped ? image::kHeaderTaskWasStopped : 0;

    image::TaskRecord t{};
    t.pid = pid;
    t.ppid = a.stat.ppid;
    t.pgid = a.stat.pgrp;
    t.sid = a.stat.session;
    t.starttime = a.stat.starttime;
    t.personality = a.personality;
    t.nice = a.stat.nice;
    copy_str(t.comm, sizeof t.comm, a.stat.comm);
    t.flags = flags;
    w.add(RecordType::kTask, Payload().add(t));

    image::CredsRecord cr{};
    std::memcpy(cr.uid, a.status.uid, sizeof cr.uid);
    std::memcpy(cr.gid, a.status.gid, sizeof cr.gid);
    cr.cap_inh = a.status.cap_inh;
    cr.cap_prm = a.status.cap_prm;
    cr.cap_eff = a.status.cap_eff;
    cr.cap_bnd = a.status.cap_bnd;
    cr.cap_amb = a.status.cap_amb;
    cr.no_new_privs = a.status.no_new_privs;
    cr.ngroups = uint32_t(a.status.groups.size());
    w.add(RecordType::kCreds,
          Payload().add(cr).add_bytes(a.status.groups.data(), a.status.groups.size() * 4));

    image::FsRecord fs{a.status.umask, uint32_t(a.cwd.size()), uint32_t(a.root.size()), 0};
    w.add(RecordType::kFs, Payload().add(fs).add_string(a.cwd).add_string(a.root));
    if (c.deleted_cwd) w.add(RecordType::kDeletedCwd, Payload().add(*c.deleted_cwd));  // delcwd
    if (c.deleted_cwd_from)                                                            // cwdtree
        w.add(RecordType::kDeletedCwdFrom, Payload().add(*c.deleted_cwd_from));

    image::MmRecord mm{};
    mm.start_code = a.stat.start_code;
    mm.end_code = a.stat.end_code;
    mm.start_data = a.stat.start_data;
    mm.end_data = a.stat.end_data;
    mm.start_brk = a.stat.start_brk;
    mm.brk = c.brk;
    mm.start_stack = a.stat.start_stack;
    mm.arg_start = a.stat.arg_start;
    mm.arg_end = a.stat.arg_end;
    mm.env_start = a.stat.env_start;
    mm.env_end = a.stat.env_end;
    mm.auxv_len = uint32_t(a.auxv.size() * 8);
    mm.exe_len = uint32_t(a.exe.size());
    w.add(RecordType::kMm,
          Payload().add(mm).add_bytes(a.auxv.data(), a.auxv.size() * 8).add_string(a.exe));

    for (const MapsEntry& m : c.memory.maps)
        w.add(RecordType::kVma, Payload().add(tree_vma_record(c.memory, m)).add_string(m.path));
    for (const auto& v : c.prints.vmas) w.add(RecordType::kVmaContent, Payload().add(v));
    for (const auto& s : c.sysv_shm) w.add(RecordType::kSysvShm, Payload().add(s));  // sysv
    for (const auto& s : c.sysv_msg) w.add(RecordType::kSysvMsg, s);                 // sem
    for (const auto& s : c.sysv_sem) w.add(RecordType::kSysvSem, s);                 // sem

    w.add(RecordType::kThread, Payload().add(c.main_thread));
    w.add(RecordType::kThreadAttrs, Payload().add(c.main_attrs));  // fid
    w.add(RecordType::kRegs, Payload().add(c.regs.gp));
    if (c.regs.restart) w.add(RecordType::kSyscallRestart, Payload().add(*c.regs.restart));
    if (c.mlockall_flags)
        w.add(RecordType::kMlockall, Payload().add(image::MlockallRecord{c.mlockall_flags, 0}));
    w.add(RecordType::kXstate, c.regs.xstate);
    w.add(RecordType::kSigactions, Payload().add(c.signals.actions));
    w.add(RecordType::kSigstate, Payload().add(c.signals.state));
    for (const auto& si : c.signals.pending) w.add(RecordType::kSiginfo, Payload().add(si));
    w.add(RecordType::kRlimits, Payload().add(a.rlimits));
    w.add(RecordType::kItimers, Payload().add(c.itimers));
    w.add(RecordType::kSettings, Payload().add(c.settings.rec).add_string(c.settings.cpu_mask));
    for (const auto& f : c.seccomp)  // fid-exact
        w.add(RecordType::kSeccompFilter,
              Payload().add(f.rec).add_bytes(f.prog.data(), f.prog.size()));
    for (const auto& t : c.timers.timers) {
        w.add(RecordType::kPosixTimer, Payload().add(t));
        for (const auto& th : c.timers.threads)  // timer: right after its timer
            if (th.id == t.id) w.add(RecordType::kPosixTimerThread, Payload().add(th));
    }

    for (const TaskFd& f : c.fds) w.add(RecordType::kFd, Payload().add(f.rec).add_string(f.path));
    for (const auto& f : c.prints.fds) w.add(RecordType::kFdContent, Payload().add(f));
    if (c.tty) w.add(RecordType::kTty, Payload().add(*c.tty));  // tty: the root's only
    for (const TaskFd& f : c.fds)
        for (const auto& [type, payload] : f.records) w.add(type, payload);
    for (const TaskFd& f : c.fds)
        if (f.inet && f.rec.same_as < 0) state::write_inet(w, *f.inet);
    state::write_memfds(w, c.memfds);                                              // kobj
    for (const auto& l : c.locks) w.add(RecordType::kFileLock, Payload().add(l));  // fid-exact
    for (const TaskFd& f : c.fds) {
        for (uint64_t off = 0; off < f.content.size(); off += image::kMaxFdDataPerRecord) {
            size_t n = std::min<uint64_t>(image::kMaxFdDataPerRecord, f.content.size() - off);
            w.add_external(RecordType::kFdData,
                           Payload().add(image::FdDataRecord{f.rec.fd, 0, off}).bytes(),
                           f.content.data() + off, n);
        }
    }

    for (const auto& k : c.keeps) w.add(RecordType::kKeep, Payload().add(k));  // incr
    for (const ThreadCapture& t : c.threads) {
        w.add(RecordType::kThread, Payload().add(t.rec));
        w.add(RecordType::kThreadAttrs, Payload().add(t.attrs));  // fid
        w.add(RecordType::kRegs, Payload().add(t.regs.gp));
        if (t.regs.restart)  // fid: the main thread's record, for this thread
            w.add(RecordType::kSyscallRestart, Payload().add(*t.regs.restart));
        w.add(RecordType::kXstate, t.regs.xstate);
        w.add(RecordType::kSigstate, Payload().add(t.sigstate));
        for (const auto& si : t.pending) w.add(RecordType::kSiginfo, Payload().add(si));
    }
}

// The pages copied while the process was frozen: runs of non-zero pages,
// found now that the task runs again; their counts go to `stats`, with the
// capture's own (its stats record follows the pages a live snapshot streams).
void build_pages(ImageWriter& w, Capture& c, image::StatsRecord& stats) {
    const char* base = c.memory.buffer.data();
    constexpr uint64_t kPage = image::kPageSize;
    auto emit = [&](uint64_t vaddr, const char* data, uint64_t n) {
        for (uint64_t i = 0; i < n; i += image::kMaxPagesPerRecord) {
            uint32_t k = uint32_t(std::min<uint64_t>(image::kMaxPagesPerRecord, n - i));
            w.add_external(RecordType::kPages,
                           Payload().add(image::PagesRecord{vaddr + i * kPage, k, 0}).bytes(),
                           data + i * kPage, k * kPage);
            stats.pages_stored += k;
        }
    };
    for (const CopiedRun& r : c.memory.runs) {
        const char* data = base + r.buf_off;
        uint64_t start = 0;
        for (uint64_t i = 0; i <= r.nr_pages; ++i) {
            bool zero = i < r.nr_pages && is_zero_page(data + i * kPage);
            if (i == r.nr_pages || zero) {
                if (i > start) emit(r.vaddr + start * kPage, data + start * kPage, i - start);
                start = i + 1;
                if (zero) ++stats.pages_zero;
            }
        }
    }

    stats.frozen_ns = c.frozen_ns;
    stats.pages_scanned = c.memory.pages_scanned;
    stats.pages_copied = c.memory.pages_copied;
    stats.captured_at_ns = c.captured_at_ns;
}

// tty: the session's terminal, in the root's records.
void terminal_to_root(std::vector<Capture>& captures) {
    for (Capture& c : captures)
        if (auto t = std::exchange(c.tty, std::nullopt); t && !captures.front().tty)
            captures.front().tty = t;
}

// One process of a tree: its process record and its records but its pages
// and stats.
void build_member(ImageWriter& w, Capture& c) {
    add_process_record(w, c.attrs.stat, c.was_stopped);
    if (c.share_task) w.add(RecordType::kShareTask, Payload().add(*c.share_task));  // share
    build_records(w, c, pid_t(c.attrs.stat.pid));
}

// streamtree: the start of process `index`'s page section in a tree, and
// the pages it had copied while frozen.
void build_section(ImageWriter& w, Capture& c, uint32_t index, image::StatsRecord& stats) {
    w.add(RecordType::kMemberPages, Payload().add(image::MemberPagesRecord{index, 0}));
    build_pages(w, c, stats);
}

image::Header root_header(const Capture& root) {
    return make_header(root.was_stopped ? image::kHeaderTaskWasStopped : 0,
                       uint32_t(root.regs.xstate.size()));
}

// The whole image of captured processes. A tree's: a process record before
// each process's records, parents first, the zombies' records, then each
// live process's page section in the same order (streamtree).
std::unique_ptr<ImageSnapshot> build_snapshot(std::vector<Capture> captures, uint64_t started,
                                              const image::ChainRecord* chain = nullptr) {
    PhaseTrace trace;
    auto snap = std::make_unique<ImageSnapshot>();
    snap->captures = std::move(captures);
    ImageWriter w(root_header(snap->captures.front()));
    if (chain) w.add(RecordType::kChain, Payload().add(*chain));  // incr: record 0
    bool tree = snap->captures.size() > 1 || !snap->captures.front().zombies.empty();
    terminal_to_root(snap->captures);
    auto add_stats = [&](image::StatsRecord& stats) {
        stats.total_ns = monotonic_ns() - started;
        w.add(RecordType::kStats, Payload().add(stats));
    };
    if (!tree) {
        Capture& c = snap->captures.front();
        image::StatsRecord stats{};
        build_records(w, c, pid_t(c.attrs.stat.pid));
        build_pages(w, c, stats);
        add_stats(stats);
    } else {
        for (Capture& c : snap->captures) build_member(w, c);
        for (const auto& z : snap->captures.front().zombies) add_zombie_records(w, z);  // life
        for (size_t i = 0; i < snap->captures.size(); ++i) {
            image::StatsRecord stats{};
            build_section(w, snap->captures[i], uint32_t(i), stats);
            add_stats(stats);
        }
    }
    snap->records_ = w.record_count();
    snap->stream_ = std::move(w).finish();
    trace.mark("build image (zero scan, checksum)");
    return snap;
}

// The image of a live snapshot: the records built after the thaw, then the
// pages still in the task, streamed, then the stats and the trailer.
class LiveImage : public ImageSource {
  public:
    LiveImage(Capture c, pid_t pid, uint64_t started) : capture_(std::move(c)), started_(started) {
        ImageWriter w(root_header(capture_));
        build_records(w, capture_, pid);
        build_pages(w, capture_, stats_);
        records_ = w.record_count();
        head_ = std::move(w).finish();
    }
    bool live() const override { return capture_.memory.live != nullptr; }
    uint64_t faults_answered() const override {
        return capture_.memory.live ? capture_.memory.live->faults() : 0;
    }
    Status write_stripes(std::span<const int> fds) override {
        ImageSink sink(fds);
        // The finished head without its trailer: header and records, straight
        // from the head's memory (perf: no 1 MiB bounce vector, zeroed and
        // faulted in per checkpoint, and no second checksum; the sink hashes).
        uint64_t head = head_.size() - sizeof(image::RecordHeader) - sizeof(image::Trailer);
        if (auto r = head_.for_each_piece(
                head, [&](const char* p, size_t n) { return sink.raw(p, n, 0); });
            !r)
            return r;
        if (auto r = sink.raw(nullptr, 0, records_); !r) return r;
        if (capture_.memory.live)
            if (auto r = capture_.memory.live->stream(sink, stats_); !r) {
                capture_.memory.live.reset();  // let the task go at once
                return r;
            }
        // Every page was sent and un-protected: the task runs freely. The
        // userfaultfd stays registered until this source is destroyed (perf:
        // its release walks every area, ~1 us each; the worker does it after
        // the reader has the last byte).
        stats_.total_ns = monotonic_ns() - started_;
        if (auto r = sink.record(RecordType::kStats, Payload().add(stats_).bytes()); !r) return r;
        return sink.finish();
    }

  private:
    Capture capture_;  // owns what the head points into
    uint64_t started_;
    image::StatsRecord stats_{};
    ImageStream head_;
    uint64_t records_ = 0;
};

// The captures' page buffers: pieces of an image stream that lie in one are
// vmspliced (ImageSink::stable), the rest copied.
class StableBuffers {
  public:
    StableBuffers() = default;  // none: every piece is copied
    explicit StableBuffers(const std::vector<Capture>& captures) {
        for (const Capture& c : captures) add(c);
        std::sort(buffers_.begin(), buffers_.end());
    }
    explicit StableBuffers(const Capture& c) { add(c); }
    // The bytes [from, end of the last record) of `s` (a finished stream: its
    // end record and trailer are not sent), holding `records` records.
    Status send(ImageSink& sink, const ImageStream& s, uint64_t from, uint64_t records) const {
        uint64_t end = s.size() - sizeof(image::RecordHeader) - sizeof(image::Trailer);
        uint64_t at = 0;
        if (auto r = s.for_each_piece(
                end,
                [&](const char* p, size_t n) -> Status {
                    size_t skip = size_t(std::min<uint64_t>(n, at < from ? from - at : 0));
                    at += n;
                    p += skip, n -= skip;
                    if (!n) return {};
                    return contains(p, n) ? sink.stable(p, n, 0) : sink.raw(p, n, 0);
                });
            !r)
            return r;
        return sink.raw(nullptr, 0, records);
    }

  private:
    void add(const Capture& c) {
        if (c.memory.buffer.size())
            buffers_.emplace_back(c.memory.buffer.data(),
                                  c.memory.buffer.data() + c.memory.buffer.size());
    }
    bool contains(const char* p, size_t n) const {
        auto it = std::upper_bound(buffers_.begin(), buffers_.end(), std::pair(p, p + n));
        return it != buffers_.begin() && p >= std::prev(it)->first &&
               p + n <= std::prev(it)->second;
    }
    std::vector<std::pair<const char*, const char*>> buffers_;  // sorted
};

// An image of a tree, copied while frozen, written out front to back.
class SnapshotSource : public ImageSource {
  public:
    explicit SnapshotSource(std::unique_ptr<ImageSnapshot> snap) : snap_(std::move(snap)) {}
    bool live() const override { return false; }
    // perf: the stream's pieces as they lie, the pages from the page buffers
    // vmspliced into the pipe (ImageSink::stable: never written again, and
    // mapped, not malloc'd), the rest copied; the sink hashes them and writes
    // the trailer, as the stream's own would be. (It was a copy of every byte
    // into a 1 MiB buffer, then a write that copied it into the pipe.)
    Status write_stripes(std::span<const int> fds) override {
        StableBuffers buffers(snap_->captures);
        ImageSink sink(fds);
        if (auto r = buffers.send(sink, snap_->stream_, 0, snap_->records_); !r) return r;
        return sink.finish();
    }

  private:
    std::unique_ptr<ImageSnapshot> snap_;
};

// live: the image of a tree some of whose members are snapshotted live
// (big_enough_for_live): every member's records and the zombies' (built
// after the thaw, or, thaw, before it is done), then each member's page
// section: the pages it had copied while frozen, the pages it still holds,
// streamed, and its stats; the trailer (streamtree: the layout of
// build_snapshot).
class LiveTreeImage : public ImageSource {
  public:
    // thaw: the captures handed over by capture_tree before its thaw, which
    // `thawer` (its thread) is doing; a member's frozen time comes from there.
    LiveTreeImage(std::shared_ptr<TreeCopy> thaw, std::thread thawer, uint64_t started)
        : LiveTreeImage(std::move(thaw->captures), started) {
        thaw_ = std::move(thaw);
        thawer_ = std::move(thawer);
    }
    ~LiveTreeImage() override {
        if (thawer_.joinable()) thawer_.join();  // the tree thawed before its memory goes
    }
    LiveTreeImage(std::vector<Capture> captures, uint64_t started)
        : captures_(std::move(captures)), started_(started), stats_(captures_.size()) {
        terminal_to_root(captures_);
        const image::Header header = root_header(captures_.front());
        auto finish = [](ImageWriter&& w) {
            uint64_t records = w.record_count();
            return Head{std::move(w).finish(), records};
        };
        {
            ImageWriter w(header);  // the header is sent once, with the records
            for (Capture& c : captures_) build_member(w, c);
            for (const auto& z : captures_.front().zombies) add_zombie_records(w, z);  // life
            records_ = finish(std::move(w));
        }
        for (size_t i = 0; i < captures_.size(); ++i) {
            ImageWriter w(header);
            build_section(w, captures_[i], uint32_t(i), stats_[i]);
            sections_.push_back(finish(std::move(w)));
        }
    }
    bool live() const override { return true; }
    uint64_t faults_answered() const override {
        uint64_t n = 0;
        for (const Capture& c : captures_)
            if (c.memory.live) n += c.memory.live->faults();
        return n;
    }
    Status write_stripes(std::span<const int> fds) override {
        StableBuffers buffers(captures_);
        ImageSink sink(fds);
        constexpr uint64_t kHeader = sizeof(image::Header);
        if (auto r = buffers.send(sink, records_.stream, 0, records_.records); !r) return fail(r);
        for (size_t i = 0; i < captures_.size(); ++i) {
            Capture& c = captures_[i];
            if (auto r = buffers.send(sink, sections_[i].stream, kHeader, sections_[i].records); !r)
                return fail(r);
            if (c.memory.live)
                if (auto r = c.memory.live->stream(sink, stats_[i]); !r) return fail(r);
            // Its pages all sent and un-protected: it runs freely (its
            // userfaultfd stays registered until this source goes, as LiveImage's).
            if (thaw_) {
                std::unique_lock l(thaw_->mu);
                thaw_->cv.wait(l, [&] { return thaw_->thawed; });
                if (!thaw_->failed) return fail(thaw_->failed);
                stats_[i].frozen_ns = thaw_->frozen_ns[i];
            }
            stats_[i].total_ns = monotonic_ns() - started_;
            if (auto r = sink.record(RecordType::kStats, Payload().add(stats_[i]).bytes()); !r)
                return fail(r);
        }
        return sink.finish();
    }

  private:
    // Every member let go at once: no page of any is protected any more.
    Status fail(Status r) {
        for (Capture& c : captures_) c.memory.live.reset();
        return r;
    }
    struct Head {
        ImageStream stream;
        uint64_t records = 0;
    };
    std::vector<Capture> captures_;  // own what the records and sections point into
    uint64_t started_;
    std::shared_ptr<TreeCopy> thaw_;  // thaw: the tree's thaw, when it was not done first
    std::thread thawer_;
    std::vector<image::StatsRecord> stats_;
    Head records_;                // every member's records and the zombies'
    std::vector<Head> sections_;  // each member's section: its copied pages
};

// overlap: the image of a plain tree whose pages are copied while it goes
// out (TreeCopy): every member's records and the zombies', then each
// member's page section once its copy is done, then (version 17) each
// member's stats, known at the thaw, in member-stats records; the trailer.
class CopyingTreeImage : public ImageSource {
  public:
    CopyingTreeImage(std::shared_ptr<TreeCopy> copy, std::thread copier, uint64_t started)
        : copy_(std::move(copy)), copier_(std::move(copier)), started_(started) {
        std::vector<Capture>& caps = copy_->captures;
        stats_.resize(caps.size());
        terminal_to_root(caps);
        header_ = root_header(caps.front());
        ImageWriter w(header_);  // what the copies do not touch (TreeCopy)
        for (Capture& c : caps) build_member(w, c);
        for (const auto& z : caps.front().zombies) add_zombie_records(w, z);  // life
        records_ = w.record_count();
        head_ = std::move(w).finish();
    }
    ~CopyingTreeImage() override {
        {
            std::lock_guard l(copy_->mu);
            copy_->stop = true;
        }
        copier_.join();  // the tree is thawed
    }
    // The tree is held until its last copy, after the first byte: the next
    // image of it waits for this one's end, as for a live snapshot.
    bool live() const override { return true; }
    bool copies_as_it_streams() const override { return false; }  // the copier does
    Status write_stripes(std::span<const int> fds) override {
        std::vector<Capture>& caps = copy_->captures;
        ImageSink sink(fds);
        if (auto r = StableBuffers().send(sink, head_, 0, records_); !r) return r;
        for (size_t i = 0; i < caps.size(); ++i) {
            if (auto r = copy_->wait_copied(i); !r) return r;
            ImageWriter w(header_);
            build_section(w, caps[i], uint32_t(i), stats_[i]);
            uint64_t records = w.record_count();
            ImageStream section = std::move(w).finish();
            if (auto r = StableBuffers(caps[i]).send(sink, section, sizeof(image::Header), records);
                !r)
                return r;
        }
        {
            std::unique_lock l(copy_->mu);
            copy_->cv.wait(l, [&] { return copy_->thawed; });
            if (!copy_->failed) return copy_->failed;
        }
        for (size_t i = 0; i < caps.size(); ++i) {
            image::MemberStatsRecord m{uint32_t(i), 0, stats_[i]};
            m.stats.frozen_ns = copy_->frozen_ns[i];
            m.stats.total_ns = monotonic_ns() - started_;
            if (auto r = sink.record(RecordType::kMemberStats, Payload().add(m).bytes()); !r)
                return r;
        }
        return sink.finish();
    }

  private:
    std::shared_ptr<TreeCopy> copy_;
    std::thread copier_;  // capture_tree's thread: copies, then thaws
    uint64_t started_;
    image::Header header_{};
    ImageStream head_;  // every member's records and the zombies'
    uint64_t records_ = 0;
    std::vector<image::StatsRecord> stats_;
};

// capture_tree() on a thread of its own, checkpoints of one pid one at a time.
// overlap: with `overlap`, a plain tree's thread goes on after it handed over
// the captures (it copies their pages and thaws the tree) and becomes
// `*copier`; the captures are then overlap->captures, none returned.
Result<std::vector<Capture>> capture_task(pid_t pid, uint64_t starttime, bool live,
                                          ChainTracking* track = nullptr,
                                          std::shared_ptr<TreeCopy> overlap = nullptr,
                                          std::thread* copier = nullptr) {
    auto got = std::make_shared<Result<std::vector<Capture>>>(
        make_error(EIO, "checkpoint thread did not run"));
    // Held by the thread: until the tree is thawed, after the copies (overlap).
    std::thread worker([=, lock = std::make_unique<PidLock>(pid)] {
        *got = capture_tree(pid, starttime, live, track, overlap.get());
        if (!overlap) return;
        std::lock_guard l(overlap->mu);
        overlap->ended = true;
        overlap->cv.notify_all();
    });
    if (overlap) {
        std::unique_lock l(overlap->mu);
        overlap->cv.wait(l, [&] { return overlap->published || overlap->ended; });
        if (overlap->published) {
            *copier = std::move(worker);
            return std::vector<Capture>{};
        }
    }
    worker.join();
    if (!*got) {
        Error e = got->error().context(strfmt("checkpoint of task {}", pid));
        log_info("%s", e.what.c_str());
        return std::unexpected(e);
    }
    return std::move(*got);
}

}  // namespace

Result<std::unique_ptr<Snapshot>> checkpoint_task(pid_t pid, uint64_t starttime) {
    uint64_t started = monotonic_ns();
    auto cap = capture_task(pid, starttime, false);
    if (!cap) return std::unexpected(cap.error());
    return std::unique_ptr<Snapshot>(build_snapshot(std::move(*cap), started));
}

Result<std::unique_ptr<ImageSource>> checkpoint_task_live(pid_t pid, uint64_t starttime) {
    uint64_t started = monotonic_ns();
    auto overlap = std::make_shared<TreeCopy>();
    std::thread copier;
    auto cap = capture_task(pid, starttime, true, nullptr, overlap, &copier);
    if (!cap) return std::unexpected(cap.error());
    if (copier.joinable()) {
        if (overlap->live)  // thaw: a tree with live members, thawed as it goes out
            return std::make_unique<LiveTreeImage>(std::move(overlap), std::move(copier), started);
        // overlap: a plain tree, copied as it goes out
        return std::make_unique<CopyingTreeImage>(std::move(overlap), std::move(copier), started);
    }
    if (cap->size() == 1 && cap->front().zombies.empty())  // life: a tree of one and its zombies
        return std::make_unique<LiveImage>(std::move(cap->front()), pid, started);
    for (const Capture& c : *cap)  // live: a tree with a member snapshotted live
        if (c.memory.live) return std::make_unique<LiveTreeImage>(std::move(*cap), started);
    return std::make_unique<SnapshotSource>(build_snapshot(std::move(*cap), started));
}

Result<std::unique_ptr<ImageSource>> checkpoint_task_tracked(pid_t pid, uint64_t starttime,
                                                             ChainTracking& track,
                                                             image::ChainRecord& chain) {
    uint64_t started = monotonic_ns();
    auto cap = capture_task(pid, starttime, false, &track);
    if (!cap) return std::unexpected(cap.error());
    if (!track.delta) chain.base_id = 0;  // incr: the tree changed, a new chain starts
    return std::make_unique<SnapshotSource>(build_snapshot(std::move(*cap), started, &chain));
}

}  // namespace crfs
