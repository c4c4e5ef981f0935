// POSIX message queues (issue 11; state/mqueue.cc): the kind is kMqueueKind
// of state/kobj.h; this names the restore's failures of its stage 1. Another
// description of an unlinked queue is kMqueueSecondKind (state/mqueue_second.cc).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "common/image_reader.h"
#include "common/result.h"
#include "state/kind.h"

namespace crfs {
struct TaskFd;  // checkpoint/files.h
}

namespace crfs::state {

// The words of a CRFS_RA_STEP_MQ_* failure of fd `fd` (naming its queue), or
// nullopt for another step.
std::optional<std::string> mqueue_step_text(const DecodedImage& img, int step, int fd);

// --- state/mqueue.cc, for the second description -------------------------------

// Whether fd record f (kind kMqueue, checked) is of an unlinked queue.
bool mqueue_unlinked(const FdEntry& f);
// Its open flags in range: access mode (not 3) and O_NONBLOCK only.
Status mqueue_check_flags(const FdEntry& f);

// --- state/mqueue_second.cc ----------------------------------------------------

// The lowest fd of pid below f.fd that holds f's queue (its inode), or nullopt.
std::optional<int> mqueue_first_fd(pid_t pid, const FdView& f);
// f's record: another description of the queue of fd `first`.
void mqueue_second_dump(const FdView& f, int first, TaskFd& t);

}  // namespace crfs::state
