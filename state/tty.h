// tty (issue 10, docs/trees.md "Shell jobs"): a job started from an
// interactive shell, with fds on its session's controlling terminal (a
// pseudo-terminal slave) and on /dev/tty. It comes back on a NEW terminal
// that `crfs restore --shell-job` makes and relays, as the controlling
// terminal of the root's session, with the termios, window size and
// foreground process group it had.
//
//   detect   fd level (kobj kinds 41 and 42): a terminal that is not the
//            session's controlling pseudo-terminal (a ptmx master, a vt or
//            serial port, another pty's slave, /dev/tty of another terminal)
//            is a reason naming it; task level (detect_tty, the registry):
//            the session and groups a new terminal cannot give back (the
//            root leading neither its session nor its group, a background
//            job, another session's terminal), unread input, a line
//            discipline, exclusive mode or locked termios;
//   dump     the fd kinds (flags in the fd record) and one tty record of the
//            terminal (termios2, window size, foreground group) in the
//            root's records; a job with no fd on its controlling pty reads
//            it through /proc/PID/root/dev/pts/N opened with its ids;
//   restore  restorer/tty.h takes the writer's terminal (its standard input,
//            pidfd_getfd as the writer) and plans; stage 1 of the root:
//            setsid, termios, window size, TIOCSCTTY (never forced), before
//            it clones its children; the process leading the foreground
//            group sets it (TIOCSPGRP); each fd reopens the new terminal
//            (through /proc/self/fd of the daemon's copy) or /dev/tty.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "common/image_reader.h"
#include "common/procfs.h"
#include "common/result.h"
#include "crfs/image_format.h"
#include "state/kind.h"
#include "state/kobj.h"

namespace crfs {
struct TaskFd;
}

namespace crfs::state {

// A UNIX 98 pseudo-terminal slave (/dev/pts/N: majors 136-143).
bool is_pty_slave(dev_t rdev);
// An fd on a pty slave or /dev/tty: restored on a new terminal (never shared
// with the shell that keeps the old one).
bool on_shell_terminal(const FdView& f);
// The controlling terminal of /proc/<pid>/stat's tty_nr (0: none).
dev_t ctty_device(int tty_nr);

// The terminal record of a process whose fds `fds` (checkpoint/files.cc) hold
// its terminal, read through one of them while it is frozen, or through its
// controlling pty opened by its path when none does; nullopt when it has no
// controlling pty and no fd on a terminal.
Result<std::optional<image::TtyRecord>> dump_tty(pid_t pid, const ProcStat& st,
                                                 const std::vector<TaskFd>& fds);

// Hostile images: the tty record (only in the root's records, every field in
// range, its foreground group one the tree makes) and every fd on the
// terminal having it.
Status check_tty(const DecodedImage& img, uint32_t tree_index);

// What stage 1 of one process does with the terminal.
struct TtyPlan {
    int terminal = -1;    // the daemon's copy of the writer's terminal (every clone has it)
    bool take = false;    // the root: TIOCSCTTY, termios, window size (it leads its session)
    bool set_fg = false;  // this process leads the foreground group: TIOCSPGRP
    image::TtyRecord rec{};
};

// Stage 1, right after the session and group, before the children: syscalls
// only; the step that failed, if one did.
std::optional<KobjFail> child_tty(const TtyPlan& p);

// Words for a failed CRFS_RA_STEP_TTY_* step.
std::string tty_step_text(int step, uint64_t arg);

}  // namespace crfs::state
