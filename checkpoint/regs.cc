#include "checkpoint/regs.h"

#include <elf.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>

#include <cstring>

#include "common/strfmt.h"

namespace crfs {

static_assert(sizeof(user_regs_struct) == sizeof(image::RegsRecord));

Result<TaskRegs> read_regs(pid_t pid) {
    TaskRegs r;
    user_regs_struct u{};
    iovec iov{&u, sizeof u};
    if (ptrace(PTRACE_GETREGSET, pid, NT_PRSTATUS, &iov) != 0)
        return errno_error(strfmt("get registers of task {}", pid));
    std::memcpy(&r.gp, &u, sizeof u);

    // The kernel shortens iov_len to the size of its xsave area (CPUID leaf 0xd).
    r.xstate.resize(64 * 1024);
    iov = {r.xstate.data(), r.xstate.size()};
    if (ptrace(PTRACE_GETREGSET, pid, NT_X86_XSTATE, &iov) != 0)
        return errno_error(strfmt("get xstate of task {}", pid));
    r.xstate.resize(iov.iov_len);
    return r;
}

}  // namespace crfs
