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

#include <chrono>
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

// perf: a worker kept ready (docs/performance.md "Session 40"). Spawning
// crfs-ckpt costs ~1.3 ms on the development VM (its exec), and the first
// chunks of its stream fault in fresh memory (~0.3 ms; one time in a few,
// tens of ms). So crfsd keeps one spawned ahead, a spare: argv = crfs-ckpt
// spare, fd kWorkerSpareFd a socket, nothing at 3..kWorkerLastFd. It faults
// its stream's ring in, sends one byte ("ready") and waits. A request goes to
// a ready spare as one message: the argv after argv[0], the busy list
// (kWorkerBusyEnv) and the request's fds (SCM_RIGHTS) with their numbers;
// the spare puts them at those numbers and from then on is the request's
// worker, exactly as if spawned for it. Its comm is "crfs-ckpt-spare" while
// it waits, "crfs-ckpt" once it has a request (and its argv[1], as ps shows
// it, "taken"). A spare not ready yet, or
// spawned under another environment or worker path, is not used: the request
// spawns its own worker, as without a spare. The next spare is spawned once
// a worker was reaped (its checkpoint costs nothing more then: spawned at
// once, its exec took the stream's CPU time and gained nothing). Only once
// keep_worker_spare(true) was called: crfsd does with CRFS_WORKER_SPARE=1 in
// its environment, not by default. Measured (docs/performance.md "Session
// 40"): the first byte comes 1.3-3 ms sooner and an image read into memory
// as fast, but an image a reader writes into a file streams slower from a
// spare (a 16 x 16 MiB tree: 200-220 against 250-258 ms at the median after
// the first read; one 256 MiB process 230 against 248). It goes with the
// spare's age: one spawned at the request and handed over at once streams
// as a fresh worker, one kept 200 ms does not (a lead: its decayed PELT
// load lets the balancer crowd its CPU). Its CPUs, scheduling, cgroups and
// ring were ruled out.
inline constexpr int kWorkerSpareFd = 12;
static_assert(kWorkerSpareFd > kWorkerLastFd, "a spare's socket is none of a request's fds");
inline constexpr char kWorkerSpareMode[] = "spare";
inline constexpr char kWorkerSpareTaken[] = "taken";  // argv[1] once it has a request
static_assert(sizeof kWorkerSpareTaken == sizeof kWorkerSpareMode);
// On: a spare is spawned now and after each request that used or wanted one,
// always on the CPUs the calling thread has now (crfsd's, at its start).
// Off: the spare is killed and reaped (crfsd at its exit: a spare outliving
// it would be reparented to whatever subreaper is above).
void keep_worker_spare(bool on);
// Tests: the spare's pid once it is ready, waiting at most `wait` for that
// (0: none ready by then); how many requests went to a spare so far.
pid_t worker_spare_ready(std::chrono::milliseconds wait);
uint64_t worker_spares_handed();
// The worker's side, in spare mode (argv as above): gets ready, waits for
// its request and installs its fds and busy list; the request's argv (argv[0]
// first). An error of code 0: the daemon closed the socket (no request).
Result<std::vector<std::string>> serve_as_spare(int argc, char** argv);

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
