#include "checkpoint/worker.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <charconv>

#include "checkpoint/pid_lock.h"
#include "checkpoint/piped_image.h"
#include "checkpoint/track_channel.h"
#include "common/hash_cache.h"
#include "common/io.h"
#include "common/log.h"
#include "common/own_children.h"
#include "common/strfmt.h"

extern char** environ;

namespace crfs {

namespace {

constexpr std::string_view kModeNames[] = {"access", "reasons", "image", "delta"};
constexpr size_t kMaxReply = 1 << 20;

// crfs-ckpt lives next to the daemon's executable. Set once at startup (or
// by a test before any request), read-only afterwards.
std::string& worker_exe() {
    static std::string path = [] {
        // readlink(2), not boost::filesystem: the worker links this file too,
        // and need not load libboost_filesystem at each exec (perf).
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self);
        std::string_view exe(self, n > 0 && size_t(n) < sizeof self ? size_t(n) : 0);
        size_t slash = exe.rfind('/');
        return std::string(exe.substr(0, slash == std::string_view::npos ? 0 : slash)) +
               "/crfs-ckpt";
    }();
    return path;
}

class SpawnArgs {
  public:
    SpawnArgs() {
        posix_spawn_file_actions_init(&actions);
        posix_spawnattr_init(&attr);
    }
    ~SpawnArgs() {
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attr);
    }
    SpawnArgs(const SpawnArgs&) = delete;
    SpawnArgs& operator=(const SpawnArgs&) = delete;
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
};

// Reaps `pid`, retrying on EINTR.
int reap(pid_t pid) {
    int st = 0;
    own_children::waitpid(pid, &st, 0);
    return st;
}

