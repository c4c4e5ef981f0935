// The per-pid directory, declared once (STYLE.md 1): lookup, readdir, getattr,
// open, read and write all walk kPidEntries, so they cannot disagree.
#pragma once

#include <sys/stat.h>

#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "fs/access.h"
#include "fs/marks.h"
#include "fs/tasks.h"

namespace crfs::fs {

// State shared by every request.
struct Daemon {
    explicit Daemon(std::string state_file) : marks(std::move(state_file)) {}
    MarkStore marks;
    pid_t self_tgid = 0;
};

// Who may use an entry for a direction (read or write).
enum class Right {
    kAnyone,  // every caller (like /proc/<pid>/stat)
    kPtrace,  // the task itself or a caller with ptrace rights over it
};

struct PidEntry {
    std::string_view name;
    mode_t mode;  // S_IFREG | permission bits shown by ls (decisions use the Rights)
    Right read_right;
    Result<std::string> (*read)(Daemon&, const TaskId&);  // content, made at open
    Right write_right;
    Status (*write)(Daemon&, const TaskId&, std::string_view data);  // one whole value per write
};

Result<std::string> read_nocr(Daemon&, const TaskId&);
Status write_nocr(Daemon&, const TaskId&, std::string_view);
Result<std::string> read_reason(Daemon&, const TaskId&);

inline constexpr PidEntry kPidEntries[] = {
    {"nocr", S_IFREG | 0644, Right::kAnyone, read_nocr, Right::kPtrace, write_nocr},
    {"reason", S_IFREG | 0400, Right::kPtrace, read_reason, Right::kPtrace, nullptr},
};

// Index into kPidEntries, or nullopt.
std::optional<unsigned> find_pid_entry(std::string_view name);

// Checks `right` for `caller` on `task`.
Status check_right(Right right, const Caller& caller, const TaskId& task);

// Every current reason of `task`, one line each: the nocr mark first, then
// the detected ones.
Result<std::string> reasons_text(Daemon& d, const TaskId& task);

}  // namespace crfs::fs
