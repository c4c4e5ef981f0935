// crfs-ckpt: the worker that acts as the caller (see checkpoint/worker.h for
// why and for the protocol). It runs as root only until assume_creds(); from
// then on every check is the kernel's, made against the caller's credentials.
#include <fcntl.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "checkpoint/creds.h"
#include "checkpoint/incremental.h"
#include "checkpoint/task_attrs.h"
#include "checkpoint/track_channel.h"
#include "checkpoint/worker.h"
#include "common/hash_cache.h"
#include "common/io.h"
#include "common/log.h"
#include "common/procfs.h"
#include "common/ptrace_wait.h"
#include "common/strfmt.h"
#include "common/test_hold.h"
#include "state/memory.h"
#include "state/memory_dump.h"
#include "state/registry.h"

namespace crfs {
namespace {

template <class T>
bool parse_num(std::string_view s, T& out) {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

// The kernel's ptrace check for the caller: opening /proc/<pid>/mem asks
// mm_access(task, PTRACE_MODE_ATTACH_FSCREDS), i.e. ptrace_may_access with
// the same mode the checkpoint's own /proc/<pid>/mem reads need (dumpable,
// uid/gid match, capability subset, user namespaces, LSMs). Then the start
// time: the pid must still name the task the request was about.
Status check_access(pid_t pid, uint64_t starttime) {
    std::string who = "task " + std::to_string(pid);
    std::string path = "/proc/" + std::to_string(pid) + "/mem";
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == ESRCH) return sys_error(ESRCH, who);
        if (errno == EACCES || errno == EPERM)
            return make_error(EACCES, who + ": the kernel refuses the caller ptrace access");
        return errno_error("open " + path);
    }
    ::close(fd);
    auto st = read_stat(pid);
    if (!st || st->starttime != starttime) return make_error(ESRCH, who + " is gone");
    return {};
}

// kReasons: the daemon's checkpoints in progress around the task
// (worker.h WorkerRequest::busy), from the environment.
std::vector<pid_t> g_busy;

Status take_busy() {
    const char* text = getenv(kWorkerBusyEnv);
    if (!text) return {};
    for (std::string_view rest(text);;) {
        size_t comma = rest.find(',');
        pid_t pid = 0;
        if (!parse_num(rest.substr(0, comma), pid) || pid <= 0)
            return make_error(EINVAL, strfmt("{}: not a list of pids: {}", kWorkerBusyEnv, text));
        g_busy.push_back(pid);
        if (comma == std::string_view::npos) break;
        rest.remove_prefix(comma + 1);
    }
    // A task of theirs a live snapshot streams: its write protection is
    // crfs's (as crfsd's own detection has it, fs/main.cc).
    state::set_ours_to_protect([](pid_t p) {
        return std::any_of(g_busy.begin(), g_busy.end(),
                           [p](pid_t b) { return pid_at_or_below(p, b); });
    });
    return {};
}

// The reasons the checkpointer would refuse on, for this caller. A tracer
// that is another worker of this daemon (a checkpoint in progress) is not one.
Result<std::string> reasons(pid_t pid, pid_t daemon_tgid) {
    if (auto ok = take_busy(); !ok) return std::unexpected(ok.error());
    pid_t ours = daemon_tgid;
    if (auto status = read_status(pid); status && status->tracer_pid != 0) {
        auto leader = read_status(status->tracer_pid);
        auto tracer = read_stat(leader ? leader->tgid : status->tracer_pid);
        if (tracer && tracer->ppid == daemon_tgid) ours = tracer->pid;
    }
    auto lines = state::detect_reasons(pid, ours);
    if (!lines) return std::unexpected(lines.error());
    std::string out;
    for (auto& l : *lines) out += l + "\n";
    return out;
}

// EBUSY while the task has any reason.
Status checkpointable(pid_t pid, pid_t daemon_tgid) {
    auto why = reasons(pid, daemon_tgid);
    if (!why) return std::unexpected(why.error());
    if (!why->empty())
        return make_error(EBUSY, "checkpoint " + std::to_string(pid) +
                                     ": not checkpointable now (" +
                                     why->substr(0, why->find('\n')) + "; see reason)");
    return {};
}

// A checkpoint that failed: when the task has reasons now, they are the
// error, as `reason` shows them. The checkpointer runs the same detection
// once the task is frozen (state/registry.h), so no pass before the freeze:
// it read smaps, the costliest /proc file (~5 us per area), a second time.
template <class T>
Result<T> or_reasons(Result<T> r, pid_t pid, pid_t daemon_tgid) {
    if (r) return r;
    if (auto ok = checkpointable(pid, daemon_tgid); !ok && ok.error().code == EBUSY)
        return std::unexpected(ok.error());
    return r;
}

// The image, streamed to kWorkerImageFds after the reply: a live snapshot
// whose pages are still in the task (checkpoint/live_snapshot.h).
std::unique_ptr<ImageSource> g_image;

Result<std::string> image(pid_t pid, uint64_t starttime, pid_t daemon_tgid) {
    auto img = or_reasons(checkpoint_task_live(pid, starttime), pid, daemon_tgid);
    if (!img) return std::unexpected(img.error());
    g_image = std::move(*img);
    // The size: known at the end (zero pages are dropped as they go).
    // " copying": the stream's thread copies (ImageSource::copies_as_it_streams).
    if (!g_image->live()) return std::string("0");
    return std::string(g_image->copies_as_it_streams() ? "0 live copying" : "0 live");
}

// incr: an image of a chain (worker.h kDelta, docs/incremental.md): the base's
// tracking comes in on kWorkerTrackFd, the new one goes back there with the
// new image's id, before the reply.
Result<std::string> delta(pid_t pid, uint64_t starttime, pid_t daemon_tgid, uint64_t base_id) {
    ChainTracking track;
    if (base_id) {
        auto in = recv_track(kWorkerTrackFd);
        if (!in) return std::unexpected(in.error());
        if (in->members.empty() || in->id != base_id)
            return make_error(EIO, "delta: the base's tracking did not come with the request");
        track.members = std::move(in->members);
        track.delta = true;
    }
    image::ChainRecord chain{0, base_id};
    while (chain.id == 0 || chain.id == base_id)
        if (getrandom(&chain.id, sizeof chain.id, 0) != sizeof chain.id)
            return errno_error("getrandom for the image id");
    auto img = or_reasons(checkpoint_task_tracked(pid, starttime, track, chain), pid, daemon_tgid);
    if (!img) return std::unexpected(img.error());
    if (auto s = send_track(kWorkerTrackFd, {chain.id, std::move(track.members)}); !s)
        return std::unexpected(s.error());
    g_image = std::move(*img);
    return std::string("0");
}

// Writes the image into the pipe, then its status (worker.h). A reader that
// goes away (the handle closed, the daemon killed) ends it with EPIPE; the
// task is let go when this process exits, whatever ends it.
void stream_image(ImageSource& img) {
    auto r = img.write_stripes(kWorkerImageFds);
    if (!r && r.error().code == EPIPE) return;
    if (!r) log_info("%s", r.error().what.c_str());
    std::string msg = r ? "0\n" : std::to_string(r.error().code) + "\n" + r.error().what;
    (void)write_full(kWorkerStatusFd, msg.data(), msg.size());
}

// Test only: CRFS_TEST_RELEASE_HOLD=PATH in crfsd's environment: after the
// image's last byte, the worker makes PATH.held and keeps the task's
// userfaultfd until PATH exists (at most 60 s), so a test can look at the
// window between the reader's end and the release (tests/fs/live_mount_test.py).
void test_hold_release() {
    test_hold_until_made(getenv("CRFS_TEST_RELEASE_HOLD"));
}

// perf: the hashes this checkpoint computed, to the daemon's cache before the
// reply (so they are in the pipe when the daemon reads the reply's end).
Result<std::string> sent_prints(Result<std::string> r, UniqueFd& to) {
    if (getenv("CRFS_CHECKPOINT_TRACE")) {
        auto st = hash_cache_stats();
        log_info("checkpoint: fingerprint cache: %llu hits, %llu hashed",
                 (unsigned long long)st.hits, (unsigned long long)st.misses);
    }
    if (to) hash_cache_send_new(to.get());
    to.reset();
    return r;
}

Result<std::string> serve(int argc, char** argv) {
    WorkerRequest req;
    uint64_t base_id = 0;  // kDelta
    UniqueFd new_prints;   // perf: kWorkerNewPrintsFd, the hashes computed here go back
    auto mode = argc == 6 || argc == 7 ? parse_worker_mode(argv[1]) : std::nullopt;
    if (mode && (*mode == WorkerMode::kDelta) != (argc == 7)) mode.reset();
    if (!mode || !parse_num(argv[2], req.pid) || !parse_num(argv[3], req.starttime) ||
        !parse_num(argv[4], req.daemon_tgid) || (argc == 7 && !parse_num(argv[6], base_id)))
        return make_error(EINVAL,
                          "usage: crfs-ckpt MODE PID STARTTIME DAEMON_TGID CREDS [BASE_ID]");
    auto creds = decode_creds(argv[5]);
    if (!creds) return std::unexpected(creds.error());
    if (*mode != WorkerMode::kImage && *mode != WorkerMode::kDelta) {
        for (int fd : kWorkerImageFds) ::close(fd);
        ::close(kWorkerStatusFd);
        ::close(kWorkerPrintsFd);
        ::close(kWorkerNewPrintsFd);
    } else {
        // perf: the daemon's fingerprint cache (common/hash_cache.h), if fd 7
        // is its sealed memfd and fd 8 a pipe; else an empty cache, nothing sent.
        if (int seals = fcntl(kWorkerPrintsFd, F_GET_SEALS); seals >= 0 && (seals & F_SEAL_WRITE))
            hash_cache_import(kWorkerPrintsFd);
        ::close(kWorkerPrintsFd);
        struct stat st;
        if (fstat(kWorkerNewPrintsFd, &st) == 0 && S_ISFIFO(st.st_mode))
            new_prints.reset(kWorkerNewPrintsFd);
        else
            ::close(kWorkerNewPrintsFd);
    }
    if (*mode != WorkerMode::kDelta) ::close(kWorkerTrackFd);
    if (auto ok = assume_creds(*creds); !ok) return std::unexpected(ok.error());
    if (auto ok = check_access(req.pid, req.starttime); !ok) return std::unexpected(ok.error());
    switch (*mode) {
        case WorkerMode::kAccess:
            return std::string();
        case WorkerMode::kReasons:
            return reasons(req.pid, req.daemon_tgid);
        case WorkerMode::kImage:
            return sent_prints(image(req.pid, req.starttime, req.daemon_tgid), new_prints);
        case WorkerMode::kDelta:
            return sent_prints(delta(req.pid, req.starttime, req.daemon_tgid, base_id), new_prints);
    }
    return make_error(EINVAL, "unknown mode");
}

}  // namespace
}  // namespace crfs

