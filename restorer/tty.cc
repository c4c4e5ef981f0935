#include "restorer/tty.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>

#include "common/procfs.h"
#include "common/strfmt.h"
#include "restorer/writer.h"

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif

namespace crfs {
namespace {

constexpr const char* kHint =
    "restore a shell job with `crfs restore --shell-job IMAGE`, which makes a new terminal "
    "for it and relays it";

bool on_terminal(uint32_t kind) {
    return kind == uint32_t(image::FdKind::kTty) || kind == uint32_t(image::FdKind::kDevTty);
}

// The writer's standard input, taken as the writer (the kernel's ptrace rule
// for pidfd_getfd), when it is a terminal a job may take.
Result<UniqueFd> take_terminal(const RestoreRequest& req, const image::TtyRecord& rec) {
    std::string what = strfmt("image of a shell job (on /dev/pts/{} at the checkpoint)", rec.index);
    pid_t w = req.writer_pid > 0 ? req.writer_pid : getpid();
    UniqueFd pidfd(int(syscall(SYS_pidfd_open, w, PIDFD_THREAD)));
    if (!pidfd && errno == EINVAL) pidfd.reset(int(syscall(SYS_pidfd_open, w, 0)));
    if (!pidfd) return errno_error(strfmt("{}: pidfd_open of the writer (thread {})", what, w));
    WriterPlan as;
    as.as_writer = !req.writer_is_root;
    as.uid = req.writer_uid;
    as.gid = req.writer_gid;
    UniqueFd term;
    auto took = as_writer(as, [&]() -> Status {
        term.reset(int(syscall(SYS_pidfd_getfd, pidfd.get(), 0, 0)));
        if (!term) return errno_error("taking the writer's standard input (pidfd_getfd)");
        return {};
    });
    if (!took) return std::unexpected(took.error().context(what));
    struct stat st {};
    if (fstat(term.get(), &st) < 0) return errno_error(what + ": fstat of the writer's terminal");
    if (!S_ISCHR(st.st_mode) || !state::is_pty_slave(st.st_rdev))
        return make_error(ENOTTY, strfmt("{}: the writer's standard input is not a "
                                         "pseudo-terminal; {}",
                                         what, kHint));
    auto ws = read_stat(w);
    if (ws && state::ctty_device(ws->tty_nr) == st.st_rdev)
        return make_error(EBUSY, strfmt("{}: the writer's standard input is the controlling "
                                        "terminal of the writer's own session (a shell's), "
                                        "which a job cannot take; {}",
                                        what, kHint));
    return term;
}

}  // namespace

Result<RestoreRequest> tty_request(const RestoreRequest& req, const DecodedImage& img,
                                   UniqueFd& own) {
    if (auto s = state::check_tty(img, req.tree_index); !s) return std::unexpected(s.error());
    RestoreRequest out = req;
    if (req.tree || !img.tty) return out;  // a member: the root's run took it
    auto term = take_terminal(req, *img.tty);
    if (!term) return std::unexpected(term.error());
    own = std::move(*term);
    out.terminal_fd = own.get();
    out.terminal_fg = img.tty->fg_pgid;
    return out;
}

Result<state::TtyPlan> plan_tty(const RestoreRequest& req, const DecodedImage& img, FdPlan& fds,
                                int min_fd) {
    state::TtyPlan p;
    p.terminal = req.terminal_fd;
    auto fd = std::find_if(fds.actions.begin(), fds.actions.end(),
                           [](const FdAction& a) { return on_terminal(a.kobj.kind); });
    if (p.terminal < 0) {
        if (fd != fds.actions.end())
            return make_error(EINVAL, strfmt("bad image: fd {} is on a terminal, and the image's "
                                             "root records none",
                                             fd->target));
        return p;
    }
    p.take = img.tty.has_value();  // the root (check_tty: only its records hold one)
    if (img.tty) p.rec = *img.tty;
    p.set_fg = img.task.pid == req.terminal_fg && img.task.pgid == img.task.pid;
    if (fd == fds.actions.end()) return p;
    struct stat st {};
    if (fstat(p.terminal, &st) < 0) return errno_error("fstat of the writer's terminal");
    int copy = fcntl(p.terminal, F_DUPFD_CLOEXEC, min_fd);
    if (copy < 0) return errno_error("dup of the writer's terminal");
    fds.copies.emplace_back(copy);
    for (FdAction& a : fds.actions) {
        if (!on_terminal(a.kobj.kind)) continue;
        a.path = a.kobj.kind == uint32_t(image::FdKind::kTty) ? strfmt("/proc/self/fd/{}", copy)
                                                              : std::string("/dev/tty");
        a.kobj.dev = st.st_rdev;
    }
    return p;
}

}  // namespace crfs
