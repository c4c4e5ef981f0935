// tty: a shell job's controlling terminal (state/tty.h has the story).
#include "state/tty.h"

#include <fcntl.h>
#include <linux/ioctl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "checkpoint/files.h"
#include "common/strfmt.h"
#include "state/inet.h"  // grab_fd
#include "state/kobj.h"
#include "state/tree.h"
#include "state/unix_socket.h"  // as_task

namespace crfs::state {
namespace {

// The kernel's struct termios2 (TCGETS2/TCSETS2: flags, line, control
// characters and both speeds); glibc's termios.h does not have it.
struct Termios2 {
    uint32_t iflag, oflag, cflag, lflag;
    uint8_t line;
    uint8_t cc[19];
    uint32_t ispeed, ospeed;
};
static_assert(sizeof(Termios2) == 44);
constexpr unsigned long kTcgets2 = _IOR('T', 0x2A, Termios2);
constexpr unsigned long kTcsets2 = _IOW('T', 0x2B, Termios2);

// Bits the kernel defines for x86-64 (include/uapi/asm-generic/termbits.h).
constexpr uint32_t kIflags = 077777;                                          // IGNBRK .. IUTF8
constexpr uint32_t kOflags = 0177777;                                         // OPOST .. FFDLY
constexpr uint32_t kLflags = 0377777;                                         // ISIG .. EXTPROC
constexpr uint32_t kCflags = 0010017 | 07760 | 002003600000 | 030000000000u;  // CBAUD .. CRTSCTS
constexpr uint32_t kMaxSpeed = 100'000'000;
constexpr uint32_t kMaxIndex = 1u << 20;

const dev_t kDevTty = makedev(5, 0);

// Terminals by major (and minor), in the words of a reason.
struct Terminal {
    unsigned major;
    int minor;  // -1: any
    const char* what;
};
constexpr Terminal kTerminals[] = {
    {5, 0, "the controlling terminal"},
    {5, 1, "the system console"},
    {5, 2, "a pseudo-terminal master"},
    {4, -1, "a virtual console or serial port"},
    {2, -1, "a BSD pseudo-terminal master"},
    {3, -1, "a BSD pseudo-terminal slave"},
    {166, -1, "a USB modem (ACM)"},
    {188, -1, "a USB serial port"},
    {204, -1, "a serial port"},
    {229, -1, "a hypervisor console"},
};

const char* terminal_what(dev_t rdev) {
    if (is_pty_slave(rdev)) return "a pseudo-terminal slave";
    for (const auto& t : kTerminals)
        if (t.major == major(rdev) && (t.minor < 0 || unsigned(t.minor) == minor(rdev)))
            return t.what;
    return nullptr;
}

std::string dev_text(dev_t d) {
    return strfmt("{}:{}", major(d), minor(d));
}

// --- detect ----------------------------------------------------------------

bool match_tty(const FdView& f) {
    return S_ISCHR(f.st.st_mode) && f.st.st_rdev != kDevTty && terminal_what(f.st.st_rdev);
}
bool match_dev_tty(const FdView& f) {
    return S_ISCHR(f.st.st_mode) && f.st.st_rdev == kDevTty;
}

dev_t task_ctty(TaskView& t) {
    auto st = t.stat();
    return st ? ctty_device((*st)->tty_nr) : 0;
}

std::optional<std::string> detect_tty_fd(TaskView& t, const FdView& f) {
    dev_t r = f.st.st_rdev;
    if (!is_pty_slave(r))
        return strfmt("terminal {} ({}: {}){}", f.link, dev_text(r), terminal_what(r), kNotYet);
    dev_t ctty = task_ctty(t);
    if (ctty != r)
        return strfmt(
            "pseudo-terminal {} that is not the controlling terminal of the task's "
            "session (that is {}){}",
            f.link, ctty ? dev_text(ctty) : "none", kNotYet);
    return std::nullopt;
}

// The terminal a /dev/tty fd opened (TIOCGDEV asks the real one).
Result<dev_t> dev_tty_target(pid_t pid, int fd) {
    auto copy = grab_fd(pid, fd);
    if (!copy) return std::unexpected(copy.error());
    unsigned dev = 0;
    if (ioctl(copy->get(), TIOCGDEV, &dev) < 0) return errno_error(strfmt("fd {}: TIOCGDEV", fd));
    return ctty_device(int(dev));
}

std::optional<std::string> detect_dev_tty(TaskView& t, const FdView& f) {
    auto real = dev_tty_target(t.pid(), f.fd);
    if (!real) return "/dev/tty whose terminal cannot be read (" + real.error().what + ")";
    if (!is_pty_slave(*real))
        return strfmt("/dev/tty of terminal {} ({}){}", dev_text(*real),
                      terminal_what(*real) ? terminal_what(*real) : "unknown", kNotYet);
    if (*real != task_ctty(t))
        return strfmt(
            "/dev/tty of pseudo-terminal {}, which is no longer the controlling "
            "terminal of the task's session{}",
            dev_text(*real), kNotYet);
    return std::nullopt;
}

// The controlling terminal of a task that holds no fd on it, a pty slave:
// /proc/PID/root/dev/pts/N (the task's view of devpts) opened with the task's
// effective ids (the kernel decides), checked to be that device.
Result<UniqueFd> open_ctty(pid_t pid, dev_t ctty) {
    unsigned index = (major(ctty) - 136) << 20 | minor(ctty);
    std::string what = strfmt(
        "controlling terminal /dev/pts/{} ({}), which no fd of the image "
        "holds,",
        index, dev_text(ctty));
    auto status = read_status(pid);
    if (!status) return std::unexpected(status.error());
    std::string path = strfmt("/proc/{}/root/dev/pts/{}", pid, index);
    int fd = -1;
    int e = as_task(status->uid[1], status->gid[1], [&] {
        fd = ::open(path.c_str(), O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
        return fd < 0 ? errno : 0;
    });
    UniqueFd term(fd);
    if (e)
        return make_error(e, strfmt("{} cannot be opened by its path with the task's ids ({}), "
                                    "which crfs reads its settings through; such a terminal{}",
                                    what, std::strerror(e), kNotYet));
    struct stat st {};
    if (fstat(term.get(), &st) < 0 || !S_ISCHR(st.st_mode) || st.st_rdev != ctty)
        return make_error(
            ESTALE, strfmt("{} is another device at its path; such a terminal{}", what, kNotYet));
    return term;
}

// --- restore (stage 1 of the fds) -------------------------------------------

Status check_fd(const FdEntry& f, const DecodedImage&) {
    if (!f.kobj.empty()) return kobj_bad(f, "records for a terminal fd");
    return {};
}

Status plan_fd(const FdEntry& f, KobjPlan& p) {
    p.flags = int(f.rec.open_flags);
    return {};  // restorer/tty.cc names the terminal (path, dev)
}

// The new terminal reopened (kind 41: /proc/self/fd/N of the daemon's copy)
// or /dev/tty (kind 42), checked to be the restore's terminal.
int make_fd(const KobjPlan& p, const char* path, KobjFail& fail) {
    int fd = ::open(path, p.flags | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        fail = {CRFS_RA_STEP_OPEN_FD, errno, 0};
        return -1;
    }
    dev_t real = 0;
    struct stat st {};
    unsigned dev = 0;
    if (p.kind == uint32_t(image::FdKind::kDevTty) ? ioctl(fd, TIOCGDEV, &dev) == 0
                                                   : fstat(fd, &st) == 0)
        real = p.kind == uint32_t(image::FdKind::kDevTty) ? ctty_device(int(dev)) : st.st_rdev;
    if (real != p.dev) {
        fail = {CRFS_RA_STEP_FD_TYPE, ESTALE, 0};
        ::close(fd);
        return -1;
    }
    return fd;
}

Status dump_fd(pid_t, const FdView&, TaskFd&) {
    return {};  // flags: the fd record; the terminal: dump_tty
}

// --- the task level ---------------------------------------------------------

// Whether fds of the task are on its controlling terminal (or /dev/tty).
bool holds_terminal(const std::vector<FdView>& fds, dev_t ctty) {
    return std::any_of(fds.begin(), fds.end(), [&](const FdView& f) {
        return S_ISCHR(f.st.st_mode) && (f.st.st_rdev == ctty || f.st.st_rdev == kDevTty);
    });
}

// Whether a process of the image other than the task holds `ctty` (an fd
// on it): that process's own detect speaks for the terminal then.
bool image_holds(TaskView& t, const std::vector<pid_t>& pids, dev_t ctty) {
    for (pid_t p : pids) {
        if (p == t.pid()) continue;
        TaskView v(p, t.self_tgid());
        if (auto fds = v.fds(); fds && holds_terminal(**fds, ctty)) return true;
    }
    return false;
}

// Session and groups: what a new terminal gives back.
void session_reasons(TaskView& t, const ProcStat& st, Reasons& out) {
    std::vector<pid_t> pids = t.image_pids();
    if (pids.empty()) pids = tree_pids(t.pid());
    pid_t root = pids.front();
    ProcStat rs = st;
    if (root != t.pid()) {
        auto r = read_stat(root);
        if (!r) return;  // gone: the tree's reasons say so
        rs = *r;
    }
    if (rs.session != st.session) {
        out.push_back(
            strfmt("tty: its controlling terminal {} is session {}'s, not the image "
                   "root's (session {}): only the root's session's terminal comes "
                   "back{}",
                   dev_text(ctty_device(st.tty_nr)), st.session, rs.session, kNotYet));
        return;
    }
    if (rs.session != root && rs.pgrp != root)
        out.push_back(
            strfmt("tty: the image's root (pid {}) leads neither its session nor its "
                   "process group; on a new terminal it leads a session, and with it a "
                   "group, of its own{}",
                   root, kNotYet));
    pid_t fg = st.tpgid;
    bool made = fg > 0 && fg == rs.pgrp;
    if (!made && fg > 0 && std::find(pids.begin(), pids.end(), fg) != pids.end()) {
        auto leader = read_stat(fg);
        made = leader && leader->pgrp == fg && leader->state != 'Z';
    }
    if (!made)
        out.push_back(
            strfmt("tty: the terminal's foreground process group ({}) is not one the "
                   "image leads (a background job){}",
                   fg, kNotYet));
}

// What the terminal holds that a new one would not.
void terminal_reasons(int fd, Reasons& out) {
    int n = 0;
    if (ioctl(fd, FIONREAD, &n) == 0 && n > 0)
        out.push_back(
            strfmt("tty: the terminal holds {} bytes of input the task has not read "
                   "(a new terminal would not){}",
                   n, kNotYet));
    int ld = 0;
    if (ioctl(fd, TIOCGETD, &ld) == 0 && ld != 0)
        out.push_back(strfmt("tty: line discipline {}{}", ld, kNotYet));
    int excl = 0;
    if (ioctl(fd, TIOCGEXCL, &excl) == 0 && excl)
        out.push_back(strfmt("tty: exclusive mode (TIOCEXCL){}", kNotYet));
    char locked[64] = {};
    char zero[sizeof locked] = {};
    if (ioctl(fd, TIOCGLCKTRMIOS, locked) == 0 && std::memcmp(locked, zero, sizeof locked) != 0)
        out.push_back(strfmt("tty: locked termios (TIOCSLCKTRMIOS){}", kNotYet));
}

}  // namespace

const KobjKind kTtyKind = {image::FdKind::kTty,
                           "tty",
                           match_tty,
                           detect_tty_fd,
                           dump_fd,
                           check_fd,
                           plan_fd,
                           make_fd,
                           nullptr};
const KobjKind kDevTtyKind = {image::FdKind::kDevTty,
                              "/dev/tty",
                              match_dev_tty,
                              detect_dev_tty,
                              dump_fd,
                              check_fd,
                              plan_fd,
                              make_fd,
                              nullptr};

bool is_pty_slave(dev_t rdev) {
    return major(rdev) >= 136 && major(rdev) <= 143;
}

bool on_shell_terminal(const FdView& f) {
    return S_ISCHR(f.st.st_mode) && (is_pty_slave(f.st.st_rdev) || f.st.st_rdev == kDevTty);
}

dev_t ctty_device(int tty_nr) {
    if (tty_nr == 0) return 0;
    auto v = unsigned(tty_nr);  // new_encode_dev
    return makedev((v >> 8) & 0xfff, (v & 0xff) | ((v >> 12) & 0xfff00));
}

Status detect_tty(TaskView& t, Reasons& out) {
    auto st = t.stat();
    if (!st) return std::unexpected(st.error());
    auto fds = t.fds();
    if (!fds) return std::unexpected(fds.error());
    dev_t ctty = ctty_device((*st)->tty_nr);
    if (!ctty) return {};
    if (!holds_terminal(**fds, ctty)) {
        // A controlling terminal and no fd on it (`prog </dev/null >/dev/null
        // &`): on a new terminal too when the image holds none, else a reason.
        std::vector<pid_t> pids = t.image_pids();
        if (pids.empty()) pids = tree_pids(t.pid());
        if (image_holds(t, pids, ctty)) return {};
        if (pids.front() != t.pid())
            if (auto root = read_stat(pids.front()); root && root->tty_nr == (*st)->tty_nr)
                return {};  // the root has it too: its detect speaks for the session
        if (!is_pty_slave(ctty)) {
            out.push_back(strfmt(
                "tty: controlling terminal {} ({}) that no fd of the image "
                "holds; restored, the task would have none; such a terminal{}",
                dev_text(ctty), terminal_what(ctty) ? terminal_what(ctty) : "unknown", kNotYet));
            return {};
        }
        auto term = open_ctty(t.pid(), ctty);
        if (!term) {
            out.push_back("tty: " + term.error().what);
            return {};
        }
        session_reasons(t, **st, out);
        terminal_reasons(term->get(), out);
        return {};
    }
    if (!is_pty_slave(ctty)) return {};  // its fds' kind refuses them
    session_reasons(t, **st, out);
    for (const FdView& f : **fds) {
        if (!S_ISCHR(f.st.st_mode) || (f.st.st_rdev != ctty && f.st.st_rdev != kDevTty)) continue;
        auto copy = grab_fd(t.pid(), f.fd);
        if (!copy) continue;  // closed meanwhile
        terminal_reasons(copy->get(), out);
        break;
    }
    return {};
}

Result<std::optional<image::TtyRecord>> dump_tty(pid_t pid, const ProcStat& st,
                                                 const std::vector<TaskFd>& fds) {
    const TaskFd* on = nullptr;
    for (const TaskFd& f : fds)
        if (f.rec.kind == uint32_t(image::FdKind::kTty) ||
            (!on && f.rec.kind == uint32_t(image::FdKind::kDevTty)))
            on = &f;
    dev_t ctty = ctty_device(st.tty_nr);
    if (!on && !is_pty_slave(ctty)) return std::nullopt;  // detect_tty: no terminal or a reason
    auto copy = on ? grab_fd(pid, on->rec.fd) : open_ctty(pid, ctty);
    if (!copy) return std::unexpected(copy.error());
    std::string at = on ? strfmt("fd {}", on->rec.fd) : std::string("no fd");
    Termios2 tio{};
    winsize ws{};
    if (ioctl(copy->get(), kTcgets2, &tio) < 0)
        return errno_error(at + ": TCGETS2 of the terminal");
    if (ioctl(copy->get(), TIOCGWINSZ, &ws) < 0)
        return errno_error(at + ": TIOCGWINSZ of the terminal");
    image::TtyRecord r{};
    r.fg_pgid = st.tpgid;
    r.sid = st.session;
    r.index = (major(ctty) - 136) << 20 | minor(ctty);
    r.iflag = tio.iflag, r.oflag = tio.oflag, r.cflag = tio.cflag, r.lflag = tio.lflag;
    r.line = tio.line;
    std::memcpy(r.cc, tio.cc, sizeof r.cc);
    r.ispeed = tio.ispeed, r.ospeed = tio.ospeed;
    r.rows = ws.ws_row, r.cols = ws.ws_col, r.xpixel = ws.ws_xpixel, r.ypixel = ws.ws_ypixel;
    return r;
}

Status check_tty(const DecodedImage& img, uint32_t tree_index) {
    auto bad = [](const std::string& what) {
        return make_error(EINVAL, "image field out of range: tty: " + what);
    };
    bool on_terminal = std::any_of(img.fds.begin(), img.fds.end(), [](const FdEntry& f) {
        return f.rec.kind == uint32_t(image::FdKind::kTty) ||
               f.rec.kind == uint32_t(image::FdKind::kDevTty);
    });
    if (!img.tty) {
        if (on_terminal && tree_index == 0)
            return bad("fds on a terminal in an image without its tty record");
        return {};
    }
    if (tree_index > 0) return bad(strfmt("a tty record in process {}'s records", tree_index));
    const auto& r = *img.tty;
    if (r.flags || r.reserved)
        return bad(strfmt("flags 0x{:x}, reserved 0x{:x}", r.flags, r.reserved));
    if (r.line != 0) return bad(strfmt("line discipline {}", r.line));
    if ((r.iflag & ~kIflags) || (r.oflag & ~kOflags) || (r.cflag & ~kCflags) ||
        (r.lflag & ~kLflags))
        return bad(
            strfmt("termios flags 0{:o} 0{:o} 0{:o} 0{:o}", r.iflag, r.oflag, r.cflag, r.lflag));
    if (r.ispeed > kMaxSpeed || r.ospeed > kMaxSpeed || r.index >= kMaxIndex)
        return bad(strfmt("speeds {} {}, index {}", r.ispeed, r.ospeed, r.index));
    const auto& t = img.task;
    if (t.sid != t.pid && t.pgid != t.pid)
        return bad(strfmt("its root (pid {}) leads neither its session nor its group", t.pid));
    // The foreground group: the root's, or one a live process of the tree leads.
    bool made = r.fg_pgid == t.pgid;
    for (const auto& p : img.processes)
        made |= r.fg_pgid > 0 && p.pid == r.fg_pgid && p.pgid == p.pid &&
                !(p.flags & image::kProcessZombie);
    if (!made)
        return bad(strfmt("foreground process group {}, which the tree does not lead", r.fg_pgid));
    return {};
}

std::optional<KobjFail> child_tty(const TtyPlan& p) {
    if (p.terminal < 0) return std::nullopt;
    const auto& r = p.rec;
    if (p.take) {
        // Settings first: a new size once the terminal has a foreground group
        // would queue a SIGWINCH the task never had.
        Termios2 tio{r.iflag, r.oflag, r.cflag, r.lflag, r.line, {}, r.ispeed, r.ospeed};
        std::memcpy(tio.cc, r.cc, sizeof tio.cc);
        if (ioctl(p.terminal, kTcsets2, &tio) < 0)
            return KobjFail{CRFS_RA_STEP_TTY_TERMIOS, errno, 0};
        winsize ws{r.rows, r.cols, r.xpixel, r.ypixel};
        if (ioctl(p.terminal, TIOCSWINSZ, &ws) < 0)
            return KobjFail{CRFS_RA_STEP_TTY_WINSIZE, errno, 0};
        if (ioctl(p.terminal, TIOCSCTTY, 0) < 0) return KobjFail{CRFS_RA_STEP_TTY_CTTY, errno, 0};
    }
    if (p.set_fg) {
        pid_t g = pid_t(syscall(SYS_getpgid, 0));
        if (ioctl(p.terminal, TIOCSPGRP, &g) < 0)
            return KobjFail{CRFS_RA_STEP_TTY_FG, errno, uint64_t(g)};
    }
    return std::nullopt;
}

std::string tty_step_text(int step, uint64_t arg) {
    switch (step) {
        case CRFS_RA_STEP_TTY_CTTY:
            return "making the writer's terminal the controlling terminal of the job's session "
                   "(TIOCSCTTY: is it another session's? restore a shell job with `crfs restore "
                   "--shell-job IMAGE`)";
        case CRFS_RA_STEP_TTY_TERMIOS:
            return "setting the terminal's termios (TCSETS2)";
        case CRFS_RA_STEP_TTY_WINSIZE:
            return "setting the terminal's window size (TIOCSWINSZ)";
        case CRFS_RA_STEP_TTY_FG:
            return strfmt("making process group {} the terminal's foreground group (TIOCSPGRP)",
                          arg);
    }
    return strfmt("tty step {}", step);
}

}  // namespace crfs::state