int main(int argc, char** argv) {
    // A spare worker (checkpoint/worker.h): spawned ahead, its request comes later.
    const bool spare = argc >= 2 && std::string_view(argv[1]) == crfs::kWorkerSpareMode;
    // Nothing of the daemon's but the image, reply and status pipes (a spare:
    // its socket; the request's fds come through it).
    if (spare) {
        ::close_range(3, crfs::kWorkerSpareFd - 1, 0);
        ::close_range(crfs::kWorkerSpareFd + 1, ~0u, 0);
    } else {
        ::close_range(crfs::kWorkerLastFd + 1, ~0u, 0);
    }
    // perf: the fd table grown now, while this is the only thread: a tree's
    // capture (several threads) holds an fd or more per member (a live
    // member's userfaultfd and memory file), and each time the table had to
    // double then, the kernel waited for an RCU grace period (common/io.h).
    crfs::presize_fd_table(1024);
    // The daemon may die at any moment: a closed reply pipe must not kill us
    // mid-checkpoint (the task would keep injected registers).
    // Polite signals (a terminal, a service manager stopping everything) wait
    // until the task is let go; only SIGKILL cuts a checkpoint short, and only
    // root or the caller itself (whose own task it is) can send that.
    for (int sig : {SIGPIPE, SIGHUP, SIGINT, SIGQUIT, SIGTERM}) ::signal(sig, SIG_IGN);
    // The daemon's log: its stderr (fd 2, inherited) in the foreground, else syslog.
    crfs::log_init(::getenv(crfs::kLogToSyslogEnv) == nullptr, false, "crfs-ckpt");
    std::vector<std::string> handed;  // a spare's request: its argv
    std::vector<char*> handed_argv;
    if (spare) {
        auto req = crfs::serve_as_spare(argc, argv);
        if (!req) {
            if (req.error().code != 0) crfs::log_error("%s", req.error().what.c_str());
            ::_exit(req.error().code != 0);
        }
        handed = std::move(*req);
        for (std::string& a : handed) handed_argv.push_back(a.data());
        handed_argv.push_back(nullptr);
        argc = int(handed.size());
        argv = handed_argv.data();
    }
    crfs::send_worker_reply(crfs::serve(argc, argv));
    // The task runs again: the reply says so at once, then the image follows.
    ::close(crfs::kWorkerReplyFd);
    if (crfs::g_image) {
        crfs::stream_image(*crfs::g_image);
        // The reader has every byte and the status once both pipes end; only
        // then the userfaultfd's release (perf: the kernel walks every area,
        // ~35 ms at 30,000), which the daemon's lock on the task waits for
        // (checkpoint/piped_image.h).
        for (int fd : crfs::kWorkerImageFds) ::close(fd);
        ::close(crfs::kWorkerStatusFd);
        crfs::test_hold_release();
        uint64_t t0 = crfs::monotonic_ns();
        crfs::g_image.reset();
        if (getenv("CRFS_CHECKPOINT_TRACE"))
            crfs::log_info("checkpoint: worker: released after the last byte in %llu us",
                           (unsigned long long)((crfs::monotonic_ns() - t0) / 1000));
    }
    if (getenv("CRFS_CHECKPOINT_TRACE")) {  // perf: what this worker's life cost
        rusage ru{};
        getrusage(RUSAGE_SELF, &ru);
        crfs::log_info("checkpoint: worker: %ld page faults, %ld us user, %ld us system",
                       ru.ru_minflt, long(ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec),
                       long(ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec));
    }
    // _exit: nothing is left to flush, and an at-exit leak check (ASan builds)
    // would need to ptrace this process, which is non-dumpable by design.
    ::_exit(0);
}
