// EINTR- and short-I/O-safe helpers, written once (STYLE.md 5).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "common/result.h"
#include "common/unique_fd.h"

namespace crfs {

// open(2) returning a UniqueFd or "open PATH: error".
Result<UniqueFd> open_fd(const std::string& path, int flags, mode_t mode = 0);

// Reads until `len` bytes or end of file; returns the byte count (short only at EOF).
Result<size_t> read_full(int fd, void* buf, size_t len);

// Exactly `len` bytes at `offset` (a short file is EIO).
Status pread_exact(int fd, void* buf, size_t len, uint64_t offset);

// Writes all `len` bytes or fails.
Status write_full(int fd, const void* buf, size_t len);

// Whole file into a string; files in /proc report size 0, so this reads to EOF.
// `max` bounds the size: a larger file is an EFBIG error.
Result<std::string> read_file(const std::string& path, size_t max = 16 << 20);

// Writes `data` to `path` atomically: a temporary file in the same directory,
// fsync, then rename over `path`.
Status write_file_atomic(const std::string& path, std::string_view data, mode_t mode);

// perf: grows this process's fd table to hold `fds` fds (fewer if its
// RLIMIT_NOFILE is lower), best effort. Call it while the process has one
// thread: the kernel grows a table that threads share only after an RCU grace
// period (fs/file.c expand_fdtable: synchronize_rcu), each time it doubles;
// on this VM each such wait was 10-14 ms with every CPU idle
// (docs/performance.md, session 36). A table never shrinks.
// CRFS_FD_TABLE_COLD=1 in the environment: nothing is done (the old path).
void presize_fd_table(int fds);

}  // namespace crfs
