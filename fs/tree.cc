#include "fs/tree.h"

#include <chrono>
#include <cstring>

#include "checkpoint/pid_lock.h"
#include "checkpoint/worker.h"
#include "common/log.h"
#include "fs/kernel_marks.h"
#include "state/netlock.h"
#include "state/registry.h"

namespace crfs::fs {

std::optional<unsigned> find_pid_entry(std::string_view name) {
    for (unsigned i = 0; i < std::size(kPidEntries); ++i)
        if (kPidEntries[i].name == name) return i;
    return std::nullopt;
}

namespace {

// Runs `mode` in a worker holding the caller's credentials (checkpoint/worker.h).
Result<WorkerReply> as_caller(WorkerMode mode, const TaskId& task, const Caller& caller,
                              pid_t daemon_tgid, std::vector<pid_t> busy = {}) {
    auto creds = caller_creds(caller);
    if (!creds) return std::unexpected(creds.error());
    return run_worker(WorkerRequest{mode, task.pid, task.starttime, daemon_tgid, *creds, nullptr,
                                    std::move(busy)});
}

}  // namespace

Status check_right(Right right, const Caller& caller, const TaskId& task) {
    if (right != Right::kPtrace || trusted_for(caller, task)) return {};
    auto r = as_caller(WorkerMode::kAccess, task, caller, 0);  // no tracer to recognise
    if (!r) return std::unexpected(r.error());
    return {};
}

Result<std::string> reasons_text(Daemon& d, const TaskId& task, const Caller& caller) {
    // A live snapshot whose stream ended may still be releasing the task's
    // userfaultfd, or a descendant's (its worker does it after the reader's
    // last byte): its registration is not the task's state. Bounded:
    // milliseconds.
    if (!PidLock::wait_released_below(task.pid, std::chrono::seconds(10)))
        log_info("reason of %d: a userfaultfd release below it still pending after 10 s",
                 int(task.pid));
    std::string out;
    if (auto mark = d.marks.get(task)) out += "nocr: " + *mark + "\n";
    for (auto& line : kernel_reasons(task.pid)) out += line + "\n";
    if (trusted_for(caller, task)) {
        auto detected = state::detect_reasons(task.pid, d.self_tgid);
        if (!detected) return std::unexpected(detected.error());
        for (auto& line : *detected) out += line + "\n";
    } else {
        auto detected = as_caller(WorkerMode::kReasons, task, caller, d.self_tgid,
                                  PidLock::busy_around(task.pid));
        if (!detected) return std::unexpected(detected.error());
        out += detected->text;
    }
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

Result<Content> read_nocr(Daemon& d, const TaskId& task, const Caller&) {
    return text_content(d.marks.get(task) || !kernel_reasons(task.pid).empty() ? "1\n" : "0\n");
}

Status write_nocr(Daemon& d, const TaskId& task, std::string_view data) {
    auto req = parse_nocr_write(data);
    if (!req) return std::unexpected(req.error());
    if (auto* set = std::get_if<SetMark>(&*req)) return d.marks.set(task, std::move(set->reason));
    kernel_clear_mark(task.pid);
    return d.marks.clear(task);
}

Result<Content> read_reason(Daemon& d, const TaskId& task, const Caller& caller) {
    auto text = reasons_text(d, task, caller);
    if (!text) return std::unexpected(text.error());
    return text_content(std::move(*text));
}

Result<Content> read_image(Daemon& d, const TaskId& task, const Caller& caller) {
    auto creds = OpenerCreds::of(caller, task);
    if (!creds) return std::unexpected(creds.error());
    return checkpoint_as(d, task, *creds);
}

Result<OpenerCreds> OpenerCreds::of(const Caller& caller, const TaskId& task) {
    auto creds = caller_creds(caller);
    if (!creds) return std::unexpected(creds.error());
    return OpenerCreds{std::move(*creds), trusted_for(caller, task)};
}

Result<Content> checkpoint_as(Daemon& d, const TaskId& task, const OpenerCreds& who, bool delta) {
    // The checkpointer and `reason` agree: any reason, and there is no image.
    // The marks are the daemon's; the detected reasons the worker finds itself.
    std::string marks;
    if (auto mark = d.marks.get(task)) marks = "nocr: " + *mark;
    if (auto kernel = kernel_reasons(task.pid); marks.empty() && !kernel.empty()) marks = kernel[0];
    if (!marks.empty()) {
        // A caller without the right learns nothing of the marks: EACCES first.
        if (!who.trusted)
            if (auto ok = run_worker(
                    WorkerRequest{WorkerMode::kAccess, task.pid, task.starttime, 0, who.creds});
                !ok)
                return std::unexpected(ok.error());
        return make_error(EBUSY, "checkpoint " + std::to_string(task.pid) +
                                     ": not checkpointable now (" + marks + "; see reason)");
    }
    // A root caller's established TCP connections go under the network lock
    // before the worker freezes the task (state/netlock.h, docs/network.md).
    std::vector<state::LockedConn> locked;
    if (who.creds.uid[3] == 0) locked = state::established_connections(task.pid);
    if (!locked.empty())
        if (auto s = state::netlock_add(locked); !s)
            return std::unexpected(s.error().context("checkpoint " + std::to_string(task.pid)));
    WorkerRequest req{WorkerMode::kImage, task.pid, task.starttime, d.self_tgid, who.creds};
    DeltaTrackers::Entry track;  // incr: the chain's tracking, lent to the worker
    if (delta) {
        auto taken = d.trackers.take(task);
        if (!taken) return std::unexpected(taken.error());
        track = std::move(*taken);
        req.mode = WorkerMode::kDelta;
        if (!track.chain.members.empty()) req.track = &track.chain;
    }
    auto r = run_worker(req);
    if (delta && r)
        d.trackers.put(task, {std::move(r->track), who.creds.uid[0]});
    else if (delta)
        d.trackers.release(task);  // the chain ends: the next read starts a new one
    if (!r && !locked.empty()) state::netlock_remove(locked);
    if (!r) return std::unexpected(r.error().context("checkpoint " + std::to_string(task.pid)));
    log_info("checkpoint %d: %llu bytes", task.pid,
             static_cast<unsigned long long>(r->image->size()));
    return std::move(r->image);
}

}  // namespace crfs::fs
