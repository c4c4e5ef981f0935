#include "fs/marks.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
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

MarkStore::MarkStore(std::string state_file) : state_file_(std::move(state_file)) {}

MarkStore::~MarkStore() {
    if (watcher_.joinable()) {
        uint64_t one = 1;
        (void)!::write(stop_.get(), &one, sizeof one);
        watcher_.join();
    }
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
    int ep = ::epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) return errno_error("epoll_create1");
    epoll_.reset(ep);
    int ev = ::eventfd(0, EFD_CLOEXEC);
    if (ev < 0) return errno_error("eventfd");
    stop_.reset(ev);
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.fd = stop_.get();
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, stop_.get(), &e) < 0)
        return errno_error("epoll_ctl");

    auto text = read_file(state_file_);
    std::lock_guard lock(mu_);
    if (text) {
        auto saved = parse(*text);
        if (!saved) return std::unexpected(saved.error().context(state_file_));
        for (auto& [key, reason] : *saved) {
            Mark m{reason, {}};
            if (watch_locked(TaskId{key.first, key.second}, m)) marks_.emplace(key, std::move(m));
        }
    } else if (text.error().code != ENOENT) {
        return std::unexpected(text.error());
    }
    return persist_locked();
}

Status MarkStore::start_watcher() {
    if (!epoll_) return make_error(EINVAL, "marks: start_watcher() before load()");
    watcher_ = std::thread([this] { watcher_loop(); });
    return {};
}

bool MarkStore::watch_locked(const TaskId& task, Mark& mark) {
    int fd = pidfd_open(task.pid);
    if (fd < 0) return false;
    mark.pidfd.reset(fd);
    // The pidfd names whatever has the pid now: make sure it is our task.
    if (!task_alive(task)) return false;
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.fd = fd;
    return ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &e) == 0;
}

void MarkStore::watcher_loop() {
    for (;;) {
        epoll_event evs[16];
        int n = ::epoll_wait(epoll_.get(), evs, 16, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return;
        std::lock_guard lock(mu_);
        bool changed = false;
        for (int i = 0; i < n; ++i) {
            if (evs[i].data.fd == stop_.get()) return;
            for (auto it = marks_.begin(); it != marks_.end(); ++it) {
                if (it->second.pidfd.get() == evs[i].data.fd) {
                    marks_.erase(it);  // closing the pidfd removes it from the epoll set
                    changed = true;
                    break;
                }
            }
        }
        if (changed) {
            if (auto p = persist_locked(); !p) log_error("%s", p.error().what.c_str());
        }
    }
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
    Mark m{std::move(reason), {}};
    if (!watch_locked(task, m)) return sys_error(ESRCH, "task " + std::to_string(task.pid));
    it = marks_.emplace(key, std::move(m)).first;
    if (auto p = persist_locked(); !p) {
        marks_.erase(it);
        return p;
    }
    return {};
}

Status MarkStore::clear(const TaskId& task) {
    std::lock_guard lock(mu_);
    auto node = marks_.extract({task.pid, task.starttime});
    if (node.empty()) return {};
    if (auto p = persist_locked(); !p) {
        marks_.insert(std::move(node));
        return p;
    }
    return {};
}

size_t MarkStore::size() const {
    std::lock_guard lock(mu_);
    return marks_.size();
}

}  // namespace crfs::fs
