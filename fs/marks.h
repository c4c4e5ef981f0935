// The uncheckpointable marks set through /crfs/<pid>/nocr and the C API.
//
// A mark belongs to a task, named by (pid, start time), so a reused pid never
// inherits one. Every change is written through to a state file before it is
// acknowledged: a mark silently lost on a daemon restart would let a task be
// checkpointed in a state it said was unsafe. Marks of tasks that exit are
// dropped by the daemon's exit watcher (fs/exit_watcher.h), one pidfd per
// marked task.
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "common/result.h"
#include "fs/exit_watcher.h"
#include "fs/tasks.h"

namespace crfs::fs {

inline constexpr size_t kMaxReasonBytes = 1024;
inline constexpr std::string_view kDefaultReason = "CR: marked uncheckpointable";

// What a write to `nocr` asks for: clear the mark, or set it with a reason.
struct ClearMark {};
struct SetMark {
    std::string reason;
};
using NocrWrite = std::variant<ClearMark, SetMark>;

// "0" clears, "1" sets kDefaultReason, other text sets itself as the reason;
// one trailing newline is stripped. EINVAL for empty text, more than
// kMaxReasonBytes, control characters or invalid UTF-8.
Result<NocrWrite> parse_nocr_write(std::string_view data);

class MarkStore {
  public:
    // `state_file` holds the marks across daemon restarts; `exits` drops the
    // marks of exited tasks once it runs (it must outlive the store).
    MarkStore(ExitWatcher& exits, std::string state_file);
    ~MarkStore();
    MarkStore(const MarkStore&) = delete;
    MarkStore& operator=(const MarkStore&) = delete;

    // Loads the state file (missing is fine), keeps the marks whose task
    // still runs and rewrites the file. The daemon forks after this: the
    // watcher's registrations survive, its thread is started after.
    Status load();

    std::optional<std::string> get(const TaskId& task) const;
    Status set(const TaskId& task, std::string reason);
    Status clear(const TaskId& task);
    size_t size() const;

    // Serialized state, and its parser (unit-tested).
    static std::string serialize(const std::map<std::pair<pid_t, uint64_t>, std::string>& marks);
    static Result<std::map<std::pair<pid_t, uint64_t>, std::string>> parse(std::string_view text);

  private:
    using Key = std::pair<pid_t, uint64_t>;
    struct Mark {
        std::string reason;
        ExitWatcher::Id watch = 0;  // the task's exit registration
    };

    Status persist_locked() const;
    // Watches the task for exit; false when it is already gone, an error
    // when the watcher cannot take it (full).
    Result<bool> watch_locked(const TaskId& task, Mark& mark);
    void exited(const Key& key, ExitWatcher::Id id);

    ExitWatcher& exits_;
    std::string state_file_;
    // Guards marks_ and the state file; never held while calling out to FUSE
    // or cancelling a watch (the exit callback takes it).
    mutable std::mutex mu_;
    std::map<Key, Mark> marks_;
};

}  // namespace crfs::fs
