// Restoring a process tree (docs/trees.md): an image with a process record
// before each process's records comes back as the same tree, every process
// with its original pid (clone3 set_tid, as threads: only a writer who may
// choose pids), every parent the parent it was.
//
// restore_image runs once per process, nested: the run for process i
// prepares it exactly as a single process (validation, plans, blob area,
// arguments) and, where it would clone, calls tree_spawn, which runs the
// restore of process i+1 inside it; the run for the last process clones the
// root. So every process's preparation is alive in the daemon when the root
// is cloned, and each process is a copy of it: in stage 1, right after its
// session and group, a process clones its own children with their pids
// (tree_spawn_children), each then goes on with its own plan. Back out of the
// nesting each run waits for its process's 'K' as for a single process.
//
//   restore_tree: checks, go pipe ---> restore_image(0) ---> ... restore_image(n-1)
//                                                               clone3(root)
//        root: session, clone3(children) ... each child: session, clone3(its children) ...
//   'K' of n-1 ... 'K' of 0  <----------------------------------------------
//   write one byte per process on the go pipe: every blob rt_sigreturns
//
// Nothing of any process runs before every process has said 'K': each blob
// waits on the go pipe after it (restorer_args.h, go_fd). A failure anywhere
// kills every process of the tree that is ours (its parent the one we made).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "common/image_reader.h"
#include "common/result.h"
#include "common/thread_stacks.h"
#include "common/unique_fd.h"
#include "crfs/restorer_args.h"
#include "restorer/files.h"
#include "restorer/restore.h"
#include "restorer/writer.h"
#include "state/names_made.h"
#include "state/restart.h"
#include "state/sysv_ids.h"
#include "state/tree_leaders.h"
#include "state/tree_shmem_restore.h"
#include "state/unix_tree.h"

