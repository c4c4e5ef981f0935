#include "checkpoint/parasite.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>

#include <cstddef>
#include <cstring>

#include "common/strfmt.h"

extern "C" const unsigned char crfs_parasite_start[], crfs_parasite_end[];

// rdi = output page (ParasiteOutput). Clobbers rax, rcx, r11 (syscall), rdi,
// rsi, rdx, r10, r12-r15; every register is restored by the injector after.
__asm__(R"(
    .pushsection .rodata.crfs_parasite, "a"
    .globl crfs_parasite_start
    .globl crfs_parasite_end
crfs_parasite_start:
    mov %rdi, %r12              # r12: &actions[sig-1]
    lea 2048(%rdi), %r15        # r15: &action_ret[sig-1]
    mov $1, %r13d               # r13: sig
1:  mov $13, %eax               # rt_sigaction(sig, NULL, r12, 8)
    mov %r13d, %edi
    xor %esi, %esi
    mov %r12, %rdx
    mov $8, %r10d
    syscall
    mov %rax, (%r15)
    add $32, %r12
    add $8, %r15
    inc %r13d
    cmp $65, %r13d
    jne 1b
    mov $131, %eax              # sigaltstack(NULL, out + 2560)
    xor %edi, %edi
    mov %r15, %rsi
    syscall
    mov %rax, 24(%r15)          # altstack_ret at 2584
    lea 32(%r15), %r12          # itimers at 2592
    lea 128(%r15), %r14         # itimer_ret at 2688
    xor %r13d, %r13d
2:  mov $36, %eax               # getitimer(which, r12)
    mov %r13d, %edi
    mov %r12, %rsi
    syscall
    mov %rax, (%r14)
    add $32, %r12
    add $8, %r14
    inc %r13d
    cmp $3, %r13d
    jne 2b
    mov $12, %eax               # brk(0)
    xor %edi, %edi
    syscall
    mov %rax, (%r14)            # brk at 2712
    int3
crfs_parasite_end:
    .popsection
)");

namespace crfs {

static_assert(offsetof(ParasiteOutput, action_ret) == 2048);
static_assert(offsetof(ParasiteOutput, altstack_sp) == 2560);
static_assert(offsetof(ParasiteOutput, altstack_ret) == 2584);
static_assert(offsetof(ParasiteOutput, itimers) == 2592);
static_assert(offsetof(ParasiteOutput, itimer_ret) == 2688);
static_assert(offsetof(ParasiteOutput, brk) == 2712);
static_assert(sizeof(stack_t) == 24 && sizeof(itimerval) == 32);

namespace {

constexpr size_t kCodePage = 4096;
constexpr size_t kArea = 2 * kCodePage;

Status check(const ParasiteOutput& o, pid_t pid) {
    for (int s = 0; s < 64; ++s)
        if (o.action_ret[s] != 0)
            return make_error(EIO, strfmt("rt_sigaction({}) in task {} returned {}", s + 1, pid,
                                          o.action_ret[s]));
    if (o.altstack_ret != 0)
        return make_error(EIO, strfmt("sigaltstack in task {} returned {}", pid, o.altstack_ret));
    for (int w = 0; w < 3; ++w)
        if (o.itimer_ret[w] != 0)
            return make_error(
                EIO, strfmt("getitimer({}) in task {} returned {}", w, pid, o.itimer_ret[w]));
    return {};
}

}  // namespace

Result<ParasiteOutput> run_single_syscalls(RemoteSyscall& rs) {
    ParasiteOutput o{};
    for (int sig = 1; sig <= 64; ++sig) {
        auto r = rs.call(SYS_rt_sigaction, uint64_t(sig), 0, rs.scratch(), 8);
        if (!r) return std::unexpected(r.error());
        o.action_ret[sig - 1] = *r;
        if (auto rd = rs.read_scratch(&o.actions[sig - 1], sizeof o.actions[0]); !rd)
            return std::unexpected(rd.error());
    }
    auto r = rs.call(SYS_sigaltstack, 0, rs.scratch());
    if (!r) return std::unexpected(r.error());
    o.altstack_ret = *r;
    if (auto rd = rs.read_scratch(&o.altstack_sp, 24); !rd) return std::unexpected(rd.error());
    for (int w = 0; w < 3; ++w) {
        r = rs.call(SYS_getitimer, uint64_t(w), rs.scratch());
        if (!r) return std::unexpected(r.error());
        o.itimer_ret[w] = *r;
        if (auto rd = rs.read_scratch(o.itimers[w], sizeof o.itimers[w]); !rd)
            return std::unexpected(rd.error());
    }
    r = rs.call(SYS_brk, 0);
    if (!r) return std::unexpected(r.error());
    o.brk = *r;
    if (auto c = check(o, rs.pid()); !c) return std::unexpected(c.error());
    return o;
}

Result<ParasiteOutput> run_parasite(RemoteSyscall& rs) {
    size_t code_len = size_t(crfs_parasite_end - crfs_parasite_start);
    auto addr = rs.call(SYS_mmap, 0, kArea, PROT_READ | PROT_WRITE | PROT_EXEC,
                        MAP_PRIVATE | MAP_ANONYMOUS, ~uint64_t(0), 0);
    if (!addr) return std::unexpected(addr.error());
    if (*addr < 0 && *addr > -4096) return run_single_syscalls(rs);  // e.g. no execmem allowed
    uint64_t base = uint64_t(*addr);

    ParasiteOutput o{};
    Status s = rs.write_memory(base, crfs_parasite_start, code_len);
    if (s) {
        auto stop = rs.run_code(base, base + code_len, base + kCodePage);
        if (!stop) s = std::unexpected(stop.error());
    }
    if (s) s = rs.read_memory(base + kCodePage, &o, sizeof o);
    // Unmap whatever happened, unless the task is gone.
    auto un = rs.call(SYS_munmap, base, kArea);
    if (!s) return std::unexpected(s.error());
    if (!un) return std::unexpected(un.error());
    if (*un != 0) return make_error(EIO, strfmt("munmap in task {} returned {}", rs.pid(), *un));
    if (auto c = check(o, rs.pid()); !c) return std::unexpected(c.error());
    return o;
}

}  // namespace crfs
