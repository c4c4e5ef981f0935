#include "state/zombie.h"

#include <linux/kcmp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "common/strfmt.h"
#include "state/kcmp_cache.h"

namespace crfs::state {
namespace {

constexpr int kCoreDumped = 0x80;

// Signals whose default action ends the process (term or core).
bool ends_process(int sig) {
    switch (sig) {
        case SIGCHLD:
        case SIGCONT:
        case SIGURG:
        case SIGWINCH:
        case SIGSTOP:
        case SIGTSTP:
        case SIGTTIN:
        case SIGTTOU:
            return false;
    }
    return sig >= 1 && sig <= 64;
}

}  // namespace

Status detect_zombie(TaskView& v, Reasons& out) {
    auto st = v.stat();
    if (!st) return std::unexpected(st.error());
    const ProcStat& s = **st;
    if (s.num_threads > 1) {
        out.push_back(strfmt("task: zombie main thread with {} threads still running;{}",
                             s.num_threads - 1, kNotYet));
        return {};
    }
    // The kernel prints the exit code only to who may ptrace the zombie
    // (else 0): ask it (kcmp makes the same check).
    if (int r = v.kcmp()->order(KCMP_VM, v.pid(), v.pid()); r < 0 && r != -ESRCH) {
        out.push_back(strfmt("task: zombie whose exit status the caller may not read ({})",
                             std::strerror(-r)));
        return {};
    }
    if (s.exit_signal != SIGCHLD)
        out.push_back(strfmt("task: zombie that signals its parent with signal {}, not SIGCHLD;{}",
                             s.exit_signal, kNotYet));
    if (s.exit_code & kCoreDumped)
        out.push_back(strfmt("task: zombie killed by signal {} with a core dump;{}",
                             s.exit_code & 0x7f, kNotYet));
    auto status = v.status();
    if (!status) return std::unexpected(status.error());
    const ProcStatus& p = **status;
    for (int i = 1; i < 4; ++i)
        if (p.uid[i] != p.uid[0] || p.gid[i] != p.gid[0]) {
            out.push_back(strfmt(
                "task: zombie with uids {}/{}/{}/{}, gids {}/{}/{}/{} (not all one);{}", p.uid[0],
                p.uid[1], p.uid[2], p.uid[3], p.gid[0], p.gid[1], p.gid[2], p.gid[3], kNotYet));
            break;
        }
    return {};
}

Result<ZombieDump> dump_zombie(pid_t pid) {
    auto st = read_stat(pid);
    if (!st) return std::unexpected(st.error());
    auto status = read_status(pid);
    if (!status) return std::unexpected(status.error());
    ZombieDump z{*st, {}};
    z.rec.exit_code = int32_t(st->exit_code);
    z.rec.uid = status->uid[0];
    z.rec.gid = status->gid[0];
    std::memcpy(z.rec.comm, st->comm.data(), std::min(st->comm.size(), sizeof z.rec.comm - 1));
    return z;
}

Status check_zombie(const image::ZombieRecord& z, pid_t pid) {
    int code = z.exit_code, sig = code & 0x7f;
    bool exited = sig == 0 && (code & ~0xff00) == 0;
    bool killed = (code & ~0x7f) == 0 && ends_process(sig);
    if ((!exited && !killed) || z.reserved != 0)
        return make_error(EINVAL, strfmt("bad image: process {}: zombie exit status 0x{:x} is not "
                                         "one a process ends with (exited, or killed by a signal "
                                         "that ends it, without a core dump)",
                                         pid, uint32_t(code)));
    return {};
}

void child_zombie_exit(const image::ZombieRecord& z) {
    // Raw calls: glibc's set*id wrappers signal threads of the daemon.
    syscall(SYS_setgroups, 0, nullptr);
    syscall(SYS_setresgid, z.gid, z.gid, z.gid);
    syscall(SYS_setresuid, z.uid, z.uid, z.uid);
    char comm[sizeof z.comm];
    std::memcpy(comm, z.comm, sizeof comm);
    comm[sizeof comm - 1] = '\0';
    syscall(SYS_prctl, PR_SET_NAME, comm, 0, 0, 0);
    int sig = z.exit_code & 0x7f;
    if (sig == 0) syscall(SYS_exit_group, (z.exit_code >> 8) & 0xff);
    // No core (not dumpable), the default action, the signal let through.
    syscall(SYS_prctl, PR_SET_DUMPABLE, 0, 0, 0, 0);
    struct kernel_sigaction {
        void* handler;
        unsigned long flags;
        void* restorer;
        uint64_t mask;
    } dfl{};
    syscall(SYS_rt_sigaction, sig, &dfl, nullptr, 8);
    uint64_t only = 1ull << (sig - 1);
    syscall(SYS_rt_sigprocmask, SIG_UNBLOCK, &only, nullptr, 8);
    syscall(SYS_kill, syscall(SYS_getpid), sig);
    syscall(SYS_exit_group, 127);  // never: the signal ended it
    __builtin_unreachable();
}

}  // namespace crfs::state
