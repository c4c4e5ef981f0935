#include "fs/tree.h"

#include <cstring>

#include "fs/kernel_marks.h"
#include "fs/log.h"
#include "state/registry.h"

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
    auto detected = state::detect_reasons(task.pid, d.self_tgid);
    if (!detected) return std::unexpected(detected.error());
    for (auto& line : *detected) out += line + "\n";
    // The pid may have been reused while we looked: the lines must be this task's.
    if (!d.tasks.alive(task) && !task_alive(task))
        return sys_error(ESRCH, "task " + std::to_string(task.pid));
    return out;
}

namespace {

class TextContent : public Snapshot {
  public:
    explicit TextContent(std::string text) : text_(std::move(text)) {}
    uint64_t size() const override { return text_.size(); }
    Result<size_t> read(uint64_t offset, void* buf, size_t len) const override {
        if (offset >= text_.size()) return size_t{0};
        size_t n = std::min(len, text_.size() - static_cast<size_t>(offset));
        std::memcpy(buf, text_.data() + offset, n);
        return n;
    }

  private:
    std::string text_;
};

}  // namespace

Content text_content(std::string text) {
    return std::make_unique<TextContent>(std::move(text));
}

Result<Content> read_nocr(Daemon& d, const TaskId& task) {
    return text_content(d.marks.get(task) || !kernel_reasons(task.pid).empty() ? "1\n" : "0\n");
}

Status write_nocr(Daemon& d, const TaskId& task, std::string_view data) {
    auto req = parse_nocr_write(data);
    if (!req) return std::unexpected(req.error());
    if (auto* set = std::get_if<SetMark>(&*req)) return d.marks.set(task, std::move(set->reason));
    kernel_clear_mark(task.pid);
    return d.marks.clear(task);
}

Result<Content> read_reason(Daemon& d, const TaskId& task) {
    auto text = reasons_text(d, task);
    if (!text) return std::unexpected(text.error());
    return text_content(std::move(*text));
}

Result<Content> read_image(Daemon& d, const TaskId& task) {
    // The checkpointer and `reason` agree: any reason, and there is no image.
    auto reasons = reasons_text(d, task);
    if (!reasons) return std::unexpected(reasons.error());
    if (!reasons->empty()) {
        std::string first = reasons->substr(0, reasons->find('\n'));
        return make_error(EBUSY, "checkpoint " + std::to_string(task.pid) +
                                     ": not checkpointable now (" + first + "; see reason)");
    }
    auto snap = checkpoint_task(task.pid, task.starttime);
    if (!snap)
        return std::unexpected(snap.error().context("checkpoint " + std::to_string(task.pid)));
    log_info("checkpoint %d: %llu bytes", task.pid,
             static_cast<unsigned long long>((*snap)->size()));
    return std::move(*snap);
}

}  // namespace crfs::fs
