// Futex-related registrations of the task with the kernel.
//
// Robust list (set_robust_list): glibc registers one for every thread, at a
// fixed place in its TLS. It is not captured: the restored task (clone3 from a
// daemon thread) has no robust list registered. While the list is empty that
// loses nothing the task holds now; a held robust mutex (a non-empty list, or
// an operation pending) would lose its owner-died guarantee: a reason.
// (docs/state.md: restoring the registration belongs in the blob.)
//
// rseq: re-registered by the restorer (restorer/restore.cc) only when the task
// maps the daemon's own libc, whose TLS layout it knows; a task that maps
// another libc loses its registration: a reason.
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/io.h"
#include "state/kind.h"

namespace crfs::state {
namespace {

struct RobustHead {  // struct robust_list_head
    uint64_t next;
    int64_t futex_offset;
    uint64_t op_pending;
};

// (dev, inode) of the first mapping whose path holds "/libc.so", or nullopt.
std::optional<std::pair<uint64_t, uint64_t>> libc_of(const std::vector<MapsEntry>& maps) {
    for (const auto& m : maps)
        if (m.path.find("/libc.so") != std::string::npos)
            return std::pair{uint64_t(m.dev_major) << 32 | m.dev_minor, m.ino};
    return std::nullopt;
}

}  // namespace

Status detect_futex(TaskView& t, Reasons& out) {
    void* head = nullptr;
    size_t len = 0;
    if (syscall(SYS_get_robust_list, t.pid(), &head, &len) != 0) {
        if (errno == ESRCH)
            return sys_error(ESRCH, "get_robust_list of task " + std::to_string(t.pid()));
        return errno_error("get_robust_list of task " + std::to_string(t.pid()));
    }
    if (head) {
        RobustHead h{};
        iovec local{&h, sizeof h}, remote{head, sizeof h};
        if (process_vm_readv(t.pid(), &local, 1, &remote, 1, 0) != ssize_t(sizeof h))
            out.push_back("futex: robust list head at " + std::to_string(uint64_t(head)) +
                          " is unreadable; robust futexes" + std::string(kNotYet));
        else if (h.next != uint64_t(head) || h.op_pending != 0)
            out.push_back("futex: holds robust mutexes (robust list not empty); robust futexes" +
                          std::string(kNotYet));
    }

    auto maps = t.smaps();
    if (!maps) return std::unexpected(maps.error());
    auto task_libc = libc_of(**maps);
    if (!task_libc) return {};
    auto self_text = read_file("/proc/self/maps");
    if (!self_text) return std::unexpected(self_text.error());
    auto self_maps = parse_maps(*self_text);
    if (!self_maps) return std::unexpected(self_maps.error());
    auto ours = libc_of(*self_maps);
    if (__rseq_size == 0 || !ours || *ours != *task_libc)
        out.push_back("futex: rseq registration of a libc other than crfsd's" +
                      std::string(kNotYet));
    return {};
}

}  // namespace crfs::state
