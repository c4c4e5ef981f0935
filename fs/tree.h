// The per-pid directory, declared once (STYLE.md 1): lookup, readdir, getattr,
// open, read and write all walk kPidEntries, so they cannot disagree.
#pragma once

#include <sys/stat.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "checkpoint/checkpoint.h"
#include "checkpoint/creds.h"
#include "common/result.h"
#include "fs/access.h"
#include "fs/exit_watcher.h"
#include "fs/limits.h"
#include "fs/marks.h"
#include "fs/reaper.h"
#include "fs/slots.h"
#include "fs/task_cache.h"
#include "fs/tasks.h"
#include "fs/trackers.h"

namespace crfs::fs {

// State shared by every request.
struct Daemon {
    explicit Daemon(std::string state_file, LimitConfig limits_config = LimitConfig::defaults())
        : marks(exits, std::move(state_file)), limits(std::move(limits_config)) {}
    // Its callbacks use the members below: stopped before they go.
    ~Daemon() { exits.stop(); }
    ExitWatcher exits;  // first: outlives every member that watches
    MarkStore marks;
    TaskCache tasks{exits};
    Limits limits;  // before slots: slots hold leases on it
    SlotTable slots{limits};
    Reaper reaper{exits};
    DeltaTrackers trackers;  // incr: each chain's tracking between reads of `delta`
    pid_t self_tgid = 0;
};

// Who may use an entry for a direction (read or write).
enum class Right {
    kAnyone,  // every caller (like /proc/<pid>/stat)
    kPtrace,  // the task itself or a caller with ptrace rights over it
    // kPtrace, checked by the handler itself: it acts as the caller in a
    // worker, where the kernel refuses a caller without the right (one worker
    // per open instead of two).
    kPtraceInHandler,
};

// What an open file serves: made once at open (STYLE.md 7), read by offset.
using Content = std::unique_ptr<Snapshot>;

struct PidEntry {
    std::string_view name;
    mode_t mode;  // S_IFREG | permission bits shown by ls (decisions use the Rights)
    Right read_right;
    // Content, made at open, with the rights of `caller` (the kernel decides).
    Result<Content> (*read)(Daemon&, const TaskId&, const Caller& caller);
    Right write_right;
    Status (*write)(Daemon&, const TaskId&, std::string_view data);  // one whole value per write
};

Result<Content> read_nocr(Daemon&, const TaskId&, const Caller&);
Status write_nocr(Daemon&, const TaskId&, std::string_view);
Result<Content> read_reason(Daemon&, const TaskId&, const Caller&);
// Checkpoints the task in a worker holding the caller's credentials (always,
// root included: the worker also outlives a killed daemon, see
// checkpoint/worker.h): EBUSY while it has any reason, else the image.
Result<Content> read_image(Daemon&, const TaskId&, const Caller&);

// Who opened `image`, captured at open as the kernel keeps a file's f_cred:
// the checkpoint runs at the first read (an open alone, as tar or an indexer
// does, freezes nothing), with the opener's rights, whoever reads the file
// later and whether or not the opening thread still exists.
struct OpenerCreds {
    Creds creds;
    bool trusted = false;  // the task itself, or CAP_SYS_PTRACE (trusted_for)
    static Result<OpenerCreds> of(const Caller& caller, const TaskId& task);
};
// `delta` (incr, docs/incremental.md): the next image of the task's chain.
Result<Content> checkpoint_as(Daemon&, const TaskId&, const OpenerCreds& who, bool delta = false);

inline constexpr PidEntry kPidEntries[] = {
    {"nocr", S_IFREG | 0644, Right::kAnyone, read_nocr, Right::kPtrace, write_nocr},
    {"reason", S_IFREG | 0400, Right::kPtraceInHandler, read_reason, Right::kPtrace, nullptr},
    // 0600, though writes are refused: `cp` gives a new copy the source's
    // mode, and its owner must be able to write over an earlier snapshot.
    {"image", S_IFREG | 0600, Right::kPtraceInHandler, read_image, Right::kPtrace, nullptr},
    // incr: an image of what changed since the previous read of `delta`
    // (the first: a complete image that starts the chain); as `image`.
    {"delta", S_IFREG | 0600, Right::kPtraceInHandler, read_image, Right::kPtrace, nullptr},
};

// Text content of a generated file.
Content text_content(std::string text);

// Index into kPidEntries, or nullopt.
std::optional<unsigned> find_pid_entry(std::string_view name);

// Checks `right` for `caller` on `task`. kPtrace: trusted_for(), else the
// kernel's ptrace_may_access (PTRACE_MODE_ATTACH_FSCREDS) in a worker with the
// caller's credentials; EACCES when it refuses. kPtraceInHandler: nothing to
// do here (the handler's worker is the check).
Status check_right(Right right, const Caller& caller, const TaskId& task);

// Every current reason of `task`, one line each: the nocr mark first, then
// the detected ones, read from /proc with the caller's credentials.
Result<std::string> reasons_text(Daemon& d, const TaskId& task, const Caller& caller);

}  // namespace crfs::fs
