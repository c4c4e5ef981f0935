// Files (issue 9): the fds that hold a file of a file system, reopened by
// path or made from the image's content. Each kind is one file under state/
// holding its whole story behind one FileKind, like the kernel objects'
// (state/kobj.h):
//
//   state/file_regular.cc   a regular file with a name: path, flags, offset
//   state/file_deleted.cc   an unlinked regular file (O_TMPFILE too): content
//   state/file_chardev.cc   /dev/null and the other stateless devices
//   state/dir_deleted.cc    a removed directory: made again, empty, and removed
//   state/file_reopen.cc    another description of one of those: opened again from the first
//
//   detect   the reason this fd cannot be saved exactly (`reason`), or none
//   dump     the FdRecord kind and what goes with it (checkpoint/files.cc, frozen)
//   check    the kind's fields of a hostile image in range (state/fd_check.cc)
//   plan     the parent's preparation, as the writer (restorer/files.cc)
//   make     stage 1 in the new task: file_open below, the same for every kind
//
// file_kind.cc is the one dispatcher the fd table (state/fds.cc), the
// checkpointer and the restorer call. The file policy (what a file found at
// restore must match) is state/file_policy.h; docs/state.md lists the kinds.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/image_reader.h"
#include "common/unique_fd.h"
#include "crfs/image_format.h"
#include "state/kind.h"

namespace crfs {
struct TaskFd;       // checkpoint/files.h
struct FdAction;     // restorer/files.h
struct TreeRestore;  // state/tree_restore.h
}  // namespace crfs

namespace crfs::state {

// What `plan` may use and add to: the parent's side of the restore.
struct FilePlanIn {
    const DecodedImage& img;
    int image_fd;
    int min_fd;                     // copies are moved to numbers >= min_fd (clear of every target)
    bool chown;                     // a root writer: copies get the task's owner
    std::vector<UniqueFd>& copies;  // held by the parent until stage 1 is done
    // deltwice: (target, copy) of a later description made with its first (a
    // removed directory's at an offset, state/dir_deleted.cc); kind 40 dups it in.
    std::vector<std::pair<int, int>>& early;
    // share39: the tree being restored (or null) and this member's index:
    // kind 39 opens the later members' descriptions at an offset too.
    TreeRestore* tree = nullptr;
    uint32_t index = 0;
};

struct FileKind {
    image::FdKind kind;
    std::string_view name;
    bool (*match)(const FdView&);
    // Why this fd cannot be saved and restored exactly, or nullopt.
    std::optional<std::string> (*detect)(TaskView&, const FdView&);
    // Fills what the kind adds to t (the common FdRecord fields are set).
    Status (*dump)(pid_t, const FdView&, TaskFd& t);
    // The kind's own fields; the fd table's (number, flags, offset, path) are
    // checked by check_fds.
    Status (*check)(const FdEntry&, const DecodedImage&);
    // Sets a.path, a.type, a.rdev, a.seek (or a.prepared) for stage 1.
    Status (*plan)(const FdEntry&, FilePlanIn&, FdAction& a);
    // Open flags beyond the fd table's that the kind's check vouches for.
    uint32_t own_flags;
};

extern const FileKind kRegularFileKind;  // state/file_regular.cc
extern const FileKind kDeletedFileKind;  // state/file_deleted.cc
extern const FileKind kCharDevFileKind;  // state/file_chardev.cc
extern const FileKind kDeletedDirKind;   // state/dir_deleted.cc
extern const FileKind kReopenedKind;     // state/file_reopen.cc
extern const FileKind kTreeCwdDirKind;   // state/fs_tree.cc

// --- the dispatcher (file_kind.cc) -------------------------------------------

// The FdKind table's row (state/fds.cc).
bool file_match(const FdView& f);
std::optional<std::string> file_detect(TaskView& t, const FdView& f);
// Checkpoint: `claimed` false when no file kind claims f.
Status file_dump(pid_t pid, const FdView& f, TaskFd& t, bool& claimed);

// --- another description of a file with no name (file_reopen.cc, kind 40) -------

// A deleted file or directory (`kind`) is made once, for its lowest fd; a later
// open file description of it (kcmp) is opened again from that fd. The reason
// when f's cannot be (`what`: "deleted file X"), or none.
std::optional<std::string> later_description(TaskView& t, const FdView& f, const std::string& what,
                                             image::FdKind kind);
// The lowest fd of pid below f.fd on f's inode, or nullopt.
std::optional<int> first_fd_of_inode(pid_t pid, const FdView& f);
// Checkpoint: when f (the lowest fd of its description) is not the lowest fd of
// its object, t becomes its kind 40 record naming that fd; false otherwise.
bool reopened_dump(pid_t pid, const FdView& f, TaskFd& t);
// Stage 1: /proc/self/fd/FD opened with `flags` (O_CLOEXEC added), checked to be
// fd's inode: the new fd, or -errno (-ESTALE: another inode). Syscalls only.
int reopen_self(int fd, int flags);
// Stage 1: a kind 40 fd (a.reopen_of), through reopen_self; fails through child_fail.
int reopen_open(const FdAction& a, int status_fd);
// The text of CRFS_RA_STEP_REOPEN and _REOPEN_OTHER for fd `fd`.
std::string reopen_step_text(const DecodedImage& img, uint32_t step, int fd);

// Restore: whether an FdRecord kind is one of these.
bool is_file(uint32_t fd_kind);
// The flags the kind's check allows beyond the fd table's (0: none, or no file).
uint32_t file_own_flags(uint32_t fd_kind);
Status file_check(const FdEntry& f, const DecodedImage& img);
Status file_plan(const FdEntry& f, FilePlanIn& in, FdAction& a);
// Stage 1: the file a.path names, opened O_NONBLOCK first (a FIFO where a
// file was recorded fails instead of blocking), checked to be a.type (and
// a.rdev), then given the image's flags. Syscalls only; fails through child_fail.
int file_open(const FdAction& a, int status_fd);

// The fd table's check (state/fd_check.cc): every fd record in range, each
// kind's own check called (restorer/check_fields.cc's aggregator calls it).
Status check_fds(const DecodedImage& img);

// A path an image gives: absolute, without NUL.
bool bad_image_path(const std::string& p);

}  // namespace crfs::state
