// Reaps the tasks crfsd restored. They are its children; when one exits, the
// daemon's exit watcher (fs/exit_watcher.h, one pidfd per task, kept until the
// task is told: a zombie that another process traces is waited for only once
// the tracer lets go) calls sweep(), which reads how it ended
// (waitid WNOWAIT on the pidfd: the zombie stays, so its pid cannot be reused
// before whoever adopted it knows), tells the adopter, then releases it to
// the restorer and has it reaped (reap_restored_children()), so no zombie
// stays behind. The restorer holds every restored task until then: one that
// ends before its adoption is not reaped by another task's sweep but stays a
// zombie, and its adoption tells its end at once. Other children of the
// daemon are never waited for here.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <mutex>

#include "common/result.h"
#include "common/unique_fd.h"
#include "fs/exit_watcher.h"

namespace crfs::fs {

class Reaper {
  public:
    // `exits` must outlive the reaper; nothing is reaped before it starts.
    explicit Reaper(ExitWatcher& exits) : exits_(exits) {}
    ~Reaper();
    Reaper(const Reaper&) = delete;
    Reaper& operator=(const Reaper&) = delete;

    // How a task ended: si_code (CLD_EXITED, CLD_KILLED, CLD_DUMPED) and
    // si_status (exit code or signal number), as waitid(2) reports them.
    using OnExit = std::function<void(int code, int status)>;

    // Watches restored task `pid` (a child of this process, held by the
    // restorer) until it exits, then calls `on_exit` (on the watcher thread)
    // before reaping it; at once (on the watcher thread) if it ended already.
    // Every task restore_image returns must be adopted.
    void adopt(pid_t pid, OnExit on_exit = nullptr);

    // An orphan that came to crfsd while it was a subreaper (registered by
    // common/own_children.h, the adopter): `pidfd` is watched until it ends,
    // then it is reaped. Nobody is told; one still alive when crfsd ends goes
    // to init. False: not watched (no room).
    bool adopt_orphan(pid_t pid, UniqueFd pidfd);

  private:
    struct Watched {
        UniqueFd pidfd;  // waitid(P_PIDFD) reads the status through it
        OnExit on_exit;
        ExitWatcher::Id watch = 0;
    };
    // Tells every ended task's adopter, then reaps.
    void sweep();
    bool ended(pid_t pid);  // true: `pid` ended and its adopter was told

    ExitWatcher& exits_;
    std::mutex mu_;  // never held while calling out (adopters, cancel)
    std::map<pid_t, Watched> watched_;
};

}  // namespace crfs::fs
