// Registers: the signal frame of a restore, then the dump (state/regs.h).
#include "state/regs.h"

#include <cpuid.h>
#include <elf.h>
#include <fcntl.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <unistd.h>

#include <sys/stat.h>
#include <algorithm>
#include <atomic>

#include <cstring>
#include "common/strfmt.h"
#include "state/check.h"
#include "state/memory_restore.h"  // vma_at

namespace crfs {

// --- restore -----------------------------------------------------------------

namespace {

// Kernel layouts (arch/x86/include/uapi/asm/sigcontext.h, asm/sigframe.h); the
// glibc ones differ (wider sigset_t), so they are spelled out here.
struct KSigcontext {
    uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
    uint64_t rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip, eflags;
    uint16_t cs, gs, fs, ss;
    uint64_t err, trapno, oldmask, cr2;
    uint64_t fpstate;
    uint64_t reserved1[8];
};
static_assert(sizeof(KSigcontext) == 256);

struct KStack {
    uint64_t ss_sp;
    int32_t ss_flags;
    uint32_t pad;
    uint64_t ss_size;
};

struct KUcontext {
    uint64_t uc_flags;
    uint64_t uc_link;
    KStack uc_stack;
    KSigcontext uc_mcontext;
    uint64_t uc_sigmask;
};
static_assert(sizeof(KUcontext) == 304);

struct KRtSigframe {
    uint64_t pretcode;
    KUcontext uc;
    uint8_t info[128];
};
static_assert(sizeof(KRtSigframe) == 440);

struct FpxSwBytes {  // in the xsave area's software-reserved bytes 464..511
    uint32_t magic1;
    uint32_t extended_size;
    uint64_t xfeatures;
    uint32_t xstate_size;
    uint32_t padding[7];
};
static_assert(sizeof(FpxSwBytes) == 48);

constexpr uint32_t kFpXstateMagic1 = 0x46505853;
constexpr uint32_t kFpXstateMagic2 = 0x46505845;
constexpr uint64_t kUcFpXstate = 0x1, kUcSigcontextSs = 0x2, kUcStrictRestoreSs = 0x4;
constexpr size_t kFpOffset = 448;  // sizeof(KRtSigframe) rounded up to 64

// The end (offset + size) of xsave component i in the standard format, 0 if
// the CPU has none: CPUID leaf 0xd, asked once per component. A CPUID in a
// virtual machine is an exit to the hypervisor (42 us here): a restore asked
// several per process (docs/trees.md, "Bench").
static uint32_t xsave_component_end(unsigned i) {
    static std::atomic<uint32_t> asked[64];  // end + 1; 0: not asked yet
    uint32_t end = asked[i].load(std::memory_order_relaxed);
    if (end == 0) {  // two threads may both ask: the same answer
        unsigned eax, ebx, ecx, edx;
        __cpuid_count(0xd, i, eax, ebx, ecx, edx);
        end = (eax ? ebx + eax : 0) + 1;
        asked[i].store(end, std::memory_order_relaxed);
    }
    return end - 1;
}

// Bytes of a standard-format xsave area holding the components in `bv`.
size_t xsave_size_for(uint64_t bv) {
    size_t size = 576;
    for (unsigned i = 2; i < 63; ++i)
        if (bv & (1ull << i)) size = std::max<size_t>(size, xsave_component_end(i));
    return size;
}

uint64_t xstate_bv(const ThreadImage& t) {
    uint64_t bv;
    std::memcpy(&bv, t.xstate.data() + 512, 8);
    return bv;
}

// `len` bytes of the task's memory at `addr` as the restore will map them.
bool read_task_memory(const DecodedImage& img, int image_fd, uint64_t addr, void* buf, size_t len) {
    for (const auto& p : img.pages)
        if (addr >= p.vaddr && addr + len <= p.vaddr + uint64_t(p.nr_pages) * 4096)
            return pread(image_fd, buf, len, off_t(p.stream_offset + (addr - p.vaddr))) ==
                   ssize_t(len);
    for (const auto& v : img.vmas) {
        if (addr < v.rec.start || addr + len > v.rec.end) continue;
        auto kind = image::VmaKind(v.rec.kind);
        if (kind != image::VmaKind::kFilePrivate && kind != image::VmaKind::kFileShared)
            return false;
        // Runs as the writer (restore.cc); never blocks on a FIFO.
        int fd = ::open(v.path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) return false;
        struct stat st;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
            ::close(fd);
            return false;
        }
        ssize_t n = pread(fd, buf, len, off_t(v.rec.pgoff * 4096 + (addr - v.rec.start)));
        ::close(fd);
        return n == ssize_t(len);
    }
    return false;
}

}  // namespace

