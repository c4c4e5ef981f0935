// Processes of a tree that share their fd table (clone CLONE_FILES) or their
// cwd, root and umask (CLONE_FS) without being threads (docs/trees.md,
// "Clones sharing their fd table or fs").
//
// There is no syscall that joins an existing fd table or fs struct: a process
// shares one only with the process that cloned it. So the restore makes each
// sharer (a "taker") by a clone from a process that already shares what it
// must share (its "maker"): its parent, or an earlier sibling in the same
// groups with CLONE_PARENT (the siblings of a parent that since unshared).
// Groups are told by kcmp (KCMP_FILES, KCMP_FS) between the members (sorted by
// kcmp's order: state/kcmp_cache.h), not by parentage; a group's first member
// in image order holds it.
//
//   checkpoint: classify_task_sharing -> one share-task record per taker
//               (files_pid / fs_pid: the group's first); a files taker's fds
//               are not written (they are its group's first's)
//   restore:    plan_share_tasks (restore_tree): pids -> members, maker, flags
//               tree_task_share_check (each member's run): its own records agree;
//               a table taker's stage-1 fds and gate pipe go above its group's
//               fds and into the first's keep list
//               stage 1 of the maker, where it clones its children (still root):
//               clone3(its flags: CLONE_FILES|CLONE_FS[|CLONE_PARENT], set_tid)
//               a table taker waits on its gate first thing; its maker opens
//               the gate once its fds are in place (tree_open_gates). The taker
//               then neither closes nor opens fds: they are in place.
#pragma once

#include <sys/types.h>

#include <span>
#include <vector>

#include "common/image_reader.h"
#include "common/result.h"
#include "crfs/image_format.h"
#include "state/kind.h"

namespace crfs {
struct RestoreRequest;
struct TreeRestore;
}  // namespace crfs

namespace crfs::state {

// Checkpoint and `reason`: members in image order (live processes, parents
// first) with their parents' pids. recs[i] says what member i shares with an
// earlier one (zero: nothing); what cannot be made again is a reason naming
// both pids. A kcmp that fails but with ESRCH is a reason too. `kcmp`: the
// answers of this `reason` read or checkpoint (state/kcmp_cache.h).
void classify_task_sharing(std::span<const pid_t> pids, std::span<const pid_t> ppids,
                           std::vector<image::ShareTaskRecord>& recs, Reasons& why,
                           KcmpCache& kcmp);

// A files taker holding file locks (their owner is the shared table: not
// restored yet): the reason, the same words for `reason` and the checkpoint.
std::string share_lock_reason(pid_t pid, pid_t files_pid);

}  // namespace crfs::state

namespace crfs {

// restore_tree, after the members are planned: every share-task record names
// an earlier, live member that is the first of its group; each taker gets a
// maker (its parent, or an earlier sibling: CLONE_PARENT) in every group it is in.
Status plan_share_tasks(const DecodedImage& root, TreeRestore& tree);

// Process req.tree_index's run, before its stage-1 fds are placed: a files
// taker has no fd or lock records; an fs taker has its group's cwd and umask;
// both have its credentials. Raises `max_fd` above every fd a table it is
// made from holds by then (its stage-1 fds must survive those).
Status tree_task_share_check(const RestoreRequest& req, const DecodedImage& img, int& max_fd);

// Its stage-1 fds (sorted) are kept by the processes whose tables it is made from.
void tree_task_share_keep(const RestoreRequest& req, std::span<const int> keep);

// Stage 1: whether process `index` shares its maker's fd table (it closes and
// opens no fd). A table taker is cloned with its maker's children (while the
// maker is still root) and waits on its gate first thing; its maker opens the
// gates of its takers once its fds are in place.
bool tree_files_taker(const TreeRestore* tree, uint32_t index);
void tree_open_gates(const TreeRestore* tree, uint32_t index, int status_fd);
void tree_wait_gate(const TreeRestore* tree, uint32_t index, int status_fd);

}  // namespace crfs