Result<WorkerReply> spawn_and_wait(const WorkerRequest& req, std::shared_ptr<PidLock> lock = {}) {
    int p[2];
    std::vector<UniqueFd> image_rd, image_wr;  // a pipe per stripe (kWorkerImageFds)
    UniqueFd status_rd, status_wr, track_rd, track_wr, prints, prints_rd, prints_wr;
    if (req.mode == WorkerMode::kDelta) {  // incr
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, p) != 0)
            return errno_error("socketpair for the delta tracking");
        track_rd.reset(p[0]);
        track_wr.reset(p[1]);
        if (req.track)
            if (auto s = send_track(track_rd.get(), *req.track); !s)
                return std::unexpected(s.error());
    }
    if (req.mode == WorkerMode::kImage || req.mode == WorkerMode::kDelta) {
        if (pipe2(p, O_CLOEXEC) != 0) return errno_error("pipe for the image's status");
        status_rd.reset(p[0]);
        status_wr.reset(p[1]);
        for (size_t i = 0; i < std::size(kWorkerImageFds); ++i) {
            if (pipe2(p, O_CLOEXEC) != 0) return errno_error("pipe for the image");
            image_rd.emplace_back(p[0]);
            image_wr.emplace_back(p[1]);
            // 1 MiB, a FUSE read's worth (best effort: the default is 64 KiB).
            fcntl(p[1], F_SETPIPE_SZ, kImagePipeBytes);
        }
        // perf: the fingerprint cache; without it (no memfd: /dev/null on fd 7)
        // the worker hashes everything.
        if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) return errno_error("pipe for the fingerprints");
        prints_rd.reset(p[0]);
        prints_wr.reset(p[1]);
        // CRFS_HASH_CACHE_OFF in crfsd's environment: none (bench/ A/B with one binary).
        if (!getenv("CRFS_HASH_CACHE_OFF"))
            if (auto c = hash_cache_export(); c) prints = std::move(*c);
    }
    if (pipe2(p, O_CLOEXEC) != 0) return errno_error("pipe for the worker");
    UniqueFd rd(p[0]), wr(p[1]);
    // Sources above the target numbers, so that no dup2 below overwrites one.
    std::vector<UniqueFd*> sources = {&wr, &status_wr, &track_wr, &prints, &prints_wr};
    for (UniqueFd& fd : image_wr) sources.push_back(&fd);
    for (UniqueFd* fd : sources) {
        if (!*fd || fd->get() > kWorkerLastFd) continue;
        fd->reset(fcntl(fd->get(), F_DUPFD_CLOEXEC, kWorkerLastFd + 1));
        if (!*fd) return errno_error("move a descriptor for the worker");
    }

    SpawnArgs sa;
    posix_spawn_file_actions_addopen(&sa.actions, 0, "/dev/null", O_RDONLY, 0);
    for (size_t i = 0; i < image_wr.size(); ++i)
        posix_spawn_file_actions_adddup2(&sa.actions, image_wr[i].get(), kWorkerImageFds[i]);
    posix_spawn_file_actions_adddup2(&sa.actions, wr.get(), kWorkerReplyFd);
    if (status_wr) posix_spawn_file_actions_adddup2(&sa.actions, status_wr.get(), kWorkerStatusFd);
    if (track_wr) posix_spawn_file_actions_adddup2(&sa.actions, track_wr.get(), kWorkerTrackFd);
    if (prints)
        posix_spawn_file_actions_adddup2(&sa.actions, prints.get(), kWorkerPrintsFd);
    else if (prints_wr)
        posix_spawn_file_actions_addopen(&sa.actions, kWorkerPrintsFd, "/dev/null", O_RDONLY, 0);
    if (prints_wr)
        posix_spawn_file_actions_adddup2(&sa.actions, prints_wr.get(), kWorkerNewPrintsFd);
    // A process group of its own: no terminal signal (Ctrl-C goes to the
    // foreground group), nothing sent to the daemon's group reaches it. Not a
    // session of its own: with autogroup scheduling that would put the tracer
    // in a scheduling group apart from the daemon's, for no gain. Default
    // dispositions, nothing blocked.
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&sa.attr, &none);
    posix_spawnattr_setsigdefault(&sa.attr, &all);
    posix_spawnattr_setflags(
        &sa.attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    std::string args[] = {worker_exe(),
                          std::string(worker_mode_name(req.mode)),
                          std::to_string(req.pid),
                          std::to_string(req.starttime),
                          std::to_string(req.daemon_tgid),
                          encode_creds(req.creds),
                          std::to_string(req.track ? req.track->id : 0)};
    char* argv[std::size(args) + 1] = {};
    size_t nargs = std::size(args) - (req.mode == WorkerMode::kDelta ? 0 : 1);
    for (size_t i = 0; i < nargs; ++i) argv[i] = args[i].data();
    // crfsd's environment, but kWorkerBusyEnv: only the request's.
    const std::string prefix = std::string(kWorkerBusyEnv) + "=";
    std::string busy = prefix;
    for (pid_t b : req.busy) busy += (busy.size() > prefix.size() ? "," : "") + std::to_string(b);
    std::vector<char*> env;
    for (char** e = environ; *e; ++e)
        if (!std::string_view(*e).starts_with(prefix)) env.push_back(*e);
    if (!req.busy.empty()) env.push_back(busy.data());
    env.push_back(nullptr);
    pid_t child = 0;
    {
        own_children::Making making;  // crfsd's own child (common/own_children.h)
        if (int err = posix_spawn(&child, argv[0], &sa.actions, &sa.attr, argv, env.data());
            err != 0)
            return sys_error(err, "start the checkpoint worker " + worker_exe());
        making.made(child);
    }
    wr.reset();
    image_wr.clear();
    status_wr.reset();
    track_wr.reset();
    prints.reset();
    prints_wr.reset();

    std::string reply;
    char buf[4096];
    for (;;) {
        ssize_t n = read(rd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (reply.size() < kMaxReply) reply.append(buf, size_t(n));
    }
    // The reply pipe ends when the worker closes it: at its exit, or (image
    // mode, success) right before it streams the image.
    // perf: the hashes it computed were written before the reply.
    if (prints_rd) hash_cache_merge(prints_rd.get());
    size_t nl = reply.find('\n');
    int code = -1;
    if (nl != std::string::npos) {
        auto [ptr, ec] = std::from_chars(reply.data(), reply.data() + nl, code);
        if (ec != std::errc() || ptr != reply.data() + nl) code = -1;
    }
    std::string text = nl == std::string::npos ? std::string() : reply.substr(nl + 1);
    if (!image_rd.empty() && code == 0) {
        uint64_t size = 0;
        auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), size);
        std::string_view rest(ptr, size_t(text.data() + text.size() - ptr));
        // incr: the tracking was sent before the reply, so it is queued by now.
        Result<TrackMessage> track = TrackMessage{};
        if (track_rd) track = recv_track(track_rd.get());
        if (track_rd && track && track->members.empty())
            track = make_error(
                EIO, strfmt("checkpoint worker for task {} sent no delta tracking", req.pid));
        if (ec == std::errc() && (rest.empty() || rest == " live" || rest == " live copying") &&
            track) {
            // A live snapshot keeps the task write-protected until its stream
            // ends: the next checkpoint of the task waits for that.
            if (rest.empty()) lock.reset();
            WorkerReply out;
            out.track = std::move(*track);
            out.image =
                std::make_unique<PipedImage>(std::move(image_rd), child, size, std::move(status_rd),
                                             std::move(lock), rest == " live copying");
            return out;
        }
        if (!track) {
            code = track.error().code;
            text = track.error().what;
        } else {
            code = EIO;
            text = strfmt("checkpoint worker for task {} replied no image size", req.pid);
        }
    }
    image_rd.clear();  // a worker that still writes gets EPIPE
    int st = reap(child);
    if (code < 0 || code > 4095)
        return make_error(
            EIO, strfmt("checkpoint worker for task {} failed (wait status {:#x})", req.pid, st));
    if (code != 0) return make_error(code, std::move(text));
    WorkerReply out;
    out.text = std::move(text);
    return out;
}

}  // namespace

