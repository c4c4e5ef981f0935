#include "fs/reaper.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vector>

#include "common/log.h"
#include "restorer/restore.h"

namespace crfs::fs {

Reaper::~Reaper() {
    if (thread_.joinable()) {
        uint64_t one = 1;
        (void)!::write(stop_.get(), &one, sizeof one);
        thread_.join();
    }
}

Status Reaper::start() {
    epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
    stop_.reset(::eventfd(0, EFD_CLOEXEC));
    if (!epoll_ || !stop_) return errno_error("reaper: epoll/eventfd");
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.fd = -1;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, stop_.get(), &e) < 0)
        return errno_error("reaper: epoll_ctl");
    thread_ = std::thread([this] { loop(); });
    return {};
}

void Reaper::adopt(pid_t pid, OnExit on_exit) {
    // A child that exited is a zombie until reaped, and only this thread
    // reaps: the pidfd can always be had.
    int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (fd < 0) {
        log_error("reaper: pidfd of restored pid %d: %s", pid, std::strerror(errno));
        reap_restored_children();
        return;
    }
    std::lock_guard lock(mu_);
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.fd = pid;
    auto& w = watched_[pid];
    w.pidfd.reset(fd);
    w.on_exit = std::move(on_exit);
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &e) < 0)
        log_error("reaper: watch pid %d: %s", pid, std::strerror(errno));
}

void Reaper::ended(pid_t pid) {
    OnExit on_exit;
    siginfo_t si{};
    {
        std::lock_guard lock(mu_);
        auto it = watched_.find(pid);
        if (it == watched_.end()) return;
        if (::waitid(P_PIDFD, static_cast<id_t>(it->second.pidfd.get()), &si,
                     WEXITED | WNOWAIT | WNOHANG) < 0 ||
            si.si_pid == 0)
            return;  // not ended yet
        on_exit = std::move(it->second.on_exit);
        watched_.erase(it);  // closing the pidfd leaves the epoll set
    }
    if (on_exit) on_exit(si.si_code, si.si_status);
}

void Reaper::loop() {
    for (;;) {
        epoll_event evs[32];
        int n = ::epoll_wait(epoll_.get(), evs, 32, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return;
        for (int i = 0; i < n; ++i)
            if (evs[i].data.fd == -1) return;
        // Every watched task, not only those in evs: one that exits after
        // epoll_wait returned is reaped below too, and must be told first.
        std::vector<pid_t> pids;
        {
            std::lock_guard lock(mu_);
            for (auto& [pid, w] : watched_) pids.push_back(pid);
        }
        for (pid_t pid : pids) ended(pid);
        for (pid_t pid : reap_restored_children()) {
            // One that exited between ended() and the reap: its status is
            // gone with it; say so rather than nothing (code 0).
            OnExit late;
            {
                std::lock_guard lock(mu_);
                if (auto it = watched_.find(pid); it != watched_.end()) {
                    late = std::move(it->second.on_exit);
                    watched_.erase(it);
                }
            }
            if (late) late(0, 0);
            log_debug("reaped restored pid %d", pid);
        }
    }
}

}  // namespace crfs::fs