namespace {

void fix_restart_regs(const DecodedImage& img, int image_fd, image::RegsRecord& regs) {
    constexpr uint64_t kRestartSyscall = 219;
    if (regs.rax != kRestartSyscall || regs.rip < 5) return;
    uint8_t code[7];
    if (!read_task_memory(img, image_fd, regs.rip - 5, code, sizeof code)) return;
    if (code[0] != 0xb8 || code[5] != 0x0f || code[6] != 0x05) return;
    uint32_t nr;
    std::memcpy(&nr, code + 1, 4);
    // poll, nanosleep, futex, clock_nanosleep, ppoll
    for (uint32_t ok : {7u, 35u, 202u, 230u, 271u})
        if (nr == ok) regs.rax = nr;
}

}  // namespace

void fix_restart_block(DecodedImage& img, int image_fd) {
    fix_restart_regs(img, image_fd, img.regs);
    for (auto& t : img.threads) fix_restart_regs(img, image_fd, t.regs);
}

ThreadImage main_thread_image(const DecodedImage& img) {
    ThreadImage t;
    if (img.main_thread) t.rec = *img.main_thread;
    t.regs = img.regs;
    t.xstate = img.xstate;
    t.sigstate = img.sigstate;
    return t;
}

size_t sigframe_size(const DecodedImage& img) {
    return sigframe_size(main_thread_image(img));
}
uint64_t sigframe_on_stack(const DecodedImage& img) {
    return sigframe_on_stack(img, main_thread_image(img));
}
Status build_sigframe(const DecodedImage& img, void* mem, uint64_t at) {
    return build_sigframe(main_thread_image(img), mem, at);
}

size_t sigframe_size(const ThreadImage& t) {
    return kFpOffset + xsave_size_for(xstate_bv(t)) + 64;
}

uint64_t sigframe_on_stack(const DecodedImage& img, const ThreadImage& t) {
    uint64_t sp = t.regs.rsp;
    if (sp < 4096 + 128 + sigframe_size(t)) return 0;
    uint64_t at = (sp - 128 - sigframe_size(t)) & ~uint64_t(63);
    for (const auto& v : img.vmas) {
        if (sp - 1 < v.rec.start || sp - 1 >= v.rec.end) continue;
        auto kind = image::VmaKind(v.rec.kind);
        bool anon = kind == image::VmaKind::kAnonPrivate || kind == image::VmaKind::kAnonShared;
        if (!anon || !(v.rec.flags & image::kVmaWrite) || !(v.rec.flags & image::kVmaRead))
            return 0;
        return at >= v.rec.start ? at : 0;
    }
    return 0;
}

