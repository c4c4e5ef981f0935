// A cache of file content fingerprints (common/file_hash.h), so that a
// checkpoint does not read and hash libc, the interpreter and every other
// mapped library again each time (issue 13: a third of a small task's dump).
//
// Key: the file's identity as fstat gives it right before the hash (device,
// inode, size, mtime, ctime) and the hashed range. That is the identity the
// restore itself takes as "not written since" (state/file_policy_check.cc
// `unchanged`: same device, inode, size and ctime, then no read): a hit is
// given exactly where the restore would skip the hash, so the cache is as
// strict as recomputing under the project's own rule. A write changes ctime
// (multigrain timestamps: a ctime that was looked at moves on the next
// change even within a clock tick), so a file changed in place is hashed
// again. An entry is kept only when fstat after the hash still gives the
// same identity (not changed while it was read).
//
// Where it lives: the daemon holds the cache; each checkpoint worker
// (crfs-ckpt, a fresh process) gets a sealed memfd of it (kWorkerPrintsFd)
// and sends the hashes it computed back through a pipe (kWorkerNewPrintsFd),
// which the daemon merges. A worker only uses an entry after it opened the
// file itself, as the caller, and fstat gave that identity: the cache never
// opens or reads a file for anyone. In-process users (crfs checkpoint, the
// benches) use the same cache within their process.
#pragma once

#include <sys/stat.h>

#include <cstddef>
#include <cstdint>

#include "common/result.h"
#include "common/unique_fd.h"

namespace crfs {

struct HashCacheEntry {
    uint64_t dev, ino, size;
    int64_t mtime_sec, mtime_nsec, ctime_sec, ctime_nsec;
    uint64_t off, len;
    uint64_t hash;
};
static_assert(sizeof(HashCacheEntry) == 80);

// At most this many entries; a full cache starts over.
inline constexpr size_t kHashCacheMax = 4096;

// XXH3 of `len` bytes of `fd` at `off` (hash_file_range), from the cache when
// `st` (fstat of `fd`, taken by the caller right before) matches an entry.
Result<uint64_t> hash_file_cached(int fd, const struct stat& st, uint64_t off, uint64_t len);

// Hits and misses of this process (tests, CRFS_CHECKPOINT_TRACE).
struct HashCacheStats {
    uint64_t hits = 0, misses = 0;
};
HashCacheStats hash_cache_stats();

// Daemon side: a sealed, read-only memfd holding the cache now (for a worker).
Result<UniqueFd> hash_cache_export();
// Daemon side: merges the entries a worker wrote into `fd` (read to EOF or
// EAGAIN; a partial trailing entry, from a worker killed mid-write, is dropped).
void hash_cache_merge(int fd);
// Worker side: takes the entries of the memfd `fd` (an export) as its cache.
void hash_cache_import(int fd);
// Worker side: writes the entries this process computed into `fd` (a
// non-blocking pipe: what does not fit is dropped, never waited for).
void hash_cache_send_new(int fd);
// Forgets every entry (tests).
void hash_cache_clear();

}  // namespace crfs
