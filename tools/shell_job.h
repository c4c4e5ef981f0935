// crfs restore --shell-job (docs/trees.md "Shell jobs"): a job that had a
// controlling terminal comes back on a NEW pseudo-terminal made here, as the
// user, and relayed to ours (like `criu restore --shell-job`, which stays in
// the foreground): the image is written by a child whose standard input is
// the new terminal's slave (the daemon takes the writer's standard input as
// the job's terminal), then our terminal goes raw and bytes flow both ways,
// window size changes too, until the job's side is closed.
#pragma once

#include <functional>
#include <string>

#include "common/result.h"
#include "common/unique_fd.h"

namespace crfs::tool {

struct ShellPty {
    UniqueFd master, slave;
    std::string name;  // /dev/pts/N
};

// A new pty, its slave opened without becoming our controlling terminal,
// sized like our terminal (when stdin is one).
Result<ShellPty> open_shell_pty();

// Runs `write` in a child whose standard input is the pty's slave; its exit
// status (write's return value) is returned.
Result<int> write_as_terminal(const ShellPty& pty, const std::function<int()>& write);

// Relays our stdin/stdout and the pty's master until the job's side closes
// (EIO), with our terminal raw meanwhile, then waits (bounded) for the slot's
// status to say how the job ended. Our slave stays open while the job's root
// `job` lives (a job with no fd on its controlling terminal still has it:
// /dev/tty), then is closed. Returns crfs's exit code: the job's exit status,
// 128 + its signal, or 0 when the job closed the terminal and runs on.
int relay_shell_job(ShellPty& pty, const std::string& slot, pid_t job);

}  // namespace crfs::tool