Status build_sigframe(const ThreadImage& img, void* mem, uint64_t at) {
    auto* f = static_cast<KRtSigframe*>(mem);
    std::memset(f, 0, sizeof *f);
    const auto& r = img.regs;
    auto& sc = f->uc.uc_mcontext;
    sc.r8 = r.r8, sc.r9 = r.r9, sc.r10 = r.r10, sc.r11 = r.r11;
    sc.r12 = r.r12, sc.r13 = r.r13, sc.r14 = r.r14, sc.r15 = r.r15;
    sc.rdi = r.rdi, sc.rsi = r.rsi, sc.rbp = r.rbp, sc.rbx = r.rbx;
    sc.rdx = r.rdx, sc.rax = r.rax, sc.rcx = r.rcx, sc.rsp = r.rsp;
    sc.rip = r.rip, sc.eflags = r.eflags;
    sc.cs = uint16_t(r.cs), sc.ss = uint16_t(r.ss);
    if (sc.cs != 0x33 || sc.ss != 0x2b)
        return make_error(ENOTSUP, strfmt("saved cs 0x{:x} / ss 0x{:x} are not 64-bit user "
                                          "segments (compat tasks are not restored)",
                                          r.cs, r.ss));
    f->uc.uc_flags = kUcFpXstate | kUcSigcontextSs | kUcStrictRestoreSs;
    f->uc.uc_sigmask = img.sigstate.blocked & ~((1ull << 8) | (1ull << 18));  // KILL, STOP
    f->uc.uc_stack.ss_sp = img.sigstate.altstack_sp;
    f->uc.uc_stack.ss_size = img.sigstate.altstack_size;
    // SS_ONSTACK only reports where the task was; SS_DISABLE and SS_AUTODISARM are settings.
    f->uc.uc_stack.ss_flags = img.sigstate.altstack_flags & ~1;

    auto* fp = static_cast<uint8_t*>(mem) + kFpOffset;
    uint64_t bv = xstate_bv(img);
    // Only the components in use: the ptrace-sized record may be larger than
    // the signal frame this task may use (dynamic features such as AMX).
    size_t size = xsave_size_for(bv);
    std::memset(fp, 0, size + 4);
    std::memcpy(fp, img.xstate.data(), std::min(size, img.xstate.size()));
    // Standard format: XCOMP_BV must be 0, or XRSTOR faults.
    std::memset(fp + 520, 0, 8);
    FpxSwBytes sw{};
    sw.magic1 = kFpXstateMagic1;
    sw.xstate_size = uint32_t(size);
    sw.extended_size = uint32_t(size + 4);
    sw.xfeatures = bv | 3;  // x87 and SSE always (their state is in the legacy area)
    std::memcpy(fp + 464, &sw, sizeof sw);
    std::memcpy(fp + size, &kFpXstateMagic2, 4);
    sc.fpstate = at + kFpOffset;
    return {};
}

// --- dump (checkpoint) -------------------------------------------------------

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

    // The kernel shortens iov_len to the size of its xstate regset (its
    // n * size: fixed at boot, the same for every task): learnt at the first
    // call, with room for any, then asked at that size (perf: a 64 KiB string
    // zeroed and faulted in per thread was 2% of a 64-process tree's checkpoint).
    static std::atomic<size_t> known{0};
    size_t room = known.load(std::memory_order_relaxed);
    r.xstate.resize(room ? room : 64 * 1024);
    iov = {r.xstate.data(), r.xstate.size()};
    if (ptrace(PTRACE_GETREGSET, pid, NT_X86_XSTATE, &iov) != 0)
        return errno_error(strfmt("get xstate of task {}", pid));
    r.xstate.resize(iov.iov_len);
    known.store(iov.iov_len, std::memory_order_relaxed);
    normalize_sse_in_use(r.xstate);
    return r;
}

}  // namespace crfs

// --- check (hostile images, restorer/check_fields.cc runs it) ----------------

namespace crfs {

using check::bad;

Status check_thread_regs(const DecodedImage& img, const image::RegsRecord& r,
                         const std::string& who) {
    const VmaEntry* code = vma_at(img, r.rip, false);
    if (!code || !(code->rec.flags & image::kVmaExec))
        return bad(strfmt("{}rip 0x{:x} is not in an executable mapping of the image", who, r.rip));
    const VmaEntry* stack = vma_at(img, r.rsp, true);
    if (!stack || !(stack->rec.flags & image::kVmaWrite) ||
        image::VmaKind(stack->rec.kind) == image::VmaKind::kFileShared ||
        image::VmaKind(stack->rec.kind) == image::VmaKind::kMemfdShared)
        return bad(
            strfmt("{}rsp 0x{:x} is not in a writable private mapping of the image", who, r.rsp));
    return {};
}

Status check_regs(const DecodedImage& img) {
    return check_thread_regs(img, img.regs, "");
}

}  // namespace crfs
