#include "fs/reaper.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fs/log.h"
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

void Reaper::adopt(pid_t pid) {
    int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (fd < 0) {
        // Already gone: reap it now.
        reap_restored_children();
        return;
    }
    std::lock_guard lock(mu_);
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.fd = pid;
    auto& slot = pidfds_[pid];
    slot.reset(fd);
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &e) < 0)
        log_error("reaper: watch pid %d: %s", pid, std::strerror(errno));
}

void Reaper::loop() {
    for (;;) {
        epoll_event evs[32];
        int n = ::epoll_wait(epoll_.get(), evs, 32, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return;
        for (int i = 0; i < n; ++i)
            if (evs[i].data.fd == -1) return;
        for (pid_t pid : reap_restored_children()) {
            std::lock_guard lock(mu_);
            pidfds_.erase(pid);  // closing the pidfd leaves the epoll set
            log_debug("reaped restored pid %d", pid);
        }
    }
}

}  // namespace crfs::fs
