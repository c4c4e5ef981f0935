// Content fingerprints of the files a restore takes from the file system
// (docs/files.md): the whole content of each regular file the task opened
// read-only, and the bytes of the file under each file mapping except writable
// shared ones (the task's own writes change those, like a log it appends to).
// Made after the thaw, as the caller (the crfs-ckpt worker), from the paths;
// a file the caller cannot read, that is no longer the inode the task held,
// that changed since the freeze, or that is larger than kMaxFingerprintBytes
// gets none, and the restore then checks identity (inode, size, mtime)
// instead: stricter, never laxer.
#pragma once

#include <vector>

#include "checkpoint/files.h"
#include "common/procfs.h"
#include "common/result.h"
#include "crfs/image_format.h"

namespace crfs {

struct Fingerprints {
    std::vector<image::FdContentRecord> fds;
    std::vector<image::VmaContentRecord> vmas;
};

// For the fds and mappings that common/file_hash.h's rules say are checked
// by content.
Fingerprints fingerprint_files(const std::vector<TaskFd>& fds, const std::vector<MapsEntry>& maps);

}  // namespace crfs
