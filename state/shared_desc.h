// Open file descriptions shared with a process outside the image.
//
// One open file description (a struct file: offset, status flags) may be
// held by several processes: `(a; b) >log` (the subshell keeps the log
// while a runs), a parent that still holds the file it redirected its child
// to, an fd passed by SCM_RIGHTS. crfs restores a description as the
// restored task's own, so such an fd would silently stop being shared: the
// other process's writes no longer move the task's offset. It is a reason.
//
// Found without a kcmp against every fd of every process: one open file
// description has one fd link for one reader, so the candidates are the fds
// of other processes with the same link (state/holders.cc, one scan of every
// /proc/*/fd the caller can read), and kcmp(KCMP_FILE) tells which of them
// hold the very description. Processes whose fds the caller cannot read are
// not seen (as for pipes: docs/state.md).
//
// Exempt (no state a restore would split): the stateless character devices
// (/dev/null, zero, full, random, urandom: no offset, flags without effect)
// and O_PATH descriptors (no offset, no I/O), and a shell job's terminal (a
// pty slave or /dev/tty: restored on a new terminal, on purpose no longer the
// shell's, docs/trees.md "Shell jobs"). An fd that its own kind already
// refuses (a terminal, a pipe or socket held outside, ...) is not looked at
// again.
#pragma once

#include <sys/types.h>

#include <map>
#include <span>
#include <string>

#include "common/result.h"
#include "state/holders.h"
#include "state/kind.h"

namespace crfs::state {

// For each of the task's `fds` not in `refused` whose open file description
// a process outside `inside` also holds, a reason in `lines` (by fd):
// "the same open file description is held by pid 812 (bash) fd 1, outside
// the image; its offset would no longer be shared". `inside`: the processes
// of the image (today the task itself; the members of a checkpointed tree).
// A kcmp that fails (EPERM, ENOSYS) is a reason too: sharing unknown.
void shared_description_reasons(TaskView& t, std::span<const FdView> fds,
                                std::span<const pid_t> inside,
                                const std::map<int, std::string>& refused, Holders& holders,
                                std::map<int, std::string>& lines);

}  // namespace crfs::state
