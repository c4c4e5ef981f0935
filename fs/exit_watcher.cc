#include "fs/exit_watcher.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <string>

namespace crfs::fs {
namespace {

constexpr uint64_t kStopTag = 0;  // epoll data of the stop eventfd (ids start at 1)

}  // namespace

ExitWatcher::ExitWatcher(size_t capacity) : capacity_(capacity) {}

ExitWatcher::~ExitWatcher() {
    stop();
}

Status ExitWatcher::open_locked() {
    if (epoll_) return {};
    UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
    if (!ep) return errno_error("exit watcher: epoll_create1");
    UniqueFd ev(::eventfd(0, EFD_CLOEXEC));
    if (!ev) return errno_error("exit watcher: eventfd");
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.u64 = kStopTag;
    if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, ev.get(), &e) < 0)
        return errno_error("exit watcher: epoll_ctl (stop eventfd)");
    epoll_ = std::move(ep);
    stop_ = std::move(ev);
    return {};
}

Status ExitWatcher::start() {
    std::lock_guard lock(mu_);
    if (thread_.joinable()) return make_error(EINVAL, "exit watcher: started twice");
    if (auto ok = open_locked(); !ok) return ok;
    thread_ = std::thread([this] { loop(); });
    return {};
}

void ExitWatcher::stop() {
    {
        std::lock_guard lock(mu_);
        if (thread_.joinable()) {
            uint64_t one = 1;
            (void)!::write(stop_.get(), &one, sizeof one);
        }
    }
    if (thread_.joinable()) thread_.join();
    std::lock_guard lock(mu_);
    regs_.clear();  // pending registrations: dropped, callbacks not called
    epoll_.reset();
    stop_.reset();
}

Result<ExitWatcher::Id> ExitWatcher::watch(int pidfd, OnExit on_exit) {
    return add(
        pidfd,
        [on_exit = std::move(on_exit)](Id id) {
            if (on_exit) on_exit(id);
            return true;
        },
        true);
}

Result<ExitWatcher::Id> ExitWatcher::watch_until(int pidfd, Until until) {
    return add(pidfd, std::move(until), false);
}

Result<ExitWatcher::Id> ExitWatcher::add(int pidfd, Until until, bool once) {
    std::lock_guard lock(mu_);
    if (regs_.size() >= capacity_)
        return make_error(EMFILE, "exit watcher: " + std::to_string(capacity_) +
                                      " processes watched already (the limit)");
    if (auto ok = open_locked(); !ok) return std::unexpected(ok.error());
    UniqueFd own(::fcntl(pidfd, F_DUPFD_CLOEXEC, 0));
    if (!own) return errno_error("exit watcher: dup of pidfd " + std::to_string(pidfd));
    Id id = next_++;
    epoll_event e{};
    // Edge-triggered: a readable (exited) pidfd is reported when added and
    // then at each wake-up only; a `once` registration is gone after the first.
    e.events = EPOLLIN | EPOLLET;
    e.data.u64 = id;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, own.get(), &e) < 0)
        return errno_error("exit watcher: epoll_ctl (pidfd)");
    regs_.emplace(id, Registration{std::move(own), std::move(until), once});
    return id;
}

void ExitWatcher::cancel(Id id) {
    if (id == 0) return;
    std::unique_lock lock(mu_);
    if (auto it = regs_.find(id); it != regs_.end()) {
        ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second.fd.get(), nullptr);
        regs_.erase(it);
    }
    if (std::this_thread::get_id() == thread_.get_id()) return;  // from a callback
    idle_.wait(lock, [&] { return running_ != id; });
}

size_t ExitWatcher::size() const {
    std::lock_guard lock(mu_);
    return regs_.size();
}

void ExitWatcher::loop() {
    for (;;) {
        epoll_event evs[64];
        int n = ::epoll_wait(epoll_.get(), evs, 64, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return;
        for (int i = 0; i < n; ++i)
            if (evs[i].data.u64 == kStopTag) return;
        for (int i = 0; i < n; ++i) {
            Id id = evs[i].data.u64;
            Until until;
            {
                std::lock_guard lock(mu_);
                auto it = regs_.find(id);
                if (it == regs_.end()) continue;  // cancelled meanwhile
                if (it->second.once) {
                    // A pidfd reports only its process's end (readable, or
                    // hung up once reaped): one event and the registration is done.
                    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second.fd.get(), nullptr);
                    until = std::move(it->second.until);
                    regs_.erase(it);
                } else {
                    until = it->second.until;  // kept until it says it is done
                }
                running_ = id;
            }
            bool done = !until || until(id);
            {
                std::lock_guard lock(mu_);
                running_ = 0;
                if (auto it = regs_.find(id); done && it != regs_.end()) {
                    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second.fd.get(), nullptr);
                    regs_.erase(it);
                }
            }
            idle_.notify_all();
        }
    }
}

}  // namespace crfs::fs
