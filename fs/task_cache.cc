#include "fs/task_cache.h"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "fs/inode.h"

namespace crfs::fs {
namespace {

bool exited(int pidfd) {
    pollfd p{pidfd, POLLIN, 0};
    return ::poll(&p, 1, 0) != 0;  // readable (or error): the process is gone
}

}  // namespace

TaskCache::TaskCache(size_t capacity) : capacity_(capacity) {}

TaskCache::~TaskCache() {
    if (watcher_.joinable()) {
        uint64_t one = 1;
        (void)!::write(stop_.get(), &one, sizeof one);
        watcher_.join();
    }
}

Status TaskCache::start(std::function<void(pid_t)> on_exit) {
    on_exit_ = std::move(on_exit);
    epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
    stop_.reset(::eventfd(0, EFD_CLOEXEC));
    if (!epoll_ || !stop_) return errno_error("task cache: epoll/eventfd");
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.fd = -1;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, stop_.get(), &e) < 0)
        return errno_error("task cache: epoll_ctl");
    watcher_ = std::thread([this] { watcher_loop(); });
    return {};
}

Result<Task> TaskCache::find(pid_t pid, bool* cached) {
    if (cached) *cached = false;
    {
        std::lock_guard lock(mu_);
        auto it = tasks_.find(pid);
        if (it != tasks_.end() && !exited(it->second.pidfd.get())) {
            // Alive and still the same process; only the owner may change.
            struct stat st;
            std::string dir = "/proc/" + std::to_string(pid);
            if (::stat(dir.c_str(), &st) == 0) {
                if (cached) *cached = true;
                return Task{it->second.id, st.st_uid, st.st_gid};
            }
        }
    }
    auto t = find_task(pid);
    if (!t || !epoll_) return t;
    int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (fd < 0) return t;
    UniqueFd pidfd(fd);
    // The pidfd names whoever has the pid now: it must be the task we found,
    // alive (a zombie's pidfd is already readable: never cache zombies).
    if (!task_alive(t->id) || exited(fd)) return t;
    std::lock_guard lock(mu_);
    if (tasks_.size() >= capacity_ && !tasks_.count(pid)) return t;
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.fd = pid;
    auto& slot = tasks_[pid];
    slot = Entry{t->id, std::move(pidfd)};  // replacing closes the old pidfd (leaves epoll)
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, slot.pidfd.get(), &e) < 0) {
        tasks_.erase(pid);
        return t;
    }
    if (cached) *cached = true;
    return t;
}

Result<Task> TaskCache::find(pid_t pid, uint64_t start_low_bits, bool* cached) {
    auto t = find(pid, cached);
    if (t && start_low(t->id.starttime) != start_low_bits)
        return sys_error(ESRCH, "task " + std::to_string(pid) + " (pid reused)");
    return t;
}

bool TaskCache::alive(const TaskId& id) {
    {
        std::lock_guard lock(mu_);
        auto it = tasks_.find(id.pid);
        if (it != tasks_.end() && it->second.id == id) return !exited(it->second.pidfd.get());
    }
    return !task_exited(id);
}

size_t TaskCache::size() const {
    std::lock_guard lock(mu_);
    return tasks_.size();
}

void TaskCache::watcher_loop() {
    for (;;) {
        epoll_event evs[64];
        int n = ::epoll_wait(epoll_.get(), evs, 64, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return;
        std::vector<pid_t> gone;
        {
            std::lock_guard lock(mu_);
            for (int i = 0; i < n; ++i) {
                if (evs[i].data.fd == -1) return;
                pid_t pid = evs[i].data.fd;
                auto it = tasks_.find(pid);
                // Only if that pid's current pidfd fired (not a replaced one).
                if (it != tasks_.end() && exited(it->second.pidfd.get())) {
                    tasks_.erase(it);
                    gone.push_back(pid);
                }
            }
        }
        for (pid_t pid : gone) on_exit_(pid);
    }
}

}  // namespace crfs::fs
