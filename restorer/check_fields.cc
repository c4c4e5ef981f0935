// Every field of a hostile image in range before anything is created: the
// checksum is public, so each enum, flag, number and register may have been
// chosen by the writer. A value the restore would hand to a syscall that
// accepts it but does something else than the image means (a handler for
// SIGKILL, an unknown open flag, rip outside the code) is refused here, with
// EINVAL naming the record and the value.
#include <fcntl.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "common/file_hash.h"
#include "common/strfmt.h"
#include "restorer/check_inet.h"
#include "restorer/validate.h"
#include "state/check.h"
#include "state/file_kind.h"
#include "state/itimers.h"
#include "state/locks.h"
#include "state/memfd.h"
#include "state/memory_restore.h"  // check_vmas, vma_at
#include "state/mlockall.h"
#include "state/pipe.h"
#include "state/regs.h"
#include "state/restart.h"
#include "state/seccomp.h"
#include "state/settings.h"
#include "state/signals.h"
#include "state/sysv_msg.h"
#include "state/sysv_sem.h"
#include "state/sysv_shm.h"
#include "state/task_attrs.h"
#include "state/thread_attrs.h"
#include "state/threads.h"
#include "state/timers.h"
#include "state/unix_bound.h"
#include "state/unix_socket.h"

namespace crfs {

using state::check_fds;  // the fd table's check (state/fd_check.cc)

Status check_fields(const DecodedImage& img) {
    for (auto check : {check_task, check_itimers, check_vmas, check_regs, check_fds, check_signals,
                       check_settings, state::check_pipes, state::check_unix_sockets, check_inet,
                       check_threads, state::check_memfds, state::check_unix_bound,
                       state::check_seccomp, state::check_posix_timers, state::check_locks,
                       check_restart, state::check_mlockall, state::check_thread_attrs})
        if (auto s = check(img); !s) return s;
    if (auto s = state::check_sysv_shm(img); !s) return s;  // sysv
    if (auto s = state::check_sysv_msg(img); !s) return s;  // sem
    if (auto s = state::check_sysv_sem(img); !s) return s;  // sem
    return {};
}

}  // namespace crfs
