// One checkpoint per pid at a time in this process; others wait (not fail).
// Held from before the freeze until after the thaw only.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <mutex>
#include <set>

namespace crfs {

class PidLock {
  public:
    explicit PidLock(pid_t pid) : pid_(pid) {
        std::unique_lock l(mu_);
        cv_.wait(l, [&] { return !busy_.contains(pid_); });
        busy_.insert(pid_);
    }
    ~PidLock() {
        {
            std::lock_guard l(mu_);
            busy_.erase(pid_);
        }
        cv_.notify_all();
    }
    PidLock(const PidLock&) = delete;
    PidLock& operator=(const PidLock&) = delete;

  private:
    pid_t pid_;
    static inline std::mutex mu_;
    static inline std::condition_variable cv_;
    static inline std::set<pid_t> busy_;  // guarded by mu_
};

}  // namespace crfs
