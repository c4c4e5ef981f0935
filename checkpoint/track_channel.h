// incr: how a chain's tracking travels between the daemon, which keeps it
// between two reads of /crfs/<pid>/delta, and the checkpoint worker
// (checkpoint/worker.h), which uses it: the image id and one tracking
// userfaultfd per process of the tree (its pid and start time with it), on a
// SOCK_SEQPACKET socketpair, in messages of at most kTrackBatch descriptors
// (SCM_RIGHTS).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"

namespace crfs {

// One process of a tracked tree (the tracking of its memory: threads share it).
struct TrackedMember {
    pid_t pid = 0;
    uint64_t starttime = 0;
    UniqueFd uffd;
};

struct TrackMessage {
    uint64_t id = 0;
    std::vector<TrackedMember> members;  // empty: no tracking
};

inline constexpr uint32_t kTrackBatch = 64;

// The descriptors are borrowed. Every message is queued before this returns.
Status send_track(int sock, const TrackMessage& t);
// Without waiting: an empty message (no members, id 0) if none is queued.
Result<TrackMessage> recv_track(int sock);

}  // namespace crfs
