// The task's fs context (state/fs.cc): a removed cwd, made again as fd kind
// 39's removed directory is (state/dir_deleted.h).
#pragma once

#include <sys/types.h>

#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "common/image_reader.h"
#include "common/result.h"
#include "state/kind.h"

namespace crfs {
struct FdPlan;
struct TaskFd;
struct TreeRestore;
}  // namespace crfs

namespace crfs::state {

// Checkpoint, the task frozen: when `cwd` (readlink of /proc/PID/cwd) is a
// removed directory, strips its " (deleted)" and returns its record.
Result<std::optional<image::DeletedCwdRecord>> dump_deleted_cwd(pid_t pid, std::string& cwd);

// Hostile images: the record's path, mode, mtime and fd.
Status check_deleted_cwd(const DecodedImage& img);

// Restore, as the writer, after plan_fds: the descriptor stage 1 fchdirs to
// (the kind 39 fd's own when the record names one, else a removed directory
// made here and held in fds.copies), or -1 when the cwd is no removed one.
// cwdoffset: `later` (flags, offset) are opened and seeked with a directory
// made here, before its rmdir; their fds (in fds.copies) go to `early`, in order.
Result<int> plan_deleted_cwd(const DecodedImage& img, FdPlan& fds,
                             std::vector<std::pair<int, uint64_t>> later = {},
                             std::vector<int>* early = nullptr);

// cwdtree (state/fs_tree.cc): a removed directory several members of a tree
// hold (as cwd or fd) is made once, by the first holder's restore.

// A tree, members in image order: a later member's description of a removed
// directory an earlier member holds as its cwd only, with flags a reopen
// cannot give: a reason naming both (one at an offset is restored: cwdoffset).
void detect_deleted_cwd_shared(std::span<TaskView* const> members, Reasons& out);

// One member's capture: its deleted-cwd record (if any), its deleted-cwd-from
// record (set here) and its fds.
struct MemberCwd {
    std::optional<image::DeletedCwdRecord>* rec;
    std::optional<image::DeletedCwdFromRecord>* from;
    std::vector<TaskFd>* fds;
};

// Checkpoint, the tree frozen, after share_between_members: a later member's
// removed cwd gets a deleted-cwd-from record naming the first holder, and its
// kind 39 fd of a directory that is an earlier member's cwd only becomes kind 43.
Status share_removed_cwds(std::span<const pid_t> pids, std::span<const MemberCwd> members);

// Restore, as the writer, after plan_fds: plan_deleted_cwd above, and in a
// tree (`tree` non-null, this member `index`) a cwd of an earlier member's
// (the daemon's fd of its directory, dup'd above this member's fds) and the
// kind 43 descriptions, opened from it (at an offset: opened by the first
// holder's plan with its directory, before the rmdir, and taken here).
Result<int> plan_deleted_cwd(const DecodedImage& img, FdPlan& fds, TreeRestore* tree,
                             uint32_t index);

// cwdoffset, share39: the later members' descriptions at an offset of the
// removed directory member `index` (records `img`) makes, its cwd (`fd` -1)
// or its kind 39 fd `fd`: kind 43 records naming its cwd and the kind 40
// records naming those (fdshare), and share-fd end 4
// records given from its fd `fd` or, for its cwd, from a later member's kind
// 43 fd of it; each checked as its taker's restore checks it. Their (flags,
// offset) are appended to `later` (make_removed_dir opens them before the
// rmdir); returns their (member, fd), in the same order. The later members'
// records are decoded once per restore (kept in their members: `records`).
Result<std::vector<std::pair<uint32_t, int>>> later_at_offset(
    TreeRestore& tree, uint32_t index, const DecodedImage& img, int fd,
    std::vector<std::pair<int, uint64_t>>& later);
// Keeps the daemon's fds of those (in member `index`'s FdPlan copies) in its member.
void keep_early(TreeRestore& tree, uint32_t index, std::span<const std::pair<uint32_t, int>> keys,
                std::span<const int> daemon);
// share39: member `me`'s share-fd end 4 fd `f` at an offset, given from fd
// `g` of member `giver` (a removed directory: kind 39, or kind 43 of an
// earlier member's cwd): the description that directory's maker opened for it
// before its rmdir, checked (that inode, f's flags and offset; else ESTALE;
// none: a bad image), dup'd above `fds`' targets (in its copies): that fd.
Result<int> early_shared_desc(const TreeRestore& tree, uint32_t me, const FdEntry& f,
                              uint32_t giver, const FdEntry& g, FdPlan& fds);

}  // namespace crfs::state
