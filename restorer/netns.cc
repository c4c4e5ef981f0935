#include "restorer/netns.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>

#include "common/io.h"
#include "common/strfmt.h"
#include "crfs/restorer_args.h"
#include "restorer/child.h"

namespace crfs {

namespace {
constexpr uint64_t kStepNetns = 6;  // CRFS_RA_STEP_WRITER_CONTEXT's arg: the network namespace
}

namespace {

Result<UniqueFd> open_writer_netns(pid_t tid) {
    if (tid <= 0) return UniqueFd();
    auto theirs = open_fd(strfmt("/proc/{}/ns/net", tid), O_RDONLY | O_CLOEXEC);
    if (!theirs) return std::unexpected(theirs.error().context("the writer's network namespace"));
    struct stat a {
    }, b{};
    if (fstat(theirs->get(), &a) != 0 || stat("/proc/thread-self/ns/net", &b) != 0)
        return errno_error("stat of a network namespace");
    if (a.st_dev == b.st_dev && a.st_ino == b.st_ino) return UniqueFd();
    return theirs;
}

Result<UniqueFd> copy_of(const UniqueFd& fd) {
    if (!fd) return UniqueFd();
    UniqueFd dup(fcntl(fd.get(), F_DUPFD_CLOEXEC, 0));
    if (!dup) return errno_error("dup of the writer's network namespace");
    return dup;
}

}  // namespace

Result<UniqueFd> writer_netns(pid_t tid, std::optional<UniqueFd>* shared) {
    if (shared && *shared) return copy_of(**shared);
    auto fd = open_writer_netns(tid);
    if (!fd || !shared) return fd;
    auto copy = copy_of(*fd);
    if (!copy) return std::unexpected(copy.error());
    shared->emplace(std::move(*copy));
    return fd;
}

Status in_netns(const UniqueFd& netns, const std::function<Status()>& fn) {
    if (!netns) return fn();
    Status out;
    std::thread t([&] {
        // setns of a network namespace is per thread: this one only.
        if (setns(netns.get(), CLONE_NEWNET) != 0) {
            out = errno_error("joining the writer's network namespace");
            return;
        }
        out = fn();
    });
    t.join();
    return out;
}

void child_join_netns(int netns_fd, int status_fd) {
    if (netns_fd < 0) return;
    if (setns(netns_fd, CLONE_NEWNET) != 0)
        child_fail(status_fd, CRFS_RA_STEP_WRITER_CONTEXT, errno, kStepNetns);
    ::close(netns_fd);
}

Result<RestoreNetlock> RestoreNetlock::take(const DecodedImage& img, const UniqueFd& netns,
                                            bool root) {
    RestoreNetlock l;
    if (!root) return l;
    if (netns) {
        UniqueFd dup(fcntl(netns.get(), F_DUPFD_CLOEXEC, 0));
        if (!dup) return errno_error("dup of the writer's network namespace");
        l.netns_ = std::make_shared<const UniqueFd>(std::move(dup));
    }
    for (const auto& e : img.inet)
        if (e.repair) l.conns_.push_back(state::locked_conn(e.rec, l.netns_));
    if (!l.conns_.empty())
        if (auto s = state::netlock_add(l.conns_); !s) {
            l.done_ = true;
            state::netlock_release(l.conns_, l.netns_, false);
            return std::unexpected(s.error().context("restore"));
        }
    return l;
}

void RestoreNetlock::restored() {
    if (!conns_.empty()) state::netlock_release(conns_, netns_, true);
    done_ = true;
}

RestoreNetlock::~RestoreNetlock() {
    if (!done_ && !conns_.empty()) state::netlock_release(conns_, netns_, false);
}

}  // namespace crfs
