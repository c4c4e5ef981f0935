// Registers of a frozen task: general purpose with fs/gs base (NT_PRSTATUS)
// and the full xsave area (NT_X86_XSTATE), so FPU/SSE/AVX state survives.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "common/result.h"
#include "crfs/image_format.h"

namespace crfs {

struct TaskRegs {
    image::RegsRecord gp{};
    std::string xstate;  // raw xsave area as the kernel reports it
    // fid: the syscall the task was inside and its restart code; `gp` holds
    // the restart applied (checkpoint/remote_syscall.h).
    std::optional<image::SyscallRestartRecord> restart;
};

Result<TaskRegs> read_regs(pid_t pid);

}  // namespace crfs
