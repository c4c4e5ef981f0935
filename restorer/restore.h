// The restore entry point (issue 4): an image in a seekable fd becomes a
// running task again. The FUSE daemon calls restore_image from a slot's
// flush; `crfs restore` calls it directly for debugging. docs/restore.md has
// the stages, the point of no return and the credential policy.
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <vector>

#include "common/image_prehash.h"
#include "common/image_reader.h"
#include "common/result.h"

namespace crfs {

class ImageSpool;

// stream: a restore that runs while the image's pages still arrive
// (fs/slot_stream.h). The image fd holds the bytes before the image's first
// pages record (prefix_len of them); the task is made from those (a tree's
// every process: in a version-16 tree image every process's records come
// before the first page section), its VMAs mapped, and then `ready` is
// called on the restoring thread with each task of the image, the daemon's
// copy of each one's userfaultfd (its private anonymous VMAs registered) and
// where each page run may go. `ready` returns once the whole image arrived
// and verified (ok: the tasks go on) or the restore is given up (its error:
// the tasks are killed and reaped, nothing is left).
struct StreamVma {
    uint64_t start, end;
    bool uffd;  // private anonymous, registered: UFFDIO_COPY
    // else a mapping written through /proc/<pid>/mem (private file mappings,
    // the stack, shared anonymous memory); none other holds page runs
};
struct StreamReady {
    uint32_t process = 0;  // its place in the image (a tree's process index; 0: a single one)
    pid_t pid = 0;
    int uffd = -1;  // the daemon's, closed by the restore after `ready` returns
    // The daemon's fd of /proc/<pid>/mem, opened while the task's pidfd said
    // it lived (so it is that task's memory even if the pid is another's by
    // then: a tree's process is no child of the daemon's): where the runs
    // outside the userfaultfd's VMAs are written. Closed as `uffd`.
    int mem = -1;
    std::vector<StreamVma> vmas;  // in address order, disjoint
};
struct RestoreStream {
    uint64_t prefix_len = 0;
    // A single process: one task; a tree: each live process, in image order.
    std::function<Status(const std::vector<StreamReady>&)> ready;
    // Set when the restore found, before making anything, that this image
    // cannot be streamed or its records before the pages are no image (the
    // slot then spools it, and the restore at close says why, as before).
    bool before_task = false;
    bool task_made = false;  // a task (a tree's root) was cloned: not before_task
    // streamtree: a tree's restore failed once its processes were made
    // (restore_tree): its error is the image's, not restored again from the
    // spool (whose second try would bind, create and fail all over again).
    bool final_failure = false;
    // Where the restore read the 7 bytes of code before a thread's rip in
    // restart_syscall from the file (state/regs.h), by process: the image is
    // refused at close if that process's page runs hold any of them whole
    // (the full restore reads them from the run then).
    std::vector<std::pair<uint32_t, uint64_t>> restart_code;
};

struct RestoreRequest {
    int image_fd = -1;   // memfd/file holding the whole image (seekable; read from offset 0)
    pid_t want_pid = 0;  // 0: any pid; >0: exactly this pid (EBUSY if taken)
    // Who wrote the image (from the FUSE request). writer_is_root means the
    // writer may restore any credentials: uid 0, or (the daemon decides) a
    // caller holding CAP_SETUID+CAP_SETGID+CAP_SYS_ADMIN. Anyone else may only
    // restore an image whose uids/gids are writer_uid/writer_gid, whose groups
    // are among writer_uid's groups (getgrouplist) and which holds no
    // capabilities; otherwise EPERM.
    uid_t writer_uid = 0;
    gid_t writer_gid = 0;
    bool writer_is_root = false;
    // The writer's thread (the FUSE request's tid): the restored task takes
    // its cgroup, login uid, and rlimits and nice as the ceiling the image's
    // values are judged against. 0: this process.
    pid_t writer_pid = 0;
    // Whether the writer may choose the pid (the kernel reserves clone3
    // set_tid to CAP_CHECKPOINT_RESTORE): want_pid > 0 without it is EPERM.
    bool may_choose_pid = false;
    // The slot's `tcp` file says "close": established connections come back
    // aborted instead of repaired (docs/network.md).
    bool tcp_close = false;
    // The checksum of the image's bytes before its trailer, computed as they
    // were written (a slot hashes each write): the decode then reads only
    // the records' fixed parts, not the page data. Ignored (a full decode)
    // unless the image's trailer starts exactly where the hash ends.
    std::optional<StreamHash> image_hash;
    // A slot's spool holding image_fd's page data page-aligned apart
    // (common/image_spool.h): page runs are read from there. Null: from image_fd.
    ImageSpool* spool = nullptr;
    // trees (state/tree_restore.h): set by restore_tree for each process of a
    // tree's image; `tree_index` is the process's place in the image.
    struct TreeRestore* tree = nullptr;
    uint32_t tree_index = 0;
    // tty (restorer/tty.h): the writer's terminal, taken for an image of a
    // shell job (every process of its tree has it), and the foreground group.
    int terminal_fd = -1;
    pid_t terminal_fg = 0;
    RestoreStream* stream = nullptr;  // stream: the image's pages still to come
};

// Validates the whole image first (nothing is created on failure), then
// creates and rebuilds the task. Returns the restored pid. Errors: EINVAL /
// EBADMSG / EIO (bad image, with a precise message), EPERM (credentials),
// EBUSY (pid taken), ENOENT / ESTALE (a referenced file missing / changed,
// named), ENOTSUP (e.g. the CPU lacks the image's xsave features).
//
// Safe to call from any thread of a multi-threaded daemon, concurrently. The
// restored task is a child of the calling process, held until
// release_restored_child(), then reaped by reap_restored_children().
Result<pid_t> restore_image(const RestoreRequest& req);

// cwdoffset (state/fs_tree.cc): the records of process `process` of the tree
// being restored, decoded as its own restore_image will decode them (from
// process 0's decode, the checksum already verified): for an earlier member's
// plan that must see a later member's records before that member is planned.
Result<DecodedImage> decode_tree_member(const TreeRestore& tree, uint32_t process);

// Reaping contract: every task restore_image returns is a child of this
// process and is remembered here, held: never reaped until its caller
// releases it (once whoever needs its end, e.g. crfsd's slot, has read it;
// fs/reaper.h), so a task that ends early stays a zombie under its pid
// meanwhile. Releasing one that was reaped or never restored does nothing.
void release_restored_child(pid_t pid);

// Call this whenever SIGCHLD arrives (and, to be safe, now and then): it
// waitpid(WNOHANG)s every remembered task that was released and returns the
// pids that exited. It never waits for a child it did not create, so it
// coexists with other child handling. restore_image reaps the tasks of
// failed restores itself.
std::vector<pid_t> reap_restored_children();

// Pids restored and not yet reaped (for tests and status).
std::vector<pid_t> restored_children();

}  // namespace crfs
