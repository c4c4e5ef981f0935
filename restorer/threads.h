// Threads at restore (docs/trees.md): the blob creates every thread but the
// main one with clone3 and its original tid, each with a stack of its own in
// the blob's area and a signal frame of its own built here; each sets its
// fs/gs base, robust list, rseq, clear_child_tid, comm and credentials and
// waits on the sync page until the main thread passed the point of no return.
#pragma once

#include <cstdint>
#include <functional>

#include "common/image_reader.h"
#include "common/result.h"
#include "crfs/restorer_args.h"
#include "restorer/restore.h"

namespace crfs {

// glibc keeps every thread's tid in its memory (struct pthread: pthread_kill,
// mutex owners, robust futex words), so threads come back only with their
// original tids, which only a writer who may choose pids gets: anything else
// is EPERM with the reason.
Status check_thread_ids(const DecodedImage& img, const RestoreRequest& req);

// Bytes fill_threads takes from the blob's area (an upper bound).
uint64_t threads_area_bytes(const DecodedImage& img);

// Allocates with `take(bytes, align)` (addresses valid in the new task) and
// fills a.threads, a.nr_threads and the main thread's registrations.
using AreaAlloc = std::function<void*(size_t bytes, size_t align)>;
Status fill_threads(const DecodedImage& img, const AreaAlloc& take, crfs_restorer_args& a);

}  // namespace crfs
