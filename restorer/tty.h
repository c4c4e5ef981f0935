// tty (state/tty.h, docs/trees.md "Shell jobs"): the driver's half. An image
// of a shell job comes back on the writer's terminal: the writer's standard
// input (the thread of the FUSE request), taken with pidfd_getfd acting as
// the writer, so the kernel decides. It must be a pseudo-terminal slave that
// is not the writer's own session's controlling terminal; a terminal of
// another session is refused by the kernel at TIOCSCTTY (never forced).
// `crfs restore --shell-job` makes such a terminal and relays it.
#pragma once

#include "common/image_reader.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "restorer/files.h"
#include "restorer/restore.h"
#include "state/tty.h"

namespace crfs {

// The request of this restore: with the writer's terminal (kept in `own`)
// when the image's root records one, after check_tty. A tree's members get
// the root's in their requests.
Result<RestoreRequest> tty_request(const RestoreRequest& req, const DecodedImage& img,
                                   UniqueFd& own);

// Stage 1's plan of this process; its fds on the terminal reopen a copy of
// it kept above its fds (in fds.copies) or /dev/tty.
Result<state::TtyPlan> plan_tty(const RestoreRequest& req, const DecodedImage& img, FdPlan& fds,
                                int min_fd);

}  // namespace crfs
