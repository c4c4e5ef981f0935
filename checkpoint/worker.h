// Acting as the caller: every checkpoint, and every right that the kernel
// must decide for a caller without CAP_SYS_PTRACE, runs in a short-lived
// worker process (crfs-ckpt, installed next to crfsd) that first takes on
// exactly the caller's credentials (checkpoint/creds.h). The kernel's
// ptrace_may_access is then the check: for the attach (PTRACE_SEIZE), for
// every /proc file the checkpoint reads, and for the access probe.
//
// The worker is also what makes a killed daemon harmless (issue 8 item 17):
// it is a separate process in a process group of its own, not killed with the
// daemon. If crfsd dies mid-checkpoint, the worker still finishes or aborts
// its injection the normal way (registers, signal mask, scratch bytes put
// back, detached), then finds its reply pipe closed and exits.
//
// Protocol: argv = crfs-ckpt MODE PID STARTTIME DAEMON_TGID CREDS (reasons
// mode: the environment's kWorkerBusyEnv, see WorkerRequest::busy); fd 4 a
// pipe that receives the reply, "<errno>\n<text>" (errno 0: success; text:
// the reasons, the image's size in bytes (0: known only at its end), or the
// error), then is closed; fd 3 (image mode) a pipe the worker then streams
// the image into, front to back, once the task runs again
// (checkpoint/piped_image.h serves it); fd 5 (image mode) a pipe that gets
// "0\n" after the whole image, or "<errno>\n<text>" if it could not be
// finished, before fd 3 is closed. Nothing of the image is copied into the
// daemon but a window of a few MiB per handle; the worker holds what the
// stream still needs (a live snapshot: the task's userfaultfd and the pages
// the task wrote before they were sent) until the stream ends or the reader
// closes.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "checkpoint/creds.h"
#include "checkpoint/track_channel.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace crfs {

enum class WorkerMode {
    kAccess,   // may the caller ptrace the task (PTRACE_MODE_ATTACH_FSCREDS)
    kReasons,  // access, then the detected reasons, one per line
    kImage,    // access, reasons (EBUSY if any), then the checkpoint
    // incr: kImage for a chain (docs/incremental.md): argv gets a 7th
    // argument, the base image's id (0: none), and fd 6 a socket
    // (checkpoint/track_channel.h) that brings the base's tracking (a
    // userfaultfd per process of the tree) and takes back the new one with
    // the new image's id.
    kDelta,
};

struct WorkerRequest {
    WorkerMode mode = WorkerMode::kAccess;
    pid_t pid = 0;
    uint64_t starttime = 0;
    pid_t daemon_tgid = 0;  // a task traced by one of our workers has no reason for it
    Creds creds;
    // kDelta: the base's tracking (borrowed; checkpoint/track_channel.h), or
    // null; its id is the base image's.
    const TrackMessage* track = nullptr;
    // kReasons: the pids whose checkpoint in progress holds the task or a
    // member of its tree (PidLock::busy_around). A live snapshot streams
    // them write-protected: that registration is crfs's, not their reason
    // (state/memory.h set_ours_to_protect). To the worker in its
    // environment, kWorkerBusyEnv = "PID,PID,...".
    std::vector<pid_t> busy = {};
};

inline constexpr char kWorkerBusyEnv[] = "CRFS_WORKER_BUSY";

struct WorkerReply {
    std::string text;                 // kReasons: the reasons
    std::unique_ptr<Snapshot> image;  // kImage, kDelta
    TrackMessage track;               // kDelta: the tracking armed for the next delta, `image`'s id
};

inline constexpr int kWorkerImageFd = 3;
inline constexpr int kImagePipeBytes = 1 << 20;
inline constexpr int kWorkerReplyFd = 4;
inline constexpr int kWorkerStatusFd = 5;
inline constexpr int kWorkerTrackFd = 6;  // kDelta
// kImage, kDelta (perf): the daemon's fingerprint cache, a sealed memfd
// (common/hash_cache.h), and a non-blocking pipe that takes back the hashes
// the worker computed, written before its reply.
inline constexpr int kWorkerPrintsFd = 7;
inline constexpr int kWorkerNewPrintsFd = 8;
// kImage, kDelta: the image's pipes, kImagePipeBytes each, the stream in
// stripes (ImageSink::kStripe bytes) into each in turn, kWorkerImageFd first
// (perf: 4 MiB between the worker and the daemon, docs/performance.md
// "Session 38").
inline constexpr int kWorkerImageFds[] = {kWorkerImageFd, 9, 10, 11};
inline constexpr int kWorkerLastFd = 11;

// Runs the worker and waits for it. Checkpoints of one pid are serialized.
Result<WorkerReply> run_worker(const WorkerRequest& req);

// Where crfs-ckpt is: by default next to this process's executable; tests
// that link the checkpoint library into another program set it.
void set_worker_exe(std::string path);

std::string_view worker_mode_name(WorkerMode m);
std::optional<WorkerMode> parse_worker_mode(std::string_view name);

// The worker's side: writes the reply for `result` to kWorkerReplyFd.
void send_worker_reply(const Result<std::string>& result);

}  // namespace crfs
