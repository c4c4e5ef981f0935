// POSIX message queues (issue 11; state/mqueue.cc): the kind is kMqueueKind
// of state/kobj.h; this names the restore's failures of its stage 1.
#pragma once

#include <optional>
#include <string>

#include "common/image_reader.h"

namespace crfs::state {

// The words of a CRFS_RA_STEP_MQ_* failure of fd `fd` (naming its queue), or
// nullopt for another step.
std::optional<std::string> mqueue_step_text(const DecodedImage& img, int step, int fd);

}  // namespace crfs::state
