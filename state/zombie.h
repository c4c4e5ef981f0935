// Zombies of a tree (docs/trees.md, "Zombies"): a child that exited and that
// its parent has not reaped comes back as a zombie with its pid, group,
// session, uid, name and wait status, so the parent's wait gets exactly what
// it would have got. Its whole story is here: detect (what cannot come back
// the same), dump (the zombie record), check (a hostile image's record) and
// the stage-1 exit of the restored one.
#pragma once

#include <sys/types.h>

#include "common/procfs.h"
#include "common/result.h"
#include "crfs/image_format.h"
#include "state/kind.h"

namespace crfs::state {

// A zombie member's reasons (the other kinds have nothing to look at).
Status detect_zombie(TaskView& v, Reasons& out);

struct ZombieDump {
    ProcStat stat;
    image::ZombieRecord rec{};
};
// Its record, read while its parent is frozen (it cannot be reaped meanwhile).
Result<ZombieDump> dump_zombie(pid_t pid);

// The record can come back: a wait status a process can end with (exited,
// or killed by a signal whose default action ends it, without a core dump).
Status check_zombie(const image::ZombieRecord& z, pid_t pid);

// Stage 1 of the restored zombie (no allocation), once in its session and
// group: takes its uid, gid and name and ends as the record says.
[[noreturn]] void child_zombie_exit(const image::ZombieRecord& z);

}  // namespace crfs::state
