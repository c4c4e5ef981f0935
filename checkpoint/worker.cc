#include "checkpoint/worker.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "checkpoint/image_sink.h"
#include "checkpoint/pid_lock.h"
#include "checkpoint/piped_image.h"
#include "checkpoint/track_channel.h"
#include "common/hash_cache.h"
#include "common/io.h"
#include "common/log.h"
#include "common/own_children.h"
#include "common/ptrace_wait.h"
#include "common/strfmt.h"

extern char** environ;

namespace crfs {

namespace {

constexpr std::string_view kModeNames[] = {"access", "reasons", "image", "delta"};
constexpr size_t kMaxReply = 1 << 20;
constexpr size_t kMaxSpareFds = 16;

bool parse_int(std::string_view s, int& out) {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

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

// A process group of its own: no terminal signal (Ctrl-C goes to the
// foreground group), nothing sent to the daemon's group reaches it. Not a
// session of its own: with autogroup scheduling that would put the tracer in a
// scheduling group apart from the daemon's, for no gain. Default dispositions,
// nothing blocked. stdin /dev/null.
void worker_attrs(SpawnArgs& sa) {
    posix_spawn_file_actions_addopen(&sa.actions, 0, "/dev/null", O_RDONLY, 0);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&sa.attr, &none);
    posix_spawnattr_setsigdefault(&sa.attr, &all);
    posix_spawnattr_setflags(
        &sa.attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
}

// crfsd's environment, but kWorkerBusyEnv.
std::vector<std::string> worker_env() {
    const std::string prefix = std::string(kWorkerBusyEnv) + "=";
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e)
        if (!std::string_view(*e).starts_with(prefix)) env.emplace_back(*e);
    return env;
}

// Spawns crfs-ckpt with `args`, `env` and, at each fd number, its fd (moved
// above kWorkerSpareFd first, so that no dup2 overwrites another's source);
// its pid, registered as crfsd's own child.
Result<pid_t> spawn(std::vector<std::string>& args, std::vector<std::string>& env,
                    std::vector<std::pair<int, UniqueFd*>>& fds, const char* what,
                    const std::function<void(SpawnArgs&)>& more = {}) {
    for (auto& [at, fd] : fds) {
        if (fd->get() > kWorkerSpareFd) continue;
        fd->reset(fcntl(fd->get(), F_DUPFD_CLOEXEC, kWorkerSpareFd + 1));
        if (!*fd) return errno_error("move a descriptor for the worker");
    }
    SpawnArgs sa;
    worker_attrs(sa);
    for (auto& [at, fd] : fds) posix_spawn_file_actions_adddup2(&sa.actions, fd->get(), at);
    if (more) more(sa);
    std::vector<char*> argv, envp;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    pid_t child = 0;
    own_children::Making making;  // crfsd's own child (common/own_children.h)
    if (int err = posix_spawn(&child, argv[0], &sa.actions, &sa.attr, argv.data(), envp.data());
        err != 0)
        return sys_error(err, strfmt("start the {} {}", what, args[0]));
    making.made(child);
    return child;
}

// A worker spawned for one request (`busy`: kWorkerBusyEnv's value, if any).
Result<pid_t> spawn_worker(std::vector<std::string>& args, const std::string& busy,
                           std::vector<std::pair<int, UniqueFd*>>& fds) {
    auto env = worker_env();
    if (!busy.empty()) env.push_back(std::string(kWorkerBusyEnv) + "=" + busy);
    return spawn(args, env, fds, "checkpoint worker");
}

// The spare (see worker.h): one at most, under g_spare_mu.
struct Spare {
    pid_t pid = 0;
    UniqueFd sock;
    bool ready = false;
    std::vector<std::string> env;  // what it was spawned with
    std::string exe;
};
std::mutex g_spare_mu;
std::condition_variable g_spare_cv;  // a spawn in flight ended
bool g_spare_on = false;
bool g_spare_spawning = false;
// crfsd's CPUs when spares were turned on. A spare is spawned with them, not
// with its spawning thread's: that may be a thread a stream's read placed on
// one CPU (checkpoint/piped_image.h serve), and a worker kept on the reader's
// CPU streams at half speed (seen: every spare on one CPU, a 16 x 16 MiB
// checkpoint into a file 216 -> 270 ms at the median).
cpu_set_t g_spare_cpus;
bool g_spare_cpus_known = false;
std::optional<Spare> g_spare;
std::atomic<uint64_t> g_spares_handed{0};
constexpr size_t kMaxSpareRequest = 64 << 10;  // longer (many groups): a worker of its own

// A request's message (its bytes in `data`), with room for kMaxSpareFds
// descriptors, of which `controllen` bytes are used.
struct SpareMessage {
    SpareMessage(std::string& data, size_t controllen) : iov{data.data(), data.size()} {
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = control;
        mh.msg_controllen = controllen;
    }
    SpareMessage(const SpareMessage&) = delete;
    SpareMessage& operator=(const SpareMessage&) = delete;
    iovec iov;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxSpareFds)] = {};
    msghdr mh{};
};

