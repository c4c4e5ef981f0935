#include "tests/support/harness.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#ifndef CRFSD_PATH
#error "CRFSD_PATH must name the crfsd binary"
#endif

namespace crfs::test {
namespace {

using Clock = std::chrono::steady_clock;

// Waits for `pid` until `deadline`; true if reaped (status in *st).
bool wait_pid_until(pid_t pid, int* st, Clock::time_point deadline) {
    for (;;) {
        pid_t r = ::waitpid(pid, st, WNOHANG);
        if (r == pid) return true;
        if (r < 0 && errno != EINTR) return true;
        if (Clock::now() >= deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
}

// Whatever the test runner inherited (fds of the CI shell, say) must not
// leak into tasks whose fds the tests inspect.
void close_inherited_fds() {
    ::close_range(3, ~0U, 0);
}

void redirect_std_to_devnull() {
    int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::dup2(null, 2);
    close_inherited_fds();
}

}  // namespace

ShellResult sh(const std::string& cmd, std::chrono::milliseconds timeout) {
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) < 0 || ::pipe2(err, O_CLOEXEC) < 0) return {};
    pid_t pid = ::fork();
    if (pid == 0) {
        ::setpgid(0, 0);
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        int null = ::open("/dev/null", O_RDONLY);
        ::dup2(null, 0);
        ::dup2(out[1], 1);
        ::dup2(err[1], 2);
        close_inherited_fds();
        ::execl("/bin/sh", "sh", "-c", cmd.c_str(), nullptr);
        ::_exit(127);
    }
    ::close(out[1]);
    ::close(err[1]);
    ShellResult res;
    auto deadline = Clock::now() + timeout;
    pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
    int open_pipes = 2;
    bool timed_out = false;
    while (open_pipes > 0) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) {
            timed_out = true;
            break;
        }
        int n = ::poll(fds, 2, static_cast<int>(left.count()));
        if (n < 0 && errno == EINTR) continue;
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char buf[4096];
            ssize_t r = ::read(fds[i].fd, buf, sizeof buf);
            if (r <= 0) {
                ::close(fds[i].fd);
                fds[i].fd = -1;
                --open_pipes;
            } else {
                (i == 0 ? res.out : res.err).append(buf, static_cast<size_t>(r));
            }
        }
    }
    for (auto& f : fds)
        if (f.fd >= 0) ::close(f.fd);
    int st = 0;
    if (timed_out || !wait_pid_until(pid, &st, deadline)) {
        ::kill(-pid, SIGKILL);
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &st, 0);
        res.status = -1;
        res.err += "[timed out after " + std::to_string(timeout.count()) + " ms]";
        return res;
    }
    res.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return res;
}

bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    while (!cond()) {
        if (Clock::now() >= deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
}

pid_t spawn(const std::vector<std::string>& argv) {
    pid_t pid = ::fork();
    if (pid == 0) {
        ::setpgid(0, 0);
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        redirect_std_to_devnull();
        std::vector<char*> args;
        for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        ::execvp(args[0], args.data());
        ::_exit(127);
    }
    return pid;
}

void kill_and_reap(pid_t pid) {
    if (pid <= 0) return;
    ::kill(pid, SIGKILL);
    int st;
    ::waitpid(pid, &st, 0);
}

TempDir::TempDir() {
    char tmpl[] = "/tmp/crfs-test.XXXXXX";
    if (char* d = ::mkdtemp(tmpl)) {
        path_ = d;
        ::chmod(d, 0755);
    }
}

TempDir::~TempDir() {
    if (!path_.empty()) sh("rm -rf '" + path_ + "'");
}

bool is_mounted(const std::string& path) {
    std::ifstream in("/proc/self/mountinfo");
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream f(line);
        std::string id, parent, dev, root, mp;
        f >> id >> parent >> dev >> root >> mp;
        if (mp == path) return true;
    }
    return false;
}

MountedCrfs::MountedCrfs()
    : mnt_(dir_.path() + "/mnt"), state_(dir_.path() + "/state"), log_(dir_.path() + "/crfsd.log") {
    ::mkdir(mnt_.c_str(), 0755);
    start();
}

bool MountedCrfs::start() {
    pid_t pid = ::fork();
    if (pid == 0) {
        // The daemon unmounts on SIGTERM: if this test process dies, so does the mount.
        ::prctl(PR_SET_PDEATHSIG, SIGTERM);
        int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        int null = ::open("/dev/null", O_RDONLY);
        ::dup2(null, 0);
        ::dup2(fd, 1);
        ::dup2(fd, 2);
        close_inherited_fds();
        ::execl(CRFSD_PATH, "crfsd", "-f", "-o", ("state_dir=" + state_).c_str(), mnt_.c_str(),
                nullptr);
        ::_exit(127);
    }
    daemon_ = pid;
    if (!wait_until([&] {
            int st;
            if (::waitpid(pid, &st, WNOHANG) == pid) {
                daemon_ = -1;
                return true;
            }
            return is_mounted(mnt_);
        }) ||
        daemon_ < 0) {
        stop();
        return false;
    }
    return true;
}

void MountedCrfs::stop() {
    if (daemon_ > 0) {
        ::kill(daemon_, SIGTERM);
        int st;
        if (!wait_pid_until(daemon_, &st, Clock::now() + std::chrono::seconds(10))) {
            ::kill(daemon_, SIGKILL);
            ::waitpid(daemon_, &st, 0);
        }
        daemon_ = -1;
    }
    if (is_mounted(mnt_)) ::umount2(mnt_.c_str(), MNT_DETACH);
}

bool MountedCrfs::restart() {
    stop();
    return start();
}

MountedCrfs::~MountedCrfs() {
    stop();
}

std::string MountedCrfs::log() const {
    std::ifstream in(log_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace crfs::test