void set_worker_exe(std::string path) {
    worker_exe() = std::move(path);
}

std::string_view worker_mode_name(WorkerMode m) {
    return kModeNames[static_cast<int>(m)];
}

std::optional<WorkerMode> parse_worker_mode(std::string_view name) {
    for (size_t i = 0; i < std::size(kModeNames); ++i)
        if (kModeNames[i] == name) return static_cast<WorkerMode>(i);
    return std::nullopt;
}

Result<WorkerReply> run_worker(const WorkerRequest& req) {
    if (req.mode != WorkerMode::kImage && req.mode != WorkerMode::kDelta)
        return spawn_and_wait(req);
    // A descendant's userfaultfd still being released after its image's last
    // byte would be its reason in this tree's detection (s19-vmadump).
    if (!PidLock::wait_released_below(req.pid, std::chrono::seconds(10)))
        log_info("checkpoint of %d: a userfaultfd release below it still pending after 10 s",
                 int(req.pid));
    // Bounded: a reader that holds a live snapshot's stream open without
    // reading does not block the task's other checkpoints forever.
    std::shared_ptr<PidLock> lock = PidLock::try_for(req.pid, std::chrono::seconds(60));
    if (!lock)
        return make_error(EBUSY, strfmt("checkpoint {}: another image of the task is being read "
                                        "(its memory is still streamed); try again",
                                        req.pid));
    return spawn_and_wait(req, std::move(lock));
}

void send_worker_reply(const Result<std::string>& result) {
    std::string msg =
        result ? "0\n" + *result : std::to_string(result.error().code) + "\n" + result.error().what;
    (void)write_full(kWorkerReplyFd, msg.data(), msg.size());  // the daemon may be gone
}

}  // namespace crfs
