#include "checkpoint/parasite.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/time.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "checkpoint/task_attrs.h"
#include "common/log.h"
#include "common/strfmt.h"

extern "C" const unsigned char crfs_parasite_start[], crfs_parasite_int3_end[],
    crfs_parasite_batch[], crfs_parasite_end[];

// rdi = output page (ParasiteOutput). Clobbers rax, rcx, r11 (syscall), rdi,
// rsi, rdx, r8-r10, r12-r15; every register is restored by the injector after.
// crfs_parasite_batch: a second entry that runs only the batch (run_batch),
// ending on the same int3.
__asm__(R"(
    .pushsection .rodata.crfs_parasite, "a"
    .globl crfs_parasite_start
    .globl crfs_parasite_end
    .globl crfs_parasite_int3_end
    .globl crfs_parasite_batch
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
6:  mov 8(%r14), %r13           # r13: batch_count (2720), calls left
    lea 40(%r14), %r12          # r12: &batch[0] at 2752
3:  test %r13, %r13
    jz 4f
    mov (%r12), %rax            # batch[i]: nr, args[6], ret
    mov 8(%r12), %rdi
    mov 16(%r12), %rsi
    mov 24(%r12), %rdx
    mov 32(%r12), %r10
    mov 40(%r12), %r8
    mov 48(%r12), %r9
    syscall
    mov %rax, 56(%r12)
    add $64, %r12
    dec %r13
    jmp 3b
4:  int3
crfs_parasite_int3_end:
crfs_parasite_batch:
    lea 2712(%rdi), %r14        # as after brk(0): the batch, then the int3
    jmp 6b
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
static_assert(offsetof(ParasiteOutput, batch_count) == 2720);
static_assert(offsetof(ParasiteOutput, batch) == 2752);
static_assert(sizeof(ParasiteOutput::Call) == 64);
static_assert(sizeof(ParasiteOutput) <= 4096);
static_assert(sizeof(stack_t) == 24 && sizeof(itimerval) == 32);

namespace {

constexpr size_t kCodePage = 4096;
constexpr size_t kArea = kParasiteAreaBytes;
static_assert(kArea == 3 * kCodePage);  // code, output, lock probe (parasite.h)
constexpr uint64_t kLowHint = 4096;

constexpr uint64_t kMembarrierGetRegistrations = 1 << 9;  // Linux 6.3; not in Debian 12's headers
constexpr uint64_t kIoprioWhoProcess = 1;                 // linux/ioprio.h

// The batch: what the kinds ask of the task's main thread, in their order
// (state/settings.cc read_task_settings, state/threads.cc read_tid_address,
// state/thread_attrs.cc dump_thread_attrs); `out`: a2 points at an output word.
struct Ask {
    long nr;
    uint64_t a1;
    bool out;
};
constexpr Ask kAsks[] = {
    {SYS_prctl, PR_GET_TIMERSLACK, false},
    {SYS_prctl, PR_GET_THP_DISABLE, false},
    {SYS_prctl, PR_GET_DUMPABLE, false},
    {SYS_prctl, PR_GET_CHILD_SUBREAPER, true},
    {SYS_membarrier, kMembarrierGetRegistrations, false},
    {SYS_prctl, PR_GET_TID_ADDRESS, true},
    {SYS_prctl, PR_GET_TIMERSLACK, false},
    {SYS_ioprio_get, kIoprioWhoProcess, false},
    {SYS_prctl, PR_GET_PDEATHSIG, true},
    {SYS_prctl, PR_GET_SECUREBITS, false},
};
constexpr size_t kLockProbe = std::size(kAsks);  // the lock probe's entry (lock_probe_result)
constexpr size_t kAlso = kLockProbe + 1;         // the `also` call's entry
static_assert(kAlso < ParasiteOutput::kMaxBatch);

// The batch table for an output page at `out_addr` in the task (the area's
// second page), with the lock probe after the kinds' questions, then `also`.
void fill_batch(ParasiteOutput& o, uint64_t out_addr, const ParasiteOutput::Call* also) {
    for (size_t i = 0; i < std::size(kAsks); ++i) {
        o.batch[i] = {};
        o.batch[i].nr = kAsks[i].nr;
        o.batch[i].args[0] = kAsks[i].a1;
        if (kAsks[i].out)
            o.batch[i].args[1] = out_addr + offsetof(ParasiteOutput, batch_out) + 8 * i;
    }
    o.batch[kLockProbe] = {};
    o.batch[kLockProbe].nr = SYS_madvise;
    o.batch[kLockProbe].args[0] = out_addr + kCodePage;  // the probe page, never touched
    o.batch[kLockProbe].args[1] = kCodePage;
    o.batch[kLockProbe].args[2] = MADV_DONTNEED;
    o.batch_count = int64_t(kLockProbe + 1);
    if (also) {
        o.batch[kAlso] = *also;
        o.batch_count = int64_t(kAlso + 1);
    }
}

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

// Its status read now: where no view read it while frozen.
Result<bool> sigtrap_in_use(pid_t tid) {
    auto st = read_status(tid);
    if (!st) return std::unexpected(st.error());
    return sigtrap_in_use(*st, tid);
}

}  // namespace

Result<bool> sigtrap_in_use(const ProcStatus& st, pid_t tid) {
    if (st.sig_sets != 3)
        return make_error(EIO, strfmt("no signal sets in the status of task {}", tid));
    constexpr uint64_t kTrap = uint64_t(1) << (SIGTRAP - 1);
    return ((st.sig_pnd | st.sig_ign | st.sig_cgt) & kTrap) != 0;
}

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

std::optional<int64_t> lock_probe_result(const ParasiteOutput& o) {
    if (o.batch_count <= int64_t(kLockProbe) || o.batch[kLockProbe].nr != SYS_madvise)
        return std::nullopt;
    return o.batch[kLockProbe].ret;
}

std::optional<int64_t> also_result(const ParasiteOutput& o) {
    if (o.batch_count <= int64_t(kAlso)) return std::nullopt;
    return o.batch[kAlso].ret;
}

Result<ParasiteOutput> run_parasite(RemoteSyscall& rs, const WhileMapped& while_mapped,
                                    const ProcStatus* frozen, ParasiteArea* keep,
                                    const ParasiteOutput::Call* also, uint64_t lowest) {
    auto o = try_parasite(rs, while_mapped, frozen, keep, also, lowest);
    if (!o) return std::unexpected(o.error());
    if (!*o) return run_single_syscalls(rs);
    return **o;
}

namespace {

// A task that catches, ignores or has pending SIGTRAP: single syscalls,
// which stop at syscall exits and raise no signal (sigtrap_in_use).
Result<bool> may_run_parasite(RemoteSyscall& rs, const ProcStatus* frozen) {
    auto trap = frozen ? sigtrap_in_use(*frozen, rs.pid()) : sigtrap_in_use(rs.pid());
    if (!trap) return std::unexpected(trap.error());
    return !*trap;
}

// Runs the parasite in the area at `base` in the thread of `rs`, the code
// page written first unless `code_there`; its output, checked, with the batch
// table as crfs wrote it.
Result<ParasiteOutput> run_in_area(RemoteSyscall& rs, uint64_t base, bool code_there,
                                   const WhileMapped& while_mapped,
                                   const ParasiteOutput::Call* also) {
    const size_t code_len = size_t(crfs_parasite_end - crfs_parasite_start);
    // One write: the code page, then the output page up to the batch table's end.
    ParasiteOutput o{};
    fill_batch(o, base + kCodePage, also);
    constexpr size_t kTableEnd = offsetof(ParasiteOutput, batch_out);
    std::vector<unsigned char> in(kCodePage + kTableEnd);
    std::memcpy(in.data(), crfs_parasite_start, code_len);
    std::memcpy(in.data() + kCodePage, &o, kTableEnd);
    const size_t from = code_there ? kCodePage : 0;
    if (auto s = rs.write_memory(base + from, in.data() + from, in.size() - from); !s)
        return std::unexpected(s.error());
    const uint64_t int3_end = base + uint64_t(crfs_parasite_int3_end - crfs_parasite_start);
    if (auto s = rs.run_code(base, int3_end, base + kCodePage); !s)
        return std::unexpected(s.error());
    if (auto s = rs.read_memory(base + kCodePage, &o, sizeof o); !s)
        return std::unexpected(s.error());
    // Matching (ParasiteAnswers) goes by the table as crfs wrote it; only the
    // results come from the task's page.
    ParasiteOutput asked{};
    fill_batch(asked, base + kCodePage, also);
    o.batch_count = asked.batch_count;
    for (size_t i = 0; i < size_t(asked.batch_count); ++i) {
        int64_t ret = o.batch[i].ret;
        o.batch[i] = asked.batch[i];
        o.batch[i].ret = ret;
    }
    if (while_mapped)
        if (auto s = while_mapped(base, o); !s) return std::unexpected(s.error());
    if (auto c = check(o, rs.pid()); !c) return std::unexpected(c.error());
    return o;
}

// The area's mmap: right below `lowest` (run_parasite), else at the low
// hint; its raw result.
Result<int64_t> map_area(RemoteSyscall& rs, uint64_t lowest) {
    constexpr uint64_t kProt = PROT_READ | PROT_WRITE | PROT_EXEC;
    if (lowest >= kLowHint + kArea && !getenv("CRFS_PARASITE_LOW")) {
        auto below = rs.call(SYS_mmap, lowest - kArea, kArea, kProt,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, ~uint64_t(0), 0);
        // Not there (taken, under the floor, or a kernel without
        // MAP_FIXED_NOREPLACE that took it as a hint): wherever it is, it is
        // the task's, and first in smaps if below `lowest`.
        if (!below || *below >= 0 || *below <= -4096) return below;
    }
    return rs.call(SYS_mmap, kLowHint, kArea, kProt, MAP_PRIVATE | MAP_ANONYMOUS, ~uint64_t(0), 0);
}

Status unmap_area(RemoteSyscall& rs, uint64_t base) {
    auto un = rs.call(SYS_munmap, base, kArea);
    if (!un) return std::unexpected(un.error());
    if (*un != 0) return make_error(EIO, strfmt("munmap in task {} returned {}", rs.pid(), *un));
    return {};
}

}  // namespace

ParasiteArea::~ParasiteArea() {
    if (auto r = unmap(); !r) log_error("checkpoint: %s", r.error().what.c_str());
}

Status ParasiteArea::unmap() {
    if (!rs_) return {};
    return unmap_area(*std::exchange(rs_, nullptr), base_);
}

Result<std::optional<ParasiteOutput>> try_parasite(RemoteSyscall& rs,
                                                   const WhileMapped& while_mapped,
                                                   const ProcStatus* frozen, ParasiteArea* keep,
                                                   const ParasiteOutput::Call* also,
                                                   uint64_t lowest) {
    auto may = may_run_parasite(rs, frozen);
    if (!may) return std::unexpected(may.error());
    if (!*may) return std::nullopt;
    rs.step_calls();  // the same condition as the int3's
    // Below the lowest mapping, or at the hint, raised to the lowest address
    // mmap may give (vm.mmap_min_addr or the LSM's floor), which is free in
    // nearly every task: the area comes first in smaps, where while_mapped
    // may read it.
    auto addr = map_area(rs, lowest);
    if (!addr) return std::unexpected(addr.error());
    if (*addr < 0 && *addr > -4096) return std::nullopt;  // e.g. no execmem allowed
    const uint64_t base = uint64_t(*addr);
    auto o = run_in_area(rs, base, false, while_mapped, also);
    if (o && keep && !keep->mapped()) {
        keep->rs_ = &rs;
        keep->base_ = base;
        return *o;
    }
    // Unmap whatever happened, unless the task is gone.
    auto un = unmap_area(rs, base);
    if (!o) return std::unexpected(o.error());
    if (!un) return std::unexpected(un.error());
    return *o;
}

Result<std::optional<ParasiteOutput>> try_parasite_in(RemoteSyscall& rs, const ParasiteArea* area,
                                                      const ProcStatus* frozen) {
    if (!area || !area->mapped()) return try_parasite(rs, {}, frozen);
    auto may = may_run_parasite(rs, frozen);
    if (!may) return std::unexpected(may.error());
    if (!*may) return std::nullopt;
    rs.step_calls();
    auto o = run_in_area(rs, area->base(), true, {}, nullptr);
    if (!o) return std::unexpected(o.error());
    return *o;
}

Status run_batch(RemoteSyscall& rs, uint64_t area, std::span<ParasiteOutput::Call> calls) {
    if (calls.empty() || calls.size() > ParasiteOutput::kMaxBatch)
        return make_error(EINVAL, strfmt("a batch of {} calls", calls.size()));
    const uint64_t out = area + kCodePage;
    constexpr size_t kCount = offsetof(ParasiteOutput, batch_count);
    constexpr size_t kTable = offsetof(ParasiteOutput, batch);
    // The count, its padding and the calls: one write.
    std::vector<unsigned char> in(kTable - kCount + calls.size_bytes());
    const int64_t count = int64_t(calls.size());
    std::memcpy(in.data(), &count, sizeof count);
    std::memcpy(in.data() + (kTable - kCount), calls.data(), calls.size_bytes());
    if (auto s = rs.write_memory(out + kCount, in.data(), in.size()); !s) return s;
    const uint64_t start = uint64_t(crfs_parasite_batch - crfs_parasite_start);
    const uint64_t int3_end = uint64_t(crfs_parasite_int3_end - crfs_parasite_start);
    if (auto s = rs.run_code(area + start, area + int3_end, out); !s) return s;
    std::vector<ParasiteOutput::Call> got(calls.size());
    if (auto s = rs.read_memory(out + kTable, got.data(), calls.size_bytes()); !s) return s;
    for (size_t i = 0; i < calls.size(); ++i) calls[i].ret = got[i].ret;
    return {};
}

state::InTask live_in_task(RemoteSyscall& rs) {
    return {[&rs](long nr, uint64_t a1, uint64_t a2) { return rs.call(nr, a1, a2); },
            [&rs](void* out, size_t n) { return rs.read_scratch(out, n); }, rs.scratch()};
}

ParasiteAnswers::ParasiteAnswers(RemoteSyscall& rs, const ParasiteOutput& o)
    : rs_(rs),
      o_(o),
      in_{[this](long nr, uint64_t a1, uint64_t a2) { return call(nr, a1, a2); },
          [this](void* out, size_t n) { return read_scratch(out, n); }, rs.scratch()} {}

Result<int64_t> ParasiteAnswers::call(long nr, uint64_t a1, uint64_t a2) {
    // The kinds' questions only, never the lock probe or the `also` call.
    size_t n = o_.batch_count > 0 ? std::min(size_t(o_.batch_count), std::size(kAsks)) : 0;
    for (size_t i = 0; i < n; ++i) {
        const auto& c = o_.batch[i];
        bool out = c.args[1] != 0;
        if (used_[i] || c.nr != nr || c.args[0] != a1 || a2 != (out ? in_.scratch : 0)) continue;
        used_[i] = true;
        ++answered_;
        if (out)
            out_ = o_.batch_out[i];
        else
            out_.reset();
        return c.ret;
    }
    out_.reset();
    return rs_.call(nr, a1, a2);
}

Status ParasiteAnswers::read_scratch(void* out, size_t len) const {
    if (!out_) return rs_.read_scratch(out, len);
    if (len > sizeof *out_) return make_error(EINVAL, "parasite output read too large");
    std::memcpy(out, &*out_, len);
    return {};
}

}  // namespace crfs
