// Futex-related registrations of each thread with the kernel: the robust list
// (set_robust_list) and rseq. Both are captured per thread (get_robust_list,
// PTRACE_GET_RSEQ_CONFIGURATION: state/threads.cc, thread record) and
// registered again by the restorer blob in every thread; the lists and the
// rseq area themselves are ordinary memory. What is left to refuse is a
// registration the kernel would not take back: a robust list head of another
// size than the kernel's struct robust_list_head.
#include <sys/syscall.h>
#include <unistd.h>

#include "state/kind.h"

namespace crfs::state {

Status detect_futex(TaskView& t, Reasons& out) {
    void* head = nullptr;
    size_t len = 0;
    if (syscall(SYS_get_robust_list, t.pid(), &head, &len) != 0) {
        if (errno == ESRCH)
            return sys_error(ESRCH, "get_robust_list of task " + std::to_string(t.pid()));
        return errno_error("get_robust_list of task " + std::to_string(t.pid()));
    }
    constexpr size_t kRobustHead = 24;  // struct robust_list_head
    if (head && len != kRobustHead)
        out.push_back("futex: robust list head of " + std::to_string(len) + " bytes" +
                      std::string(kNotYet));
    return {};
}

}  // namespace crfs::state
