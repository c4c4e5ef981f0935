// Reaps the tasks crfsd restored. They are its children; when one exits, a
// watcher thread (one pidfd per task in an epoll set) reads how it ended
// (waitid WNOWAIT on the pidfd: the zombie stays, so its pid cannot be reused
// before whoever adopted it knows), tells the adopter, then has the restorer
// reap it (reap_restored_children()), so no zombie stays behind. Other
// children of the daemon are never waited for here.
#pragma once

#include <sys/types.h>

#include <functional>
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
    // How a task ended: si_code (CLD_EXITED, CLD_KILLED, CLD_DUMPED) and
    // si_status (exit code or signal number), as waitid(2) reports them;
    // code 0 if the task was reaped before its status could be read.
    using OnExit = std::function<void(int code, int status)>;

    // Watches restored task `pid` (a child of this process) until it exits,
    // then calls `on_exit` (on the watcher thread) before reaping it.
    void adopt(pid_t pid, OnExit on_exit = nullptr);

  private:
    struct Watched {
        UniqueFd pidfd;
        OnExit on_exit;
    };
    void loop();
    void ended(pid_t pid);

    std::mutex mu_;
    std::map<pid_t, Watched> watched_;
    UniqueFd epoll_, stop_;
    std::thread thread_;
};

}  // namespace crfs::fs
