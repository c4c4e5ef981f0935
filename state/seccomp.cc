// Seccomp: the whole story of one kind (docs/state.md, "seccomp").
//
//   detect    strict mode is a reason; filters are a reason only for a caller
//             without CAP_SYS_ADMIN, which reading them takes
//   dump      PTRACE_SECCOMP_GET_FILTER index by index in the frozen task,
//             flags from PTRACE_SECCOMP_GET_METADATA (record seccomp-filter).
//             Index 0 is the OLDEST filter (the kernel's get_nth_filter counts
//             back from the newest by count - index; ptrace(2) says the
//             newest, which is not what 6.18 does: probe exact/seccomp_stacked
//             tells the two orders apart)
//   check     a hostile image's filter records in range
//   plan      the blob installs them, oldest first, as its very last step
//             before rt_sigreturn (restorer/blob/seccomp.h), with the writer's
//             rights: the kernel's no_new_privs / CAP_SYS_ADMIN rule decides.
//             The syscalls the blob still makes after that (the 'K' report,
//             the unmap of its area, rt_sigreturn, ...) are evaluated here
//             against the filters first: a filter that would stop one is a
//             restore error naming it, never a task dying after "restored".
//
// Threads: a thread other than the main one with a filter is the threads
// kind's reason; the main thread's filters are installed in the main thread
// only (no TSYNC), as they were.
#include "state/seccomp.h"

#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstddef>
#include <cstring>

#include "common/strfmt.h"
#include "state/kind.h"

