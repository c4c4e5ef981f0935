// incr (docs/incremental.md): the delta tracking of each task whose
// /crfs/<pid>/delta was read, kept by the daemon until the next read: the
// tracking userfaultfd of each process of its tree (checkpoint/incremental.h)
// and the id of the last image of the chain. Dropping one closes its userfaultfd, and the kernel
// ends the tracking: the task runs as before. Nothing survives the daemon:
// after a restart the next delta read starts a new chain.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <mutex>
#include <vector>

#include "checkpoint/track_channel.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "fs/tasks.h"

namespace crfs::fs {

// Trackings one user keeps at most, and their processes (userfaultfds held
// by the daemon); past either the oldest of theirs is dropped (that chain's
// next read starts a new one).
inline constexpr size_t kMaxTrackedPerUser = 64;
inline constexpr size_t kMaxTrackedProcessesPerUser = 1024;

class DeltaTrackers {
  public:
    struct Entry {
        TrackMessage chain;  // no members: no chain yet
        uid_t uid = 0;
    };
    // The task's tracking, taken out until put() or release(); EBUSY while
    // another read of the task's delta has it.
    Result<Entry> take(const TaskId& task);
    // Keeps the tracking for the next read; drops those of tasks that are gone.
    void put(const TaskId& task, Entry e);
    // The read failed: the chain is lost, the next read starts a new one.
    void release(const TaskId& task);

  private:
    std::mutex mu_;                                  // guards the fields below
    std::vector<std::pair<TaskId, Entry>> entries_;  // oldest first
    std::vector<TaskId> busy_;
};

}  // namespace crfs::fs
