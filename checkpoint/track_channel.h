// incr: how a chain's tracking userfaultfd travels between the daemon, which
// keeps it between two reads of /crfs/<pid>/delta, and the checkpoint worker
// (checkpoint/worker.h), which uses it: one message on a SOCK_SEQPACKET
// socketpair, the image id (8 bytes) and the descriptor (SCM_RIGHTS).
#pragma once

#include <cstdint>

#include "common/result.h"
#include "common/unique_fd.h"

namespace crfs {

struct TrackMessage {
    UniqueFd uffd;
    uint64_t id = 0;
};

Status send_track(int sock, int uffd, uint64_t id);
// Without waiting: an empty message (no fd, id 0) if none is queued.
Result<TrackMessage> recv_track(int sock);

}  // namespace crfs
