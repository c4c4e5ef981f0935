// crfs-ckpt: the worker that acts as the caller (see checkpoint/worker.h for
// why and for the protocol). It runs as root only until assume_creds(); from
// then on every check is the kernel's, made against the caller's credentials.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <string>
#include <string_view>

#include "checkpoint/checkpoint.h"
#include "checkpoint/creds.h"
#include "checkpoint/memory.h"
#include "checkpoint/task_attrs.h"
#include "checkpoint/worker.h"
#include "common/io.h"
#include "common/log.h"
#include "common/procfs.h"
#include "common/strfmt.h"
#include "fs/tasks.h"
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

// The reasons the checkpointer would refuse on, for this caller. A tracer
// that is another worker of this daemon (a checkpoint in progress) is not one.
Result<std::string> reasons(pid_t pid, pid_t daemon_tgid) {
    pid_t ours = daemon_tgid;
    if (auto status = read_status(pid); status && status->tracer_pid != 0) {
        auto tracer = read_stat(fs::tgid_of(status->tracer_pid).value_or(status->tracer_pid));
        if (tracer && tracer->ppid == daemon_tgid) ours = tracer->pid;
    }
    auto lines = state::detect_reasons(pid, ours);
    if (!lines) return std::unexpected(lines.error());
    std::string out;
    for (auto& l : *lines) out += l + "\n";
    return out;
}

Result<std::string> image(pid_t pid, uint64_t starttime, pid_t daemon_tgid) {
    auto why = reasons(pid, daemon_tgid);
    if (!why) return std::unexpected(why.error());
    if (!why->empty())
        return make_error(EBUSY, "checkpoint " + std::to_string(pid) +
                                     ": not checkpointable now (" +
                                     why->substr(0, why->find('\n')) + "; see reason)");
    auto snap = checkpoint_task(pid, starttime);
    if (!snap) return std::unexpected(snap.error());
    // Straight into the memfd's pages: one copy, not two through a buffer.
    uint64_t size = (*snap)->size();
    if (::ftruncate(kWorkerImageFd, off_t(size)) != 0) return errno_error("size the image memfd");
    if (size == 0) return std::string("0");
    void* map = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, kWorkerImageFd, 0);
    if (map == MAP_FAILED) return errno_error("map the image memfd");
    Status copied;
    for (uint64_t off = 0; off < size && copied;) {
        auto n = (*snap)->read(off, static_cast<char*>(map) + off, size - off);
        if (!n)
            copied = std::unexpected(n.error());
        else if (*n == 0)
            copied = make_error(EIO, "image shorter than its size");
        else
            off += *n;
    }
    ::munmap(map, size);
    if (!copied) return std::unexpected(copied.error());
    return std::to_string(size);
}

Result<std::string> serve(int argc, char** argv) {
    WorkerRequest req;
    auto mode = argc == 6 ? parse_worker_mode(argv[1]) : std::nullopt;
    if (!mode || !parse_num(argv[2], req.pid) || !parse_num(argv[3], req.starttime) ||
        !parse_num(argv[4], req.daemon_tgid))
        return make_error(EINVAL, "usage: crfs-ckpt MODE PID STARTTIME DAEMON_TGID CREDS");
    auto creds = decode_creds(argv[5]);
    if (!creds) return std::unexpected(creds.error());
    if (*mode != WorkerMode::kImage) ::close(kWorkerImageFd);
    if (auto ok = assume_creds(*creds); !ok) return std::unexpected(ok.error());
    if (auto ok = check_access(req.pid, req.starttime); !ok) return std::unexpected(ok.error());
    switch (*mode) {
        case WorkerMode::kAccess:
            return std::string();
        case WorkerMode::kReasons:
            return reasons(req.pid, req.daemon_tgid);
        case WorkerMode::kImage:
            return image(req.pid, req.starttime, req.daemon_tgid);
    }
    return make_error(EINVAL, "unknown mode");
}

}  // namespace
}  // namespace crfs

int main(int argc, char** argv) {
    // Nothing of the daemon's but the image memfd and the reply pipe.
    ::close_range(crfs::kWorkerReplyFd + 1, ~0u, 0);
    // The daemon may die at any moment: a closed reply pipe must not kill us
    // mid-checkpoint (the task would keep injected registers).
    // Polite signals (a terminal, a service manager stopping everything) wait
    // until the task is let go; only SIGKILL cuts a checkpoint short, and only
    // root or the caller itself (whose own task it is) can send that.
    for (int sig : {SIGPIPE, SIGHUP, SIGINT, SIGQUIT, SIGTERM}) ::signal(sig, SIG_IGN);
    // The daemon's log: its stderr (fd 2, inherited) in the foreground, else syslog.
    crfs::log_init(::getenv(crfs::kLogToSyslogEnv) == nullptr, false, "crfs-ckpt");
    crfs::send_worker_reply(crfs::serve(argc, argv));
    // _exit: nothing is left to flush, and an at-exit leak check (ASan builds)
    // would need to ptrace this process, which is non-dumpable by design.
    ::_exit(0);
}
