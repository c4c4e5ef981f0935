#include "tools/shell_job.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <thread>

#include <fmt/core.h>

#include "common/io.h"
#include "tools/tree.h"

namespace crfs::tool {
namespace {

// How long the daemon may take to see the job's end after its terminal closed.
constexpr auto kStatusWait = std::chrono::seconds(10);

// Our terminal in raw mode while the job has it; as it was again after.
class RawTerminal {
  public:
    RawTerminal() {
        if (!isatty(0) || tcgetattr(0, &saved_) < 0) return;
        termios raw = saved_;
        cfmakeraw(&raw);
        on_ = tcsetattr(0, TCSANOW, &raw) == 0;  // keys typed ahead are the job's
    }
    ~RawTerminal() {
        if (on_) tcsetattr(0, TCSADRAIN, &saved_);
    }

  private:
    termios saved_{};
    bool on_ = false;
};

// Our window size onto the job's terminal (the kernel sends SIGWINCH to its
// foreground group when it changes).
void copy_winsize(int master) {
    winsize ws{};
    if (isatty(0) && ioctl(0, TIOCGWINSZ, &ws) == 0) ioctl(master, TIOCSWINSZ, &ws);
}

// "exited 3" -> 3, "killed by SIGHUP" -> 128 + 1; nullopt while it runs.
std::optional<int> ended_code(const std::string& status) {
    if (status.starts_with("exited ")) return std::atoi(status.c_str() + 7);
    if (status.starts_with("killed by SIG"))
        for (int s = 1; s < 65; ++s)
            if (const char* n = sigabbrev_np(s); n && status.substr(13) == n) return 128 + s;
    if (status.starts_with("killed by signal ")) return 128 + std::atoi(status.c_str() + 17);
    if (status.starts_with("ended")) return 0;
    return std::nullopt;
}

}  // namespace

Result<ShellPty> open_shell_pty() {
    ShellPty p;
    p.master.reset(posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!p.master) return errno_error("posix_openpt");
    if (grantpt(p.master.get()) < 0 || unlockpt(p.master.get()) < 0)
        return errno_error("unlocking the new pseudo-terminal");
    char name[64];
    if (ptsname_r(p.master.get(), name, sizeof name) != 0) return errno_error("ptsname");
    p.name = name;
    p.slave.reset(::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!p.slave) return errno_error("open " + p.name);
    termios ours{};
    if (isatty(0) && tcgetattr(0, &ours) == 0) tcsetattr(p.slave.get(), TCSANOW, &ours);
    copy_winsize(p.master.get());
    return p;
}

Result<int> write_as_terminal(const ShellPty& pty, const std::function<int()>& write) {
    pid_t child = fork();
    if (child < 0) return errno_error("fork");
    if (child == 0) {
        if (dup2(pty.slave.get(), 0) < 0) _exit(1);
        ::close(pty.master.get());
        _exit(write());
    }
    int st = 0;
    while (waitpid(child, &st, 0) < 0)
        if (errno != EINTR) return errno_error("waitpid");
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int relay_shell_job(ShellPty& pty, const std::string& slot, pid_t job) {
    // Ours while the job's root lives (it may hold no fd on it), then the
    // job's: its closing is the end.
    UniqueFd alive(job > 0 ? int(syscall(SYS_pidfd_open, job, 0)) : -1);
    if (!alive) pty.slave.reset();
    int master = pty.master.get();
    sigset_t sigs;
    sigemptyset(&sigs);
    for (int s : {SIGWINCH, SIGTERM, SIGHUP, SIGINT}) sigaddset(&sigs, s);
    sigprocmask(SIG_BLOCK, &sigs, nullptr);
    UniqueFd sfd(signalfd(-1, &sigs, SFD_CLOEXEC));
    int code = -1;
    {
        RawTerminal raw;
        copy_winsize(master);  // a job checkpointed at another size redraws (SIGWINCH)
        bool in_open = true;
        char buf[65536];
        while (code < 0) {
            pollfd p[4] = {{master, POLLIN, 0},
                           {sfd.get(), POLLIN, 0},
                           {alive.get(), POLLIN, 0},
                           {0, POLLIN, 0}};
            if (poll(p, in_open ? 4 : 3, -1) < 0) {
                if (errno == EINTR) continue;
                break;
            }
            if (p[2].revents) {  // the root ended: the terminal is its fds' now
                alive.reset();
                pty.slave.reset();
            }
            if (p[0].revents) {
                ssize_t n = ::read(master, buf, sizeof buf);
                if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
                if (n <= 0) break;  // EIO: every fd of the job's terminal is closed
                if (!write_full(1, buf, size_t(n))) in_open = false;
            }
            if (p[1].revents) {
                signalfd_siginfo si{};
                if (::read(sfd.get(), &si, sizeof si) == sizeof si) {
                    if (si.ssi_signo == SIGWINCH)
                        copy_winsize(master);
                    else
                        code = 128 + int(si.ssi_signo);  // our end closes: the job is hung up
                }
            }
            if (in_open && p[3].revents) {
                ssize_t n = ::read(0, buf, sizeof buf);
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0)
                    in_open = false;  // no more input; the job keeps its terminal
                else if (!write_full(master, buf, size_t(n)))
                    break;
            }
        }
    }
    if (code >= 0) return code;
    // The slot says how the job ended, once the daemon reaped it.
    auto until = std::chrono::steady_clock::now() + kStatusWait;
    for (;;) {
        auto status = read_status(slot);
        if (status)
            if (auto c = ended_code(*status)) return *c;
        if (std::chrono::steady_clock::now() > until) {
            fmt::print(stderr, "crfs restore: the job closed its terminal; {}\n",
                       status ? *status : status.error().what);
            return 0;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

}  // namespace crfs::tool
