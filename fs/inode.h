// Inode numbers are computed, not pointers (STYLE.md 2).
//
//   63            30 29          8 7      0
//  +----------------+-------------+--------+
//  | start time     | pid (22 b)  | entry  |
//  | (low 34 bits)  |             |        |
//  +----------------+-------------+--------+
//
// A task is named by (pid, start time), so an inode of a task that exited
// never resolves to a new task that reuses its pid: the start time no longer
// matches and the operation fails with ENOENT. The FUSE generation is the
// full start time. pid 0 holds the fixed nodes of the root.
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace crfs::fs {

inline constexpr uint64_t kRootIno = 1;  // FUSE_ROOT_ID
inline constexpr uint64_t kSelfIno = 2;

inline constexpr unsigned kEntryBits = 8;
inline constexpr unsigned kPidBits = 22;  // PID_MAX_LIMIT is 2^22
inline constexpr unsigned kStartBits = 64 - kPidBits - kEntryBits;
inline constexpr uint64_t kDirEntry = 0;  // entry 0 of a pid is its directory

struct InodeParts {
    pid_t pid;
    uint64_t start_low;  // start time modulo 2^kStartBits
    unsigned entry;      // 0: the directory; n: row n-1 of the pid table
};

constexpr uint64_t start_low(uint64_t starttime) {
    return starttime & ((uint64_t{1} << kStartBits) - 1);
}

constexpr uint64_t make_ino(pid_t pid, uint64_t starttime, unsigned entry) {
    return (start_low(starttime) << (kPidBits + kEntryBits)) |
           (static_cast<uint64_t>(pid) << kEntryBits) | entry;
}

constexpr InodeParts split_ino(uint64_t ino) {
    return InodeParts{
        static_cast<pid_t>((ino >> kEntryBits) & ((uint64_t{1} << kPidBits) - 1)),
        ino >> (kPidBits + kEntryBits),
        static_cast<unsigned>(ino & ((uint64_t{1} << kEntryBits) - 1)),
    };
}

static_assert(split_ino(make_ino(4194303, 0x3ffffffffULL, 255)).pid == 4194303);
static_assert(split_ino(make_ino(1, 5, 0)).start_low == 5);
static_assert(split_ino(kRootIno).pid == 0 && split_ino(kSelfIno).pid == 0);

}  // namespace crfs::fs
