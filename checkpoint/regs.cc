#include "checkpoint/regs.h"

#include <elf.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>

#include <cstring>

#include "common/strfmt.h"

namespace crfs {

static_assert(sizeof(user_regs_struct) == sizeof(image::RegsRecord));

namespace {

// fidelity: whether the CPU reports the SSE component in use (XSTATE_BV bit 1)
// while every XMM register is zero depends on what ran last (measured: two
// checkpoints of one stopped task differ in it under load), so the image of
// an unchanged task would change. Zero XMM registers are recorded as the init
// state (bit clear): XRSTOR gives the same registers either way, and MXCSR is
// restored from the area whatever the bit says.
void normalize_sse_in_use(std::string& xs) {
    constexpr size_t kXmm = 160, kXmmLen = 256, kBv = 512;
    if (xs.size() < kBv + 8) return;
    uint64_t bv;
    std::memcpy(&bv, xs.data() + kBv, 8);
    if (!(bv & 2) || xs.find_first_not_of('\0', kXmm) < kXmm + kXmmLen) return;
    bv &= ~uint64_t(2);
    std::memcpy(xs.data() + kBv, &bv, 8);
}

}  // namespace

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
    normalize_sse_in_use(r.xstate);
    return r;
}

}  // namespace crfs
