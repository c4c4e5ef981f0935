#include "fs/tree.h"

#include "fs/kernel_marks.h"
#include "fs/reasons.h"

namespace crfs::fs {

std::optional<unsigned> find_pid_entry(std::string_view name) {
    for (unsigned i = 0; i < std::size(kPidEntries); ++i)
        if (kPidEntries[i].name == name) return i;
    return std::nullopt;
}

Status check_right(Right right, const Caller& caller, const TaskId& task) {
    if (right == Right::kAnyone) return {};
    return may_ptrace(caller, task);
}

Result<std::string> reasons_text(Daemon& d, const TaskId& task) {
    std::string out;
    if (auto mark = d.marks.get(task)) out += "nocr: " + *mark + "\n";
    for (auto& line : kernel_reasons(task.pid)) out += line + "\n";
    auto detected = detect_reasons(task.pid, d.self_tgid);
    if (!detected) return std::unexpected(detected.error());
    for (auto& line : *detected) out += line + "\n";
    if (!task_alive(task)) return sys_error(ESRCH, "task " + std::to_string(task.pid));
    return out;
}

Result<std::string> read_nocr(Daemon& d, const TaskId& task) {
    return d.marks.get(task) || !kernel_reasons(task.pid).empty() ? "1\n" : "0\n";
}

Status write_nocr(Daemon& d, const TaskId& task, std::string_view data) {
    auto req = parse_nocr_write(data);
    if (!req) return std::unexpected(req.error());
    if (auto* set = std::get_if<SetMark>(&*req)) return d.marks.set(task, std::move(set->reason));
    kernel_clear_mark(task.pid);
    return d.marks.clear(task);
}

Result<std::string> read_reason(Daemon& d, const TaskId& task) {
    return reasons_text(d, task);
}

}  // namespace crfs::fs
