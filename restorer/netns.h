// The network namespace of a restore: the writer's (docs/network.md). A
// writer in another network namespace than the daemon's (`ip netns exec B cp
// img /crfs/x/image`) gets its task, and the task's sockets, in its own
// namespace: the daemon makes the sockets on a thread that joined it, and
// stage 1 joins it while still root. Joining is what the writer could do by
// hand (it is in that namespace), so it needs no check of its own.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "common/image_reader.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "state/netlock.h"

namespace crfs {

// An fd of writer thread `tid`'s network namespace, or an empty UniqueFd when
// it is this thread's own (or tid is 0). `shared` (a tree's): the answer for
// an earlier process of the same restore, given again (a copy of the fd), or
// empty, and then kept for the later ones (treeperf: ~25 us a process).
Result<UniqueFd> writer_netns(pid_t tid, std::optional<UniqueFd>* shared = nullptr);

// Runs fn on a thread in network namespace `netns` (this thread when empty).
Status in_netns(const UniqueFd& netns, const std::function<Status()>& fn);

// Stage 1, syscalls only: joins `netns_fd` (>= 0) and closes it.
void child_join_netns(int netns_fd, int status_fd);

// The network lock of a restore (state/netlock.h): the image's established
// connections are dropped in the writer's namespace while their sockets are
// built, so that a peer's packet that reaches a half-built socket, or none,
// gets no answer. A root writer's only: the lock is root's, and a user's
// image must not name what root's lock drops or lets through.
class RestoreNetlock {
  public:
    // Takes the lock for `img`'s connections in `netns` (empty: the daemon's).
    static Result<RestoreNetlock> take(const DecodedImage& img, const UniqueFd& netns, bool root);
    RestoreNetlock(RestoreNetlock&&) = default;
    // The task runs with its connections: they leave the lock (the checkpoint's
    // namespace keeps them while it owns their address).
    void restored();
    // Not restored: they leave every lock.
    ~RestoreNetlock();

  private:
    RestoreNetlock() = default;
    std::vector<state::LockedConn> conns_;
    std::shared_ptr<const UniqueFd> netns_;
    bool done_ = false;
};

}  // namespace crfs
