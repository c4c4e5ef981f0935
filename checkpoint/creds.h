// A caller's credentials, carried to the worker process that acts for it
// (checkpoint/worker.h) and taken on there, so that the kernel's own checks
// (ptrace_may_access, /proc permissions) decide what the caller may do.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"

namespace crfs {

struct Creds {
    uid_t uid[4] = {};  // real, effective, saved, filesystem
    gid_t gid[4] = {};
    std::vector<gid_t> groups;  // supplementary, as the kernel lists them
    uint64_t cap_eff = 0, cap_prm = 0;
};

// The credentials of thread `tid` as /proc/<tid>/status shows them to this
// process. `fsuid`/`fsgid` are what the FUSE request reported: a thread whose
// status disagrees (it changed its ids, or the tid was reused) is EACCES.
// Capabilities count only when the thread lives in this process's user
// namespace (`in_our_userns`): root of a child namespace gets none.
Result<Creds> creds_of_thread(pid_t tid, uid_t fsuid, gid_t fsgid, bool in_our_userns);

// One argv word and back: "r,e,s,fs:r,e,s,fs:g1,g2,...:eff:prm" (caps in hex).
std::string encode_creds(const Creds& c);
Result<Creds> decode_creds(std::string_view text);

// Makes the calling process (single-threaded: the worker) hold exactly `c`:
// groups, real/effective/saved/fs ids, effective and permitted capabilities
// (inheritable and ambient none), non-dumpable (so that a same-uid caller
// cannot ptrace the worker); then reads /proc/self/status back and fails with
// EPERM unless the kernel shows exactly `c`.
Status assume_creds(const Creds& c);

}  // namespace crfs