namespace crfs::state {
namespace {

constexpr uint32_t kActionAllow = SECCOMP_RET_ALLOW;
constexpr uint32_t kActionLog = SECCOMP_RET_LOG;
constexpr uint32_t kSeccompDataSize = 64;  // sizeof(struct seccomp_data)

bool caller_has_sys_admin() {
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    if (syscall(SYS_capget, &hdr, data) != 0) return false;
    return data[CAP_SYS_ADMIN / 32].effective & (1u << (CAP_SYS_ADMIN % 32));
}

std::string action_name(uint32_t ret) {
    switch (ret & SECCOMP_RET_ACTION_FULL) {
        case SECCOMP_RET_KILL_PROCESS:
            return "SECCOMP_RET_KILL_PROCESS";
        case SECCOMP_RET_KILL_THREAD:
            return "SECCOMP_RET_KILL_THREAD";
        case SECCOMP_RET_TRAP:
            return "SECCOMP_RET_TRAP";
        case SECCOMP_RET_ERRNO:
            return strfmt("SECCOMP_RET_ERRNO {}", ret & SECCOMP_RET_DATA);
        case SECCOMP_RET_USER_NOTIF:
            return "SECCOMP_RET_USER_NOTIF";
        case SECCOMP_RET_TRACE:
            return "SECCOMP_RET_TRACE";
        case SECCOMP_RET_LOG:
            return "SECCOMP_RET_LOG";
        case SECCOMP_RET_ALLOW:
            return "SECCOMP_RET_ALLOW";
    }
    return strfmt("action 0x{:x}", ret);
}

std::span<const sock_filter> program(const SeccompFilterEntry& f) {
    return {reinterpret_cast<const sock_filter*>(f.prog.data()),
            f.prog.size() / sizeof(sock_filter)};
}

// The seccomp_data of one call, with what is not known in advance.
struct Data {
    int nr;
    std::array<std::optional<uint64_t>, 6> args;
};

// Runs one classic BPF program the way the kernel runs a seccomp filter
// (the subset seccomp_check_filter accepts). Programs are loop-free: every
// jump goes forward. The image is hostile: a program the kernel would not
// accept is an error here too, never undefined behaviour.
Result<uint32_t> run_filter(std::span<const sock_filter> prog, const Data& d) {
    uint32_t A = 0, X = 0, M[BPF_MEMWORDS] = {};
    uint32_t written = 0;  // scratch words stored to
    auto invalid = [](size_t pc, const char* why) {
        return make_error(EINVAL, strfmt("instruction {}: {}", pc, why));
    };
    for (size_t pc = 0; pc < prog.size(); ++pc) {
        const sock_filter& in = prog[pc];
        uint32_t k = in.k;
        switch (in.code) {
            case BPF_LD | BPF_W | BPF_ABS: {
                if (k % 4 || k >= kSeccompDataSize) return invalid(pc, "load outside seccomp_data");
                if (k == 0) {
                    A = uint32_t(d.nr);
                } else if (k == 4) {
                    A = AUDIT_ARCH_X86_64;
                } else if (k < 16) {
                    return make_error(EPERM, "looks at the instruction pointer");
                } else {
                    const auto& arg = d.args[(k - 16) / 8];
                    if (!arg)
                        return make_error(EPERM, strfmt("looks at argument {}", (k - 16) / 8));
                    A = uint32_t(k % 8 ? *arg >> 32 : *arg);
                }
                break;
            }
            case BPF_LD | BPF_W | BPF_LEN:
                A = kSeccompDataSize;
                break;
            case BPF_LDX | BPF_W | BPF_LEN:
                X = kSeccompDataSize;
                break;
            case BPF_LD | BPF_IMM:
                A = k;
                break;
            case BPF_LDX | BPF_IMM:
                X = k;
                break;
            case BPF_LD | BPF_MEM:
            case BPF_LDX | BPF_MEM:
                if (k >= BPF_MEMWORDS || !(written & (1u << k)))
                    return invalid(pc, "reads a scratch word never stored");
                (BPF_CLASS(in.code) == BPF_LD ? A : X) = M[k];
                break;
            case BPF_ST:
            case BPF_STX:
                if (k >= BPF_MEMWORDS) return invalid(pc, "scratch word out of range");
                M[k] = in.code == BPF_ST ? A : X;
                written |= 1u << k;
                break;
            case BPF_MISC | BPF_TAX:
                X = A;
                break;
            case BPF_MISC | BPF_TXA:
                A = X;
                break;
            case BPF_RET | BPF_K:
                return k;
            case BPF_RET | BPF_A:
                return A;
            default:
                if (BPF_CLASS(in.code) == BPF_ALU) {
                    uint32_t v = BPF_SRC(in.code) == BPF_X ? X : k;
                    switch (BPF_OP(in.code)) {
                        case BPF_ADD:
                            A += v;
                            break;
                        case BPF_SUB:
                            A -= v;
                            break;
                        case BPF_MUL:
                            A *= v;
                            break;
                        case BPF_DIV:
                        case BPF_MOD:
                            if (v == 0) return 0u;  // the kernel's filter returns 0: kill
                            A = BPF_OP(in.code) == BPF_DIV ? A / v : A % v;
                            break;
                        case BPF_AND:
                            A &= v;
                            break;
                        case BPF_OR:
                            A |= v;
                            break;
                        case BPF_XOR:
                            A ^= v;
                            break;
                        case BPF_LSH:
                            A = v >= 32 ? 0 : A << v;
                            break;
                        case BPF_RSH:
                            A = v >= 32 ? 0 : A >> v;
                            break;
                        case BPF_NEG:
                            A = -A;
                            break;
                        default:
                            return invalid(pc, "unknown ALU operation");
                    }
                    break;
                }
                if (BPF_CLASS(in.code) == BPF_JMP) {
                    size_t next;
                    if (BPF_OP(in.code) == BPF_JA) {
                        next = pc + 1 + size_t(k);
                    } else {
                        uint32_t v = BPF_SRC(in.code) == BPF_X ? X : k;
                        bool c;
                        switch (BPF_OP(in.code)) {
                            case BPF_JEQ:
                                c = A == v;
                                break;
                            case BPF_JGT:
                                c = A > v;
                                break;
                            case BPF_JGE:
                                c = A >= v;
                                break;
                            case BPF_JSET:
                                c = (A & v) != 0;
                                break;
                            default:
                                return invalid(pc, "unknown jump");
                        }
                        next = pc + 1 + (c ? in.jt : in.jf);
                    }
                    if (next >= prog.size()) return invalid(pc, "jump past the end");
                    pc = next - 1;
                    break;
                }
                return invalid(pc, strfmt("opcode 0x{:x} not allowed in seccomp", in.code).c_str());
        }
    }
    return make_error(EINVAL, "falls off its end without a return");
}

}  // namespace

Status detect_seccomp(TaskView& t, Reasons& out) {
    auto st = t.status();
    if (!st) return std::unexpected(st.error());
    if ((*st)->seccomp == 1)
        out.push_back("seccomp: strict mode (SECCOMP_MODE_STRICT)" + std::string(kNotYet));
    // Asked of this thread, which holds the caller's credentials: the same
    // capability the kernel asks for in PTRACE_SECCOMP_GET_FILTER and in
    // PTRACE_O_SUSPEND_SECCOMP (the freeze asks the kernel itself).
    if ((*st)->seccomp == 2 && !caller_has_sys_admin())
        out.push_back("seccomp: " + std::to_string((*st)->seccomp_filters) +
                      " filter(s): reading them (PTRACE_SECCOMP_GET_FILTER) needs CAP_SYS_ADMIN, "
                      "which the checkpointing user does not have");
    return {};
}

Result<std::vector<SeccompFilterEntry>> dump_seccomp(pid_t pid, unsigned count) {
    std::vector<SeccompFilterEntry> out;
    for (unsigned i = 0;; ++i) {
        long n =
            ptrace(PTRACE_SECCOMP_GET_FILTER, pid, reinterpret_cast<void*>(uintptr_t(i)), nullptr);
        if (n < 0 && errno == ENOENT && i == count) break;
        std::string what = strfmt("seccomp: filter {} of {} (oldest first)", i, count);
        if (n < 0 && errno == ENOENT)
            return make_error(EBUSY, what + ": the task holds another number of filters");
        if (n < 0 && (errno == EACCES || errno == EPERM))
            return sys_error(EACCES, what +
                                         ": reading it (PTRACE_SECCOMP_GET_FILTER) needs "
                                         "CAP_SYS_ADMIN");
        if (n < 0 && errno == EMEDIUMTYPE)
            return make_error(EBUSY, what + ": not a classic BPF program; not supported yet");
        if (n < 0) return errno_error("PTRACE_SECCOMP_GET_FILTER: " + what);
        if (n == 0 || n > long(image::kMaxSeccompInsns) || i >= count)
            return make_error(EBUSY, strfmt("{}: {} instructions, or more filters than status "
                                            "shows; not supported",
                                            what, n));
        SeccompFilterEntry f;
        f.prog.resize(size_t(n) * sizeof(sock_filter));
        long m = ptrace(PTRACE_SECCOMP_GET_FILTER, pid, reinterpret_cast<void*>(uintptr_t(i)),
                        f.prog.data());
        if (m != n) return errno_error("PTRACE_SECCOMP_GET_FILTER: " + what);
        __ptrace_seccomp_metadata md{i, 0};
        if (ptrace(PTRACE_SECCOMP_GET_METADATA, pid, reinterpret_cast<void*>(sizeof md), &md) < 0)
            return errno_error("PTRACE_SECCOMP_GET_METADATA: " + what);
        if (md.flags & ~uint64_t(SECCOMP_FILTER_FLAG_LOG))
            return make_error(EBUSY, strfmt("{}: flags 0x{:x} not supported yet", what, md.flags));
        f.rec.flags = uint32_t(md.flags);
        f.rec.len = uint32_t(n);
        f.rec.index = i;
        // A listener (a supervisor's fd) cannot be carried over: without one the
        // kernel answers ENOSYS where the supervisor would have.
        for (const sock_filter& in : program(f))
            if ((in.code == (BPF_RET | BPF_K) &&
                 (in.k & SECCOMP_RET_ACTION_FULL) == SECCOMP_RET_USER_NOTIF) ||
                in.code == (BPF_RET | BPF_A))
                return make_error(EBUSY, what +
                                             ": may return SECCOMP_RET_USER_NOTIF (a user-space "
                                             "supervisor); not supported yet");
        out.push_back(std::move(f));
    }
    return out;
}

Status check_seccomp(const DecodedImage& img) {
    uint64_t path = 0;
    for (const auto& f : img.seccomp) {
        auto bad = [&](std::string what) {
            return make_error(EINVAL, strfmt("image field out of range: seccomp filter {}: {}",
                                             f.rec.index, what));
        };
        if (f.rec.flags & ~uint32_t(SECCOMP_FILTER_FLAG_LOG))
            return bad(strfmt("flags 0x{:x}", f.rec.flags));
        if (f.rec.reserved) return bad(strfmt("reserved 0x{:x}", f.rec.reserved));
        if (f.rec.len == 0 || f.rec.len > image::kMaxSeccompInsns ||
            f.prog.size() != size_t(f.rec.len) * sizeof(sock_filter))
            return bad(strfmt("{} instructions", f.rec.len));
        path += f.rec.len + 4;  // the kernel's MAX_INSNS_PER_PATH counts 4 more per filter
        if (path > image::kMaxSeccompPathInsns)
            return bad(strfmt("more than {} instructions in all", image::kMaxSeccompPathInsns));
    }
    return {};
}

Status check_seccomp_allows(const DecodedImage& img, std::span<const BlobCall> calls) {
    for (const BlobCall& c : calls) {
        Data d{c.nr, c.args};
        for (size_t i = 0; i < std::min(c.filters, img.seccomp.size()); ++i) {
            auto what = [&](const std::string& how) {
                return strfmt(
                    "seccomp filter {} (of {}, oldest first) {} the restorer's {}(2), "
                    "which it makes after installing the filters",
                    i, img.seccomp.size(), how, c.name);
            };
            auto ret = run_filter(program(img.seccomp[i]), d);
            if (!ret && ret.error().code == EPERM)
                return make_error(EPERM, what(ret.error().what + " of") +
                                             ", and that value is not known in advance");
            if (!ret)
                return make_error(EINVAL, what("cannot be run (" + ret.error().what + ") on"));
            uint32_t action = *ret & SECCOMP_RET_ACTION_FULL;
            if (action != kActionAllow && action != kActionLog)
                return make_error(EPERM, what("answers " + action_name(*ret) + " to"));
        }
    }
    return {};
}

uint64_t seccomp_area_bytes(const DecodedImage& img) {
    uint64_t n = 0;
    for (const auto& f : img.seccomp) n += sizeof(crfs_ra_seccomp) + f.prog.size() + 32;
    return n;
}

Status plan_seccomp(const DecodedImage& img, pid_t want_pid,
                    const std::function<void*(size_t, size_t)>& take, crfs_restorer_args& a) {
    if (img.seccomp.empty()) return {};
    size_t all = img.seccomp.size();
    std::optional<uint64_t> none;
    // What the blob does from install_seccomp on (restorer/blob/blob.c): each
    // seccomp() under the filters before it, and a failure's report; then,
    // under all of them, the 'K' report, a tree's go gate, its unmap, a stopped task's SIGSTOP,
    // the threads' wake-up, rt_sigreturn. Pointers into the blob's stack and
    // leftover registers are not known in advance.
    std::vector<BlobCall> calls;
    for (size_t i = 1; i < all; ++i) {
        calls.push_back(
            {"seccomp",
             SYS_seccomp,
             {SECCOMP_SET_MODE_FILTER, img.seccomp[i].rec.flags, none, none, none, none},
             i});
        calls.push_back({"write",
                         SYS_write,
                         {uint64_t(a.status_fd), none, sizeof(crfs_ra_report), none, none, none},
                         i});
        calls.push_back({"exit_group", SYS_exit_group, {1, none, none, none, none, none}, i});
    }
    calls.push_back(
        {"close", SYS_close, {uint64_t(a.image_fd), none, none, none, none, none}, all});
    calls.push_back({"write", SYS_write, {uint64_t(a.status_fd), none, 1, none, none, none}, all});
    calls.push_back(
        {"close", SYS_close, {uint64_t(a.status_fd), none, none, none, none, none}, all});
    if (a.has_go) {  // trees: the go gate (state/tree_restore.cc)
        calls.push_back({"read", SYS_read, {uint64_t(a.go_fd), none, 1, none, none, none}, all});
        calls.push_back({"exit_group", SYS_exit_group, {1, none, none, none, none, none}, all});
        calls.push_back(
            {"close", SYS_close, {uint64_t(a.go_fd), none, none, none, none, none}, all});
    }
    if (a.self_unmap)
        calls.push_back(
            {"munmap", SYS_munmap, {a.self_unmap, a.self_unmap_len, none, none, none, none}, all});
    if (a.stop_self) {
        calls.push_back({"getpid", SYS_getpid, {none, none, none, none, none, none}, all});
        std::optional<uint64_t> pid;
        if (want_pid > 0) pid = uint64_t(want_pid);
        calls.push_back({"kill", SYS_kill, {pid, SIGSTOP, none, none, none, none}, all});
    }
    if (a.sync)
        calls.push_back({"futex",
                         SYS_futex,
                         {a.sync + offsetof(crfs_ra_sync, go), 129 /* FUTEX_WAKE_PRIVATE */,
                          0x7fffffff, none, none, none},
                         all});
    calls.push_back({"rt_sigreturn", SYS_rt_sigreturn, {none, none, none, none, none, none}, all});
    if (auto s = check_seccomp_allows(img, calls); !s) return s;

    auto* out = static_cast<crfs_ra_seccomp*>(take(all * sizeof(crfs_ra_seccomp), 16));
    if (!out) return make_error(ENOMEM, "restorer area too small for the seccomp filters");
    for (size_t i = 0; i < all; ++i) {
        void* insns = take(img.seccomp[i].prog.size(), 16);
        if (!insns) return make_error(ENOMEM, "restorer area too small for the seccomp filters");
        std::memcpy(insns, img.seccomp[i].prog.data(), img.seccomp[i].prog.size());
        out[i] = {reinterpret_cast<uint64_t>(insns), img.seccomp[i].rec.len,
                  img.seccomp[i].rec.flags};
    }
    a.seccomp = reinterpret_cast<uint64_t>(out);
    a.nr_seccomp = all;
    return {};
}

}  // namespace crfs::state