namespace crfs {

// The most processes restored in one tree (each nests a restore_image call
// on the daemon thread's stack).
inline constexpr uint32_t kMaxTreeRestore = 128;

struct TreeRestore {
    struct Member {
        pid_t pid = 0;
        int parent = -1;  // index; -1: the root
        pid_t pgid = 0, sid = 0;
        bool stopped = false;
        bool zombie = false;  // life: cloned, takes its session and group, ends (state/zombie.h)
        image::ZombieRecord zombie_rec{};
        const void* plan = nullptr;  // restore.cc's child plan, once prepared
        int go = -1;                 // its copy of the go pipe's read end (in go_copies)
        // share (state/tree_share_restore.h): set by its own restore_image run.
        const DecodedImage* img = nullptr;
        FdPlan* fds = nullptr;
        int min_fd = -1;
        std::vector<ShareSend> sends;  // what it gives later processes
        std::vector<int> share_keep;   // sorted: the channels it sends on, kept in stage 1
        // unix: clients of earlier servers it connects itself (state/unix_tree.h)
        std::vector<state::UnixConnectPlan> connects;
        mutable std::vector<pollfd> connect_polls;  // stage 1's poll of their channels
        // share (state/tree_share_task.h): an fd table / fs shared with an earlier member
        int files_with = -1, fs_with = -1;  // the first member of its group
        int maker = -1;                     // who clones it once its fds are in place
        uint64_t clone_flags = 0;           // CLONE_FILES, CLONE_FS, CLONE_PARENT: a taker
        int max_fd = 2;                     // the highest fd its table holds then
        int removed_cwd = -1;  // cwdtree: the daemon's fd of its removed cwd (state/fs_tree.cc)
        int gate_r = -1, gate_w = -1;  // a table taker waits for its maker's fds on it
        // cwdoffset, share39: later members' descriptions at an offset of a
        // removed directory it made (its cwd, its kind 39 fds), opened and
        // seeked with it before its rmdir (state/fs_tree.cc).
        struct EarlyDesc {
            uint32_t member = 0;
            int fd = -1;      // the later member's fd number
            int daemon = -1;  // the daemon's fd of it (in this member's FdPlan copies)
        };
        std::vector<EarlyDesc> early_descs;
        // fdshare: its records (not its pages), decoded once for the earlier
        // members' plans that look at them (state/fs_tree.cc later_at_offset).
        std::shared_ptr<const DecodedImage> records;
        // pidfd2 (state/pidfd.h): pidfds of it its cloner opens for holders, right
        // after its clone: the channel (the cloner's end) and the pidfd_open flags.
        struct PidfdGive {
            int channel = -1;
            int flags = 0;
        };
        std::vector<PidfdGive> pidfd_gives;
        // thpidfd (state/pidfd.h): its blob's arguments, in its area (threads_made_fd).
        crfs_restorer_args* args = nullptr;
        // thpidfd2: its pidfds of threads later members hold too: (its fd, the
        // daemon's receiving end of the channel its blob sends them on).
        std::vector<std::pair<int, int>> thread_pidfd_recv;
        // treeclone: its blob area, mapped in the daemon (so in every clone
        // of it) from its restore_image run on; only its cloners need it.
        uint64_t area = 0, area_len = 0;
        // fid: inside a syscall the kernel restarts: handed back at the go
        // (state/restart.h), attached before it.
        std::vector<RestartTracer> restart;  // its main thread's first, if any
        // streamtree: a streamed restore (RestoreRequest::stream), set by its
        // restore_image run before any clone: reads its blob's ready report
        // and takes its userfaultfd and memory (into the arguments); the
        // daemon's end of its go socket. Used by tree_stream_pages, from the last run.
        std::function<Result<StreamReady>(UniqueFd& uffd, UniqueFd& mem)> stream_take;
        int stream_go = -1;
    };
    std::vector<Member> members;  // image order: parents first
    // treeperf: process 0's decode, which walked and checked the whole image:
    // each process's restore_image decodes only its own records (DecodeOptions::tree).
    const DecodedImage* root_img = nullptr;
    RestoreRequest root_req;
    // treeperf: the writer's side of the restore (restorer/writer.h), read by
    // the first process's plan_writer, the same for all.
    std::optional<WriterContext> writer;
    std::optional<UniqueFd> writer_netns;  // treeperf: as `writer` (restorer/netns.h)
    int go_r = -1, go_w = -1;
    std::vector<UniqueFd> go_copies;          // each process's, above its own fds
    int go_errno = 0;                         // a copy failed
    void (*run)(const void* plan) = nullptr;  // restore.cc's stage 1 of a process
    bool failure_named = false;               // an error already names its process
    bool cloned = false;                      // the root was cloned: members may be running
    bool clone_all = false;  // treeclone: CRFS_TREE_CLONE_ALL, each clone takes every area
    // clonecost: the daemon's other threads' stacks (member: and their FUSE
    // request buffers) when the root was cloned (common/thread_stacks.h); the
    // root marks them MADV_DONTFORK before it clones anyone.
    // CRFS_TREE_CLONE_STACKS=1 (benches: the old path): not marked.
    std::vector<StackRange> daemon_stacks;
    // share: the daemon's copies of the channels' sending ends, closed once the
    // root is cloned (a receiver whose giver died then reads end of file).
    std::vector<UniqueFd> share_fds;
    TreeGroups groups;               // groups led by members or placeholders
    std::vector<TreeShmObject> shm;  // shm: shared anonymous memory (state/tree_shmem_restore.h)
    std::vector<state::MemfdHeld> late_seals;  // names: sealed at the go (tree_seal_memfds)
    state::SysvTree sysv;  // sysvtree: System V objects made once (state/sysv_ids.h)
    // failclean: the socket files its processes bound and the queues they
    // created, removed unless the tree runs; declared after `members` etc.:
    // removed first, once kill_tree is done.
    state::NamesMade names_made;
    // treeperf: a streamed tree's later processes' records, decoded ahead in
    // image order on a thread of its own while the processes before them are
    // prepared (tree_decoded). Declared last: its thread ends first.
    std::unique_ptr<struct TreeDecodeAhead> decode_ahead;
    TreeRestore();
    ~TreeRestore();
    TreeRestore(const TreeRestore&) = delete;
    TreeRestore& operator=(const TreeRestore&) = delete;
};

// The whole tree of `root` (process 0 of the image, decoded).
Result<pid_t> restore_tree(const RestoreRequest& req, const DecodedImage& root);

// treeperf: process req.tree_index's records (> 0, of a streamed tree), as
// restore_image decodes them (decode_tree_member), from the decode made
// ahead when there is one. Waits for it.
Result<DecodedImage> tree_decoded(const RestoreRequest& req);

// Process req.tree_index's records agree with its process record.
Status check_tree_member(const DecodedImage& img, const RestoreRequest& req);

// The process's copy of the go pipe's read end, above every fd it restores
// (>= min_fd): it keeps it through stage 1 and the blob. On failure -1, and
// tree_spawn fails before anything is created.
int tree_go_fd(const RestoreRequest& req, int min_fd);

// Sets the blob's stop and go gate for the process; returns false (the stop
// is waited for by restore_tree, after the go).
bool tree_gate(const RestoreRequest& req, crfs_restorer_args& a);

// treeclone: process req.tree_index's blob area [start, start + len), mapped
// in the daemon; tree_spawn_children lets each clone take only the areas of
// the processes it makes (each clone copies its maker's whole memory, and
// each process's blob unmaps what it was given).
void tree_note_area(const RestoreRequest& req, uint64_t start, uint64_t len);

// Where restore_image would clone: restores the next process, or clones the
// root after the last. Returns the pid of process req.tree_index.
Result<pid_t> tree_spawn(const RestoreRequest& req, const void* plan,
                         void (*run)(const void* plan));

// streamtree: whether process req.tree_index is the last one prepared (no
// live process after it): its restore_image run cloned the root.
bool tree_last_prepared(const RestoreRequest& req);

// streamtree (docs/trees.md "Streaming a tree's restore"): every process of
// the tree was cloned and maps its VMAs; each one's blob waits for its
// pages. Takes each live process's ready (Member::stream_take), in image
// order, and hands them all to the slot (rs.ready), which returns once the
// whole image arrived and verified; then each gets its go and goes on to
// the tree's 'K' and go pipe. On an error no process gets its go: each
// one's go socket is shut, so every blob waiting there ends, and the runs
// of the others, waiting for their 'K', see their process end.
Status tree_stream_pages(TreeRestore& tree, RestoreStream& rs);

// streamtree: whether the process under member `index`'s pid holds its copy
// of the go pipe (it does until its blob is past the gate): the one this
// restore made, not another that took the pid once it died.
bool tree_member_is_ours(const TreeRestore& tree, uint32_t index);

// stream: the byte that lets a blob waiting for its pages go on.
Status send_stream_go(int go_fd);

// First cause (docs/trees.md "When a member fails"): tree_spawn failed for a
// later member after the root was cloned, and process req.tree_index reported
// a failure too (`own`, in words `own_error`). Its own failure comes first,
// parents before children, named as tree_spawn names members, unless it
// failed waiting on another member (a group, a handover, a unix connection),
// which may be the later one's failure seen from here. Its 'K', or its death
// without a report (killed by another's failure), leaves `later` (restore.cc).
Error tree_first_failure(const RestoreRequest& req, Error later, const crfs_ra_report& own,
                         Error own_error);

// Stage 1 of process `index` (no allocation: it is a clone of the daemon):
// clones each of its children with its pid; a failure is reported on
// status_fd (CRFS_RA_STEP_CHILD) and ends the process.
void tree_spawn_children(const TreeRestore& tree, uint32_t index, int status_fd);

// Stage 1: clones member `j` with its pid and `flags` (clone3); its child runs
// its stage 1. A failure is reported on status_fd and ends the caller.
void tree_clone_member(const TreeRestore& tree, size_t j, uint64_t flags, int status_fd);

}  // namespace crfs
