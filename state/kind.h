// One kind of task state, and the view of a task every kind's `detect` reads.
//
// A kind holds the whole story of one piece of state (DESIGN.md, "State
// kinds"): `detect` says, as reason lines, which variants of it the task holds
// that crfs cannot save and restore exactly. Deny by default: a kind that sees
// something it does not know (a VMA flag, an fd type, a non-default setting)
// reports it. The kind's file (or, for memory, files and the tree, its family
// of files under state/, docs/state.md) holds its dump, check and restore
// halves too.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/procfs.h"
#include "common/result.h"

namespace crfs::state {

struct HolderScan;  // state/holders.h
class KcmpCache;    // state/kcmp_cache.h
class SysvTables;   // state/sysv_tables.h
class TaskView;
// A tree checkpoint's views of its members, by pid: the root's `reason`
// (state/tree.cc) reads each member's /proc files once, and each member's own
// detect and dump reuse its view (checkpoint/checkpoint.cc, while frozen).
using MemberViews = std::map<pid_t, std::shared_ptr<TaskView>>;

// Reason lines, each "source: text" ("fd 5: eventfd not supported yet").
using Reasons = std::vector<std::string>;

inline constexpr std::string_view kNotYet = " not supported yet";

// One open file descriptor, as /proc/<pid>/fd and fdinfo show it.
struct FdView {
    int fd = -1;
    std::string link;   // readlink of /proc/<pid>/fd/<fd>
    struct stat st {};  // stat through the link: the open file
    std::string fdinfo;
    FdInfo info;
    pid_t pid = 0;  // the task (mqueue: statfs of /proc/<pid>/fd/<fd>); 0: unknown
};

// What detectors read about a task, each /proc file read once and kept.
class TaskView {
  public:
    // `self_tgid`: the daemon, whose own ptrace (a checkpoint in progress) is
    // not a reason.
    TaskView(pid_t pid, pid_t self_tgid) : pid_(pid), self_tgid_(self_tgid) {}
    pid_t pid() const { return pid_; }
    pid_t self_tgid() const { return self_tgid_; }
    // The tracer `tid` (a TracerPid: the tracing thread) is `self_tgid` or a
    // child of it: the daemon's checkpoint workers (crfs-ckpt) are its
    // children and trace the tasks they checkpoint, a tree's root's worker
    // every member. Their ptrace is a checkpoint in progress, not the task's
    // reason. The daemon's other children, restored tasks, count too: one
    // that traces a task hides that reason, and the checkpoint fails at its
    // attach (EBUSY, "being traced") instead.
    pid_t tracer_tgid(pid_t tid) const;
    bool traced_by_us(pid_t tid) const;

    // "/proc/<pid>/<name>".
    std::string path(std::string_view name) const;
    // Text of /proc/<pid>/<name>; the task being gone is ESRCH.
    Result<std::string> read(std::string_view name) const;

    Result<const ProcStat*> stat();
    Result<const ProcStatus*> status();
    // /proc/<pid>/task/<tid>/status of one of its threads (the main one's: status()).
    Result<const ProcStatus*> thread_status(pid_t tid);
    Result<const std::vector<MapsEntry>*> smaps();
    // smaps() moved out of the view, for its last user (a checkpoint of one
    // process: 30,000 areas are ~4 MB to copy); any smaps() or take_smaps()
    // after it is EINVAL, never a second read of a task that may have changed.
    Result<std::vector<MapsEntry>> take_smaps();
    Result<const std::vector<FdView>*> fds();  // sorted by fd; fds closed meanwhile skipped
    // The children of every thread (task/*/children), in that order; the task
    // being gone is ESRCH. A tree's members ask their parent's more than once.
    Result<const std::vector<pid_t>*> children();
    // The text of /proc/<pid>/timers (the timers kind's detect, and its dump
    // while frozen).
    Result<const std::string*> timers();
    // readlink of /proc/<pid>/<name> ("cwd", "root"); the task being gone is ESRCH.
    Result<const std::string*> link(std::string_view name);
    // stat of /proc/<pid>/<name> ("status": its owner tells dumpable; "ns/ipc").
    Result<const struct stat*> stat_of(std::string_view name);
    // perf: a tree checkpoint's member's children as its freeze listed them
    // once every member was frozen (state/tree_dump.h), the list children()
    // would read; set before any read of it.
    void set_children(std::vector<pid_t> kids) { children_ = std::move(kids); }

