#include "fs/marks.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>

#include "common/io.h"
#include "common/log.h"

namespace crfs::fs {
namespace {

constexpr std::string_view kStateHeader = "crfs-marks 1\n";

// Printable text: no C0 controls or DEL, and valid UTF-8 for anything else.
bool printable_utf8(std::string_view s) {
    for (size_t i = 0; i < s.size();) {
        auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x20 || c == 0x7f) return false;
        if (c < 0x80) {
            ++i;
            continue;
        }
        size_t len = c >= 0xc2 && c <= 0xdf   ? 2
                     : c >= 0xe0 && c <= 0xef ? 3
                     : c >= 0xf0 && c <= 0xf4 ? 4
                                              : 0;
        if (len == 0 || i + len > s.size()) return false;
        for (size_t k = 1; k < len; ++k)
            if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return false;
        i += len;
    }
    return true;
}

int pidfd_open(pid_t pid) {
    return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

}  // namespace

Result<NocrWrite> parse_nocr_write(std::string_view data) {
    if (!data.empty() && data.back() == '\n') data.remove_suffix(1);
    if (data.empty()) return make_error(EINVAL, "nocr: empty value");
    if (data.size() > kMaxReasonBytes)
        return make_error(EINVAL,
                          "nocr: reason longer than " + std::to_string(kMaxReasonBytes) + " bytes");
    if (!printable_utf8(data))
        return make_error(EINVAL, "nocr: reason must be printable text (no control characters)");
    if (data == "0") return ClearMark{};
    if (data == "1") return SetMark{std::string(kDefaultReason)};
    return SetMark{std::string(data)};
}

MarkStore::MarkStore(ExitWatcher& exits, std::string state_file)
    : exits_(exits), state_file_(std::move(state_file)) {}

MarkStore::~MarkStore() {
    std::vector<ExitWatcher::Id> ids;
    {
        std::lock_guard lock(mu_);
        for (auto& [key, mark] : marks_) ids.push_back(mark.watch);
    }
    for (auto id : ids) exits_.cancel(id);
}

std::string MarkStore::serialize(const std::map<Key, std::string>& marks) {
    std::string out(kStateHeader);
    for (auto& [key, reason] : marks)
        out += std::to_string(key.first) + " " + std::to_string(key.second) + " " + reason + "\n";
    return out;
}

Result<std::map<MarkStore::Key, std::string>> MarkStore::parse(std::string_view text) {
    if (!text.starts_with(kStateHeader))
        return make_error(EINVAL, "marks state: missing header \"crfs-marks 1\"");
    text.remove_prefix(kStateHeader.size());
    std::map<Key, std::string> out;
    for (int line = 2; !text.empty(); ++line) {
        size_t nl = text.find('\n');
        if (nl == std::string_view::npos)
            return make_error(EINVAL,
                              "marks state: line " + std::to_string(line) + " unterminated");
        std::string_view l = text.substr(0, nl);
        text.remove_prefix(nl + 1);
        pid_t pid = 0;
        uint64_t start = 0;
        const char* end = l.data() + l.size();
        auto r1 = std::from_chars(l.data(), end, pid);
        auto r2 = r1.ec == std::errc() && r1.ptr < end && *r1.ptr == ' '
                      ? std::from_chars(r1.ptr + 1, end, start)
                      : std::from_chars_result{nullptr, std::errc::invalid_argument};
        if (r2.ec != std::errc() || r2.ptr >= end || *r2.ptr != ' ' || pid <= 0)
            return make_error(EINVAL, "marks state: line " + std::to_string(line) + " malformed");
        std::string_view reason(r2.ptr + 1, static_cast<size_t>(end - r2.ptr - 1));
        auto parsed = parse_nocr_write(reason);
        if (!parsed || !std::holds_alternative<SetMark>(*parsed))
            return make_error(EINVAL, "marks state: line " + std::to_string(line) + " bad reason");
        out[{pid, start}] = std::string(reason);
    }
    return out;
}

Status MarkStore::load() {
    auto text = read_file(state_file_);
    std::lock_guard lock(mu_);
    if (text) {
        auto saved = parse(*text);
        if (!saved) return std::unexpected(saved.error().context(state_file_));
        for (auto& [key, reason] : *saved) {
            Mark m{reason, 0};
            auto alive = watch_locked(TaskId{key.first, key.second}, m);
            if (!alive) return std::unexpected(alive.error());  // never drop a live task's mark
            if (*alive) marks_.emplace(key, std::move(m));
        }
    } else if (text.error().code != ENOENT) {
        return std::unexpected(text.error());
    }
    return persist_locked();
}

Result<bool> MarkStore::watch_locked(const TaskId& task, Mark& mark) {
    UniqueFd pidfd(pidfd_open(task.pid));
    if (!pidfd) return false;
    // The pidfd names whatever has the pid now: make sure it is our task.
    if (!task_alive(task)) return false;
    Key key{task.pid, task.starttime};
    auto id = exits_.watch(pidfd.get(), [this, key](ExitWatcher::Id id) { exited(key, id); });
    if (!id) return std::unexpected(id.error().context("mark of task " + std::to_string(task.pid)));
    mark.watch = *id;
    return true;
}

void MarkStore::exited(const Key& key, ExitWatcher::Id id) {
    std::lock_guard lock(mu_);
    auto it = marks_.find(key);
    if (it == marks_.end() || it->second.watch != id) return;  // cleared, or set again
    marks_.erase(it);
    if (auto p = persist_locked(); !p) log_error("%s", p.error().what.c_str());
}

Status MarkStore::persist_locked() const {
    std::map<Key, std::string> plain;
    for (auto& [key, mark] : marks_) plain.emplace(key, mark.reason);
    return write_file_atomic(state_file_, serialize(plain), 0600);
}

std::optional<std::string> MarkStore::get(const TaskId& task) const {
    std::lock_guard lock(mu_);
    auto it = marks_.find({task.pid, task.starttime});
    if (it == marks_.end()) return std::nullopt;
    return it->second.reason;
}

Status MarkStore::set(const TaskId& task, std::string reason) {
    ExitWatcher::Id dropped = 0;
    Status persisted;
    {
        std::lock_guard lock(mu_);
        Key key{task.pid, task.starttime};
        auto it = marks_.find(key);
        if (it != marks_.end()) {
            std::string old = std::exchange(it->second.reason, std::move(reason));
            if (auto p = persist_locked(); !p) {
                it->second.reason = std::move(old);
                return p;
            }
            return {};
        }
        Mark m{std::move(reason), 0};
        auto alive = watch_locked(task, m);
        if (!alive) return std::unexpected(alive.error());
        if (!*alive) return sys_error(ESRCH, "task " + std::to_string(task.pid));
        it = marks_.emplace(key, std::move(m)).first;
        persisted = persist_locked();
        if (persisted) return {};
        dropped = it->second.watch;
        marks_.erase(it);
    }
    exits_.cancel(dropped);  // outside mu_: its callback may be waiting for it
    return persisted;
}

Status MarkStore::clear(const TaskId& task) {
    ExitWatcher::Id watch = 0;
    {
        std::lock_guard lock(mu_);
        auto node = marks_.extract({task.pid, task.starttime});
        if (node.empty()) return {};
        if (auto p = persist_locked(); !p) {
            marks_.insert(std::move(node));
            return p;
        }
        watch = node.mapped().watch;
    }
    exits_.cancel(watch);
    return {};
}

size_t MarkStore::size() const {
    std::lock_guard lock(mu_);
    return marks_.size();
}

}  // namespace crfs::fs