void drop(Spare& s) {
    s.sock.reset();
    if (s.pid > 0 && ::kill(s.pid, SIGKILL) == 0) reap(s.pid);
    s.pid = 0;
}

// A new spare (not ready yet).
Result<Spare> spawn_spare() {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return errno_error("socketpair for the spare worker");
    Spare s;
    s.sock.reset(sv[0]);
    UniqueFd theirs(sv[1]);
    s.exe = worker_exe();
    s.env = worker_env();
    std::vector<std::string> args = {s.exe, kWorkerSpareMode};
    std::vector<std::pair<int, UniqueFd*>> fds = {{kWorkerSpareFd, &theirs}};
    auto env = s.env;
    auto pid = spawn(args, env, fds, "spare checkpoint worker", [](SpawnArgs& sa) {
        for (int fd = 3; fd <= kWorkerLastFd; ++fd)  // nothing of crfsd's where a request's go
            posix_spawn_file_actions_addclose(&sa.actions, fd);
    });
    if (!pid) return std::unexpected(pid.error());
    s.pid = *pid;
    return s;
}

// Whether the spare is ready (its byte came), under g_spare_mu; a spare
// that ended is dropped (and g_spare empty after).
bool spare_ready() {
    if (!g_spare) return false;
    Spare& s = *g_spare;
    if (!s.ready) {
        char c;
        ssize_t n = recv(s.sock.get(), &c, 1, MSG_DONTWAIT);
        if (n == 1) {
            s.ready = true;
        } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            drop(s);  // it ended
            g_spare.reset();
        }
    }
    return g_spare && g_spare->ready;
}

// The ready spare, taken, if it was spawned under the environment and worker
// path a worker would get now; else none (a dead or stale one is dropped).
std::optional<Spare> take_spare() {
    std::lock_guard l(g_spare_mu);
    if (!spare_ready()) return std::nullopt;
    Spare& s = *g_spare;
    if (s.exe != worker_exe() || s.env != worker_env()) {
        drop(s);
        g_spare.reset();
        return std::nullopt;
    }
    std::optional<Spare> out = std::move(g_spare);
    g_spare.reset();
    return out;
}

// The request to the ready spare, if there is one: its pid (the request's
// worker now); 0 if none took it.
pid_t handed_to_spare(const std::vector<std::string>& args, const std::string& busy,
                      std::vector<std::pair<int, UniqueFd*>>& fds) {
    // The message: the fd numbers ("3,4,..."), the busy list, then argv[1...],
    // each ended by a NUL; the fds in the same order.
    std::string msg;
    for (auto& [at, fd] : fds) msg += (msg.empty() ? "" : ",") + std::to_string(at);
    msg += '\0';
    msg += busy + '\0';
    for (size_t i = 1; i < args.size(); ++i) msg += args[i] + '\0';
    if (msg.size() > kMaxSpareRequest || fds.size() > kMaxSpareFds) return 0;
    auto s = take_spare();
    if (!s) return 0;
    SpareMessage sm(msg, CMSG_SPACE(sizeof(int) * fds.size()));
    msghdr& mh = sm.mh;
    cmsghdr* cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    for (size_t i = 0; i < fds.size(); ++i) {
        int fd = fds[i].second->get();
        std::memcpy(CMSG_DATA(cm) + i * sizeof(int), &fd, sizeof fd);
    }
    if (sendmsg(s->sock.get(), &mh, MSG_NOSIGNAL) != ssize_t(msg.size())) {
        log_info("spare checkpoint worker %d took no request (%s): spawning one", int(s->pid),
                 strerror(errno));
        drop(*s);
        return 0;
    }
    g_spares_handed++;
    return s->pid;  // its socket closes here: it has what it needs
}

