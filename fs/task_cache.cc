#include "fs/task_cache.h"

#include <poll.h>
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

TaskCache::TaskCache(ExitWatcher& exits, size_t capacity) : exits_(exits), capacity_(capacity) {}

TaskCache::~TaskCache() {
    std::vector<ExitWatcher::Id> ids;
    {
        std::lock_guard lock(mu_);
        for (auto& [pid, e] : tasks_) ids.push_back(e.watch);
    }
    for (auto id : ids) exits_.cancel(id);
}

void TaskCache::start(std::function<void(pid_t)> on_exit) {
    std::lock_guard lock(mu_);
    on_exit_ = std::move(on_exit);
    started_ = true;
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
    if (!t) return t;
    int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (fd < 0) return t;
    UniqueFd pidfd(fd);
    // The pidfd names whoever has the pid now: it must be the task we found,
    // alive (a zombie's pidfd is already readable: never cache zombies).
    if (!task_alive(t->id) || exited(fd)) return t;
    ExitWatcher::Id replaced = 0;
    {
        std::lock_guard lock(mu_);
        if (!started_ || (tasks_.size() >= capacity_ && !tasks_.count(pid))) return t;
        auto id = exits_.watch(fd, [this, pid](ExitWatcher::Id id) { forget_exited(pid, id); });
        if (!id) return t;
        auto& slot = tasks_[pid];
        replaced = slot.watch;
        slot = Entry{t->id, std::move(pidfd), *id};
        if (cached) *cached = true;
    }
    // A stale callback would find another id; cancelling just saves its fd.
    if (replaced) exits_.cancel(replaced);
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

void TaskCache::forget_exited(pid_t pid, ExitWatcher::Id id) {
    {
        std::lock_guard lock(mu_);
        auto it = tasks_.find(pid);
        // Only if that pid's current registration fired (not a replaced one).
        if (it == tasks_.end() || it->second.watch != id) return;
        tasks_.erase(it);
    }
    on_exit_(pid);
}

}  // namespace crfs::fs
