// Shared anonymous memory between the processes of a restored tree
// (state/tree_shmem.h; docs/trees.md, "Shared memory between members").
//
// The object is made ONCE, while its owner (the first process of the image
// that maps it) is planned: the daemon maps one page MAP_SHARED|MAP_ANONYMOUS,
// opens it through /proc/self/map_files (an fd of that shmem object: the
// kernel's own "/dev/zero (deleted)" file), unmaps it, sizes it to every page
// the owner maps, and writes the owner's pages of it from the image. Every
// process that maps it (the owner and each taker) then holds a dup of that fd
// above its own fds, and its blob maps it MAP_SHARED at each of its addresses
// with its own protection and offset, then closes it, as for a memfd
// (state/memory_restore.cc: "/proc/self/fd/N"). A mapping of the reopened file is
// the same object and shows in /proc/<pid>/maps exactly as a fresh
// MAP_SHARED|MAP_ANONYMOUS mapping does ("/dev/zero (deleted)", one inode for
// every process), unlike a memfd ("/memfd:NAME (deleted)").
//
// Why the daemon: every process of the tree is a copy of it (state/tree_restore.h),
// so an fd it holds when the root is cloned is inherited by every process,
// siblings included, with no handover; and opening map_files needs
// CAP_CHECKPOINT_RESTORE, which a non-root writer's processes do not have.
// It opens nothing the image names: the object is anonymous memory, made
// empty and filled only with the image's own bytes.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "common/image_reader.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "restorer/files.h"

namespace crfs {

struct RestoreRequest;

// One object made for the tree.
struct TreeShmObject {
    uint32_t owner = 0;                                // process index
    uint64_t ino = 0;                                  // the image's name of it (VmaRecord.ino)
    std::vector<std::pair<uint64_t, uint64_t>> pages;  // object page ranges the owner maps
    UniqueFd fd;
};

// After plan_fds of process req.tree_index: makes (owner) or finds (taker)
// the object of every kAnonSharedOwner/kAnonSharedTaken VMA of `img`, checks
// it against its owner's records (an earlier process owns it, every page a
// taker maps the owner maps, no pages stored for a taker), and holds a dup of
// its fd in fds.memfds (no seals: the blob maps and closes it). The owner's
// pages of it are written into the object here and leave img.pages. An image
// that is not a tree must hold no such VMA.
Status tree_shmem_plan(const RestoreRequest& req, DecodedImage& img, int image_fd, FdPlan& fds,
                       int min_fd);

// A memfd of a tree sealed against writes (F_SEAL_WRITE, F_SEAL_FUTURE_WRITE)
// is sealed by the daemon, not by its first holder's blob, whose seals would
// come before a later member maps it: tree_shmem_plan moves its seals from
// the blob's list (fds.memfds) into tree.late_seals with a dup of the memfd,
// and this adds them once every process has said 'K' (each mapped all it
// maps) and before the go (no code of any process has run).
struct TreeRestore;
Status tree_seal_memfds(TreeRestore& tree);

}  // namespace crfs