    // The processes of the image the task is checkpointed in (state/tree.cc
    // sets it on a tree's members); empty: the task and its descendants.
    void set_image_pids(std::vector<pid_t> pids) { image_pids_ = std::move(pids); }
    const std::vector<pid_t>& image_pids() const { return image_pids_; }
    // The one walk of /proc/*/fd of this `reason` read (state/holders.h),
    // made on first use; a tree's members share the root's.
    std::shared_ptr<HolderScan> holder_scan();
    void set_holder_scan(std::shared_ptr<HolderScan> s) { holder_scan_ = std::move(s); }
    // The kcmp answers of this `reason` read or checkpoint (state/kcmp_cache.h),
    // made on first use; a tree's members share the root's.
    std::shared_ptr<KcmpCache> kcmp();
    void set_kcmp(std::shared_ptr<KcmpCache> k) { kcmp_ = std::move(k); }
    // The System V tables of this `reason` read or checkpoint
    // (state/sysv_tables.h), made on first use; a tree's members share the root's.
    std::shared_ptr<SysvTables> sysv_tables();
    void set_sysv_tables(std::shared_ptr<SysvTables> s) { sysv_tables_ = std::move(s); }
    // A tree checkpoint's (MemberViews, owned by the checkpoint, which outlives
    // its views' use): detect_tree keeps the views it makes there and takes
    // those already there; null for a `reason` read.
    void set_member_views(MemberViews* v) { member_views_ = v; }
    MemberViews* member_views() const { return member_views_; }
    // A tree checkpoint's member whose view the root's tree-wide detect
    // (state/tree.cc) took to check every kind on it; a view read ahead on a
    // tracer (checkpoint.cc `read_ahead`) is not, until then.
    void set_tree_checked() { tree_checked_ = true; }
    bool tree_checked() const { return tree_checked_; }

  private:
    pid_t pid_, self_tgid_;
    std::optional<ProcStat> stat_;
    std::optional<ProcStatus> status_;
    std::map<pid_t, ProcStatus> thread_status_;
    std::optional<std::vector<MapsEntry>> smaps_;
    bool smaps_taken_ = false;
    std::optional<std::vector<FdView>> fds_;
    std::optional<std::vector<pid_t>> children_;
    std::optional<std::string> timers_;
    std::map<std::string, std::string, std::less<>> links_;
    std::map<std::string, struct stat, std::less<>> stats_of_;
    std::vector<pid_t> image_pids_;
    std::shared_ptr<HolderScan> holder_scan_;
    std::shared_ptr<KcmpCache> kcmp_;
    std::shared_ptr<SysvTables> sysv_tables_;
    MemberViews* member_views_ = nullptr;
    bool tree_checked_ = false;
};

// One kind of state.
struct StateKind {
    std::string_view name;                  // "seccomp", "fds", "memory"
    Status (*detect)(TaskView&, Reasons&);  // appends a reason per unsupported variant
};

// The kinds, one file each under state/ (their detect functions).
Status detect_task(TaskView&, Reasons&);     // state/task_attrs.cc
Status detect_threads(TaskView&, Reasons&);  // state/threads.cc
Status detect_tree(TaskView&, Reasons&);     // state/tree.cc
Status detect_seccomp(TaskView&, Reasons&);  // state/seccomp.cc
Status detect_prctl(TaskView&, Reasons&);    // state/settings.cc
Status detect_sched(TaskView&, Reasons&);    // state/settings.cc
Status detect_fs(TaskView&, Reasons&);       // state/fs.cc
Status detect_signals(TaskView&, Reasons&);  // state/signals.cc
Status detect_timers(TaskView&, Reasons&);   // state/timers.cc
Status detect_futex(TaskView&, Reasons&);    // state/futex.cc (robust list, rseq)
Status detect_memory(TaskView&, Reasons&);   // state/memory.cc
Status detect_fds(TaskView&, Reasons&);      // state/fds.cc
Status detect_locks(TaskView&, Reasons&);    // state/locks.cc
Status detect_ipc(TaskView&, Reasons&);      // state/ipc.cc
Status detect_tty(TaskView&, Reasons&);      // state/tty.cc (a shell job's terminal)

}  // namespace crfs::state
