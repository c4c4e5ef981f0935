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
#include "state/shared_slots.h"

namespace crfs {
struct TaskFd;  // checkpoint/files.h
}

namespace crfs::state {

// The words of a CRFS_RA_STEP_MQ_* failure of fd `fd` (naming its queue), or
// nullopt for another step.
std::optional<std::string> mqueue_step_text(const DecodedImage& img, int step, int fd);

// failclean: a named queue stage 1 created (its mq_open O_CREAT | O_EXCL took
// the name), recorded right after in its slot (a KobjPlan's mq_made): the
// queue's inode (fstat of the mqd) and name. A queue it only opened (one that
// existed) has none; one it unlinked again (an unlinked queue's, or after a
// failure) is cleared.
struct MqueueMade {
    uint64_t dev = 0, ino = 0;
    uint32_t made = 0;                      // written last
    char name[image::kMaxMqName + 1] = {};  // "/name", NUL-terminated
};

// The slots of one process's queues (state/names_made.h removes them).
class MqueuesMade : public SharedSlots<MqueueMade> {
  public:
    using SharedSlots::SharedSlots;
    // Unlinks every queue recorded that its name still names in `mnt` (the
    // same dev and inode: on this IPC namespace's mqueue file system, the one
    // stage 1 created), with this thread's credentials.
    void remove(int mnt) const;
};

// The mqueue file system of this thread's IPC namespace (the restored
// processes' own: stage 1 runs in the daemon's), mounted nowhere (fsopen,
// fsmount; root): its fd, or -errno. Closed, the mount goes.
int mqueue_mount();

// --- state/mqueue.cc, for the second description -------------------------------

// Whether fd record f (kind kMqueue, checked) is of an unlinked queue.
bool mqueue_unlinked(const FdEntry& f);
// Its open flags in range: access mode (not 3) and O_NONBLOCK only.
Status mqueue_check_flags(const FdEntry& f);

// --- state/mqueue_second.cc ----------------------------------------------------

// f's record: another description of the queue of fd `first`.
void mqueue_second_dump(const FdView& f, int first, TaskFd& t);

}  // namespace crfs::state