// A spare spawned, if spares are kept and there is none and none coming, on
// a thread of its own (the spawn waits for its exec). Called when a worker
// was reaped: the checkpoint it made costs nothing more then.
void refill_spare() {
    {
        std::lock_guard l(g_spare_mu);
        if (!g_spare_on || g_spare || g_spare_spawning) return;
        g_spare_spawning = true;
    }
    auto made = [] {
        {
            std::lock_guard l(g_spare_mu);
            if (g_spare_cpus_known) (void)sched_setaffinity(0, sizeof g_spare_cpus, &g_spare_cpus);
        }
        auto s = spawn_spare();
        std::lock_guard l(g_spare_mu);
        g_spare_spawning = false;
        g_spare_cv.notify_all();
        if (!s) {
            log_info("%s", s.error().what.c_str());  // the next request tries again
            return;
        }
        if (g_spare_on && !g_spare) {
            g_spare = std::move(*s);
        } else {
            drop(*s);
        }
    };
    try {
        std::thread(made).detach();
    } catch (const std::system_error&) {
        std::lock_guard l(g_spare_mu);
        g_spare_spawning = false;
    }
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
    // Without the daemon's fingerprint cache, /dev/null at kWorkerPrintsFd.
    if (!prints && prints_wr) {
        prints.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        if (!prints) return errno_error("open /dev/null for the worker");
    }
    std::vector<std::pair<int, UniqueFd*>> fds;  // the worker's fd numbers, what goes there
    for (size_t i = 0; i < image_wr.size(); ++i) fds.emplace_back(kWorkerImageFds[i], &image_wr[i]);
    fds.emplace_back(kWorkerReplyFd, &wr);
    fds.emplace_back(kWorkerStatusFd, &status_wr);
    fds.emplace_back(kWorkerTrackFd, &track_wr);
    fds.emplace_back(kWorkerPrintsFd, &prints);
    fds.emplace_back(kWorkerNewPrintsFd, &prints_wr);
    std::erase_if(fds, [](const auto& f) { return !*f.second; });

    std::vector<std::string> args = {worker_exe(),
                                     std::string(worker_mode_name(req.mode)),
                                     std::to_string(req.pid),
                                     std::to_string(req.starttime),
                                     std::to_string(req.daemon_tgid),
                                     encode_creds(req.creds)};
    if (req.mode == WorkerMode::kDelta)
        args.push_back(std::to_string(req.track ? req.track->id : 0));
    std::string busy;
    for (pid_t b : req.busy) busy += (busy.empty() ? "" : ",") + std::to_string(b);
    pid_t child = handed_to_spare(args, busy, fds);
    const bool spare = child > 0;
    if (!spare) {
        auto spawned = spawn_worker(args, busy, fds);
        if (!spawned) return std::unexpected(spawned.error());
        child = *spawned;
    }
    if (getenv("CRFS_CHECKPOINT_TRACE"))  // when (CLOCK_MONOTONIC, us): beside the phases'
        log_info("checkpoint %d: worker %d %s @%llu", int(req.pid), int(child),
                 spare ? "was the spare" : "spawned", (unsigned long long)(monotonic_ns() / 1000));
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
            out.image = std::make_unique<PipedImage>(std::move(image_rd), child, size,
                                                     std::move(status_rd), std::move(lock),
                                                     rest == " live copying", refill_spare);
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
    refill_spare();
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

void keep_worker_spare(bool on) {
    {
        std::unique_lock l(g_spare_mu);
        g_spare_on = on;
        if (on) {
            CPU_ZERO(&g_spare_cpus);
            g_spare_cpus_known = sched_getaffinity(0, sizeof g_spare_cpus, &g_spare_cpus) == 0;
        }
        if (!on) {
            // A spawn in flight drops what it makes (bounded: its exec).
            g_spare_cv.wait_for(l, std::chrono::seconds(5), [] { return !g_spare_spawning; });
            if (g_spare) drop(*g_spare);
            g_spare.reset();
            return;
        }
    }
    refill_spare();
}

pid_t worker_spare_ready(std::chrono::milliseconds wait) {
    auto until = std::chrono::steady_clock::now() + wait;
    for (;;) {
        {
            std::lock_guard l(g_spare_mu);
            if (spare_ready()) return g_spare->pid;
        }
        if (std::chrono::steady_clock::now() >= until) return 0;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

uint64_t worker_spares_handed() {
    return g_spares_handed;
}

Result<std::vector<std::string>> serve_as_spare(int argc, char** argv) {
    (void)prctl(PR_SET_NAME, "crfs-ckpt-spare");
    if (argc != 2) return make_error(EINVAL, "usage: crfs-ckpt spare");
    // Its stream's ring faulted in now, then ready.
    ImageSink::prefault_ring();
    if (send(kWorkerSpareFd, "r", 1, MSG_NOSIGNAL) != 1) return make_error(0, "");
    std::string msg(kMaxSpareRequest, '\0');
    SpareMessage sm(msg, sizeof sm.control);
    msghdr& mh = sm.mh;
    ssize_t n;
    do {
        n = recvmsg(kWorkerSpareFd, &mh, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n == 0) return make_error(0, "");  // crfsd is gone, or keeps no spare
    if (n < 0) return errno_error("spare worker: receive a request");
    std::vector<UniqueFd> got;
    for (cmsghdr* cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
        for (size_t off = 0; CMSG_LEN(off + sizeof(int)) <= cm->cmsg_len; off += sizeof(int)) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(cm) + off, sizeof fd);
            got.emplace_back(fd);
        }
    }
    if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
        return make_error(EMSGSIZE, "spare worker: the request was cut short");
    msg.resize(size_t(n));
    std::vector<std::string> fields;
    for (size_t at = 0; at < msg.size();) {
        size_t end = msg.find('\0', at);
        if (end == std::string::npos) return make_error(EINVAL, "spare worker: a bad request");
        fields.push_back(msg.substr(at, end - at));
        at = end + 1;
    }
    if (fields.size() < 3) return make_error(EINVAL, "spare worker: a bad request");
    std::vector<int> numbers;
    for (std::string_view rest = fields[0]; !rest.empty();) {
        size_t comma = rest.find(',');
        int at = 0;
        if (!parse_int(rest.substr(0, comma), at) || at < 3 || at > kWorkerLastFd)
            return make_error(EINVAL, "spare worker: a bad fd number in the request");
        numbers.push_back(at);
        rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    }
    if (numbers.size() != got.size())
        return make_error(EINVAL, "spare worker: the request's fds and their numbers differ");
    // Each fd at its number: first all above every number (a received fd may
    // sit where another goes), then there.
    for (UniqueFd& fd : got) {
        if (fd.get() > kWorkerSpareFd) continue;
        fd.reset(fcntl(fd.get(), F_DUPFD_CLOEXEC, kWorkerSpareFd + 1));
        if (!fd) return errno_error("spare worker: move a received fd");
    }
    for (size_t i = 0; i < got.size(); ++i)
        if (dup2(got[i].get(), numbers[i]) < 0) return errno_error("spare worker: place an fd");
    got.clear();
    ::close(kWorkerSpareFd);
    if (!fields[1].empty() && setenv(kWorkerBusyEnv, fields[1].c_str(), 1) != 0)
        return errno_error("spare worker: set the busy list");
    // Its request's worker from here on: so says its comm, and its command
    // line (argv[1] rewritten in place: ps, and the tests, tell it from a
    // spare that waits).
    (void)prctl(PR_SET_NAME, "crfs-ckpt");
    std::memcpy(argv[1], kWorkerSpareTaken, sizeof kWorkerSpareTaken - 1);
    std::vector<std::string> out = {argv[0]};
    out.insert(out.end(), fields.begin() + 2, fields.end());
    return out;
}

void send_worker_reply(const Result<std::string>& result) {
    std::string msg =
        result ? "0\n" + *result : std::to_string(result.error().code) + "\n" + result.error().what;
    (void)write_full(kWorkerReplyFd, msg.data(), msg.size());  // the daemon may be gone
}

}  // namespace crfs
