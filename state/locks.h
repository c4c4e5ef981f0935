// File locks (state/locks.cc): flock, POSIX and OFD locks read from fdinfo in
// the frozen task, range-checked, and taken again in stage 1 of a restore.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/image_reader.h"
#include "common/result.h"
#include "state/kind.h"

namespace crfs::state {

// Checkpoint: every lock the task holds through its fds (`view` is read while
// the task is frozen), one record each.
Result<std::vector<image::FileLockRecord>> dump_locks(TaskView& view);

// Restore: each record names a regular file's fd and a kind, type and range
// the kernel takes.
Status check_locks(const DecodedImage& img);

// Stage 1, after the fds are in place: each lock taken again without
// waiting. On failure: the errno and the record's index (no allocation).
struct LockFail {
    int err = 0;
    uint32_t index = 0;
};
LockFail child_locks(const std::vector<image::FileLockRecord>& locks);

// "flock WRITE lock on fd 3 (/path)", "POSIX READ lock on bytes 10-19 of ...".
std::string lock_text(const DecodedImage& img, uint32_t index);

}  // namespace crfs::state
