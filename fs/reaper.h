// Reaps the tasks crfsd restored. They are its children; when one exits, a
// watcher thread (one pidfd per task in an epoll set) has the restorer reap
// it (reap_restored_children()), so no zombie stays behind. Other children of
// the daemon are never waited for here.
#pragma once

#include <sys/types.h>

#include <map>
#include <mutex>
#include <thread>

#include "common/result.h"
#include "common/unique_fd.h"

namespace crfs::fs {

class Reaper {
  public:
    Reaper() = default;
    ~Reaper();
    Reaper(const Reaper&) = delete;
    Reaper& operator=(const Reaper&) = delete;

    Status start();
    // Watches restored task `pid` (a child of this process) until it exits.
    void adopt(pid_t pid);

  private:
    void loop();

    std::mutex mu_;
    std::map<pid_t, UniqueFd> pidfds_;
    UniqueFd epoll_, stop_;
    std::thread thread_;
};

}  // namespace crfs::fs
