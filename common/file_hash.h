// Content fingerprints of files (docs/files.md): the checkpoint records them
// for files a restore takes from the file system (files the task only reads,
// the files behind its mappings), and the restore compares them, so the same
// bytes under another inode or on another machine restore, and different
// bytes under the same inode are refused. XXH3-64 detects change, not attack:
// the restore opens every file as the writer, who could change it anyway.
#pragma once

#include <fcntl.h>
#include <sys/types.h>

#include <cstdint>

#include "common/result.h"
#include "crfs/image_format.h"

namespace crfs {

// Files or mapped ranges larger than this get no fingerprint: the restore
// falls back to the stricter identity check (same inode, size, mtime).
inline constexpr uint64_t kMaxFingerprintBytes = 64ull << 20;

// XXH3-64 of exactly `len` bytes of `fd` at `offset` (pread; EINTR and short
// reads handled). A file that ends before offset + len is an EIO error.
Result<uint64_t> hash_file_range(int fd, uint64_t offset, uint64_t len);

// How many bytes of a file of `file_size` lie under a mapping of `map_len`
// bytes at file offset `offset` (0 when the mapping starts past the end).
constexpr uint64_t mapped_file_bytes(uint64_t file_size, uint64_t offset, uint64_t map_len) {
    return offset >= file_size ? 0 : (file_size - offset < map_len ? file_size - offset : map_len);
}

// The policy (docs/files.md), one rule for the checkpoint and the restore.
// A regular file the task opened read-only is checked by content; one open
// for writing or appending may have changed (the task, or whoever shares the
// file, writes to it) and is reopened by path at the recorded offset.
constexpr bool fd_content_checked(const image::FdRecord& r) {
    return r.kind == uint32_t(image::FdKind::kRegular) && r.same_as < 0 &&
           (r.open_flags & O_ACCMODE) == O_RDONLY;
}

// Mappings of a file are checked by content, except writable shared ones,
// whose file the task's own stores change (VmFlags "mw": mprotect may make a
// shared mapping of a file opened for writing writable).
constexpr bool vma_content_checked(const image::VmaRecord& r) {
    constexpr uint64_t kMayWrite = 1ull << 5;  // image::kVmFlagNames[5] == "mw"
    auto kind = image::VmaKind(r.kind);
    if (kind != image::VmaKind::kFilePrivate && kind != image::VmaKind::kFileShared) return false;
    if (r.flags & image::kVmaDeleted) return false;
    return !((r.flags & image::kVmaShared) &&
             ((r.flags & image::kVmaWrite) || (r.vm_flags & kMayWrite)));
}

}  // namespace crfs
