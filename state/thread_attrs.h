// What each thread holds of its own and a new thread does not get right by
// itself (record 130 `thread-attrs`, version 6; docs/state.md):
//   pdeathsig    PR_SET_PDEATHSIG: a new thread has none; visible nowhere
//                from outside, so asked in the frozen thread
//   timer slack  PR_SET_TIMERSLACK: a new thread takes its creator's
//   I/O priority ioprio_set(IOPRIO_WHO_PROCESS): likewise (copy_io)
//   securebits   PR_SET_SECUREBITS: per thread (its cred); set by the blob's
//                restore_creds while it still holds CAP_SETPCAP, else by the
//                thread's own rights (EPERM without CAP_SETPCAP)
// Each is asked in each frozen thread (the main one too): answered by the
// parasite's batch run in that thread (checkpoint/parasite.h), else by a
// syscall injected there; set again by that thread in the blob, after its credentials (a
// credential change clears pdeathsig), with the image's rights: the kernel
// decides (an RT I/O class without CAP_SYS_NICE is EPERM in `status`).
// pdeathsig fires when the parent dies, so it comes back only for a process
// whose parent is in the image (restored as its parent): the image's root is
// the child of a crfsd thread, and gets none (docs/state.md, known gaps).
#pragma once

#include <sys/types.h>

#include <string>

#include "common/image_reader.h"
#include "common/result.h"
#include "crfs/restorer_args.h"
#include "state/timers.h"

namespace crfs::state {

// Checkpoint: the attributes of thread `tid`, which `in` runs syscalls in.
Result<image::ThreadAttrsRecord> dump_thread_attrs(pid_t tid, const InTask& in);

// Restore: every record in range (a hostile image is refused, nothing made).
Status check_thread_attrs(const DecodedImage& img);

// Restore: the blob's fields of the main thread (a.main_attrs) and of every
// other thread (a.threads, filled already). `parent_restored`: the process's
// parent is restored with it (a member of a tree but its root).
void plan_thread_attrs(const DecodedImage& img, bool parent_restored, crfs_restorer_args& a);

// The words for a failed CRFS_RA_STEP_THREAD_ATTRS.
std::string thread_attrs_step_text(uint64_t arg, const DecodedImage& img);

}  // namespace crfs::state
