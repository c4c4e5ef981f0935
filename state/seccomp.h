// Seccomp filters (state/seccomp.cc): read from the frozen task, range-checked
// in a hostile image, and the restorer's last syscalls checked against them.
#pragma once

#include <sys/types.h>

#include <array>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "common/image_reader.h"
#include "common/result.h"
#include "crfs/restorer_args.h"

namespace crfs::state {

// Checkpoint: every filter of task `pid`, which this thread has seized and
// stopped, oldest first; `count` is status Seccomp_filters. Needs
// CAP_SYS_ADMIN (PTRACE_SECCOMP_GET_FILTER): the kernel decides. A filter
// that may hand syscalls to a user-space supervisor (SECCOMP_RET_USER_NOTIF)
// is EBUSY: its listener cannot be carried over.
Result<std::vector<SeccompFilterEntry>> dump_seccomp(pid_t pid, unsigned count);

// Restore: the filter records in range (flags, lengths, the kernel's limit on
// instructions along one path).
Status check_seccomp(const DecodedImage& img);

// One syscall the restorer makes once (some of) the filters are installed: its
// number and the arguments it is known to pass (nullopt: not known in advance).
struct BlobCall {
    const char* name;
    int nr;
    std::array<std::optional<uint64_t>, 6> args;
    size_t filters;  // how many filters (oldest first) are installed when it runs
};

// Whether every filter lets every call through (SECCOMP_RET_ALLOW or _LOG),
// evaluated on the seccomp_data the kernel would build. An error (EPERM)
// names the call and the filter's action; a filter that looks at something
// not known in advance (an argument, the instruction pointer) is an error too.
Status check_seccomp_allows(const DecodedImage& img, std::span<const BlobCall> calls);

// Restore: bytes plan_seccomp takes from the blob's area (an upper bound).
uint64_t seccomp_area_bytes(const DecodedImage& img);

// Copies the filters into the blob's area (`take(bytes, align)`: addresses
// valid in the new task) and sets a.seccomp / a.nr_seccomp, once the calls
// the blob makes after installing them are known to pass (`a` is otherwise
// complete; `want_pid` 0: the pid is not known before the task exists).
Status plan_seccomp(const DecodedImage& img, pid_t want_pid,
                    const std::function<void*(size_t, size_t)>& take, crfs_restorer_args& a);

}  // namespace crfs::state
