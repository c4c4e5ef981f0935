// Signals: handlers, blocked mask, pending signals and the alternate stack are
// captured (checkpoint/signals.cc, checkpoint/parasite.cc) and restored by the
// blob (restorer/signals.cc, restorer/blob/blob.c). A task inside a syscall
// that swaps the mask (sigsuspend, ppoll, pselect, epoll_pwait) has its real
// mask saved in the kernel (saved_sigmask), which is not captured: a reason.
#include <charconv>

#include "state/kind.h"

namespace crfs::state {
namespace {

struct MaskSyscall {
    long nr;  // x86-64
    const char* name;
};
constexpr MaskSyscall kMaskSyscalls[] = {{130, "rt_sigsuspend"}, {270, "pselect6"},
                                         {271, "ppoll"},         {281, "epoll_pwait"},
                                         {333, "io_pgetevents"}, {441, "epoll_pwait2"}};

}  // namespace

Status detect_signals(TaskView& t, Reasons& out) {
    auto text = t.read("syscall");
    if (!text) return std::unexpected(text.error());
    long nr = -1;
    std::from_chars(text->data(), text->data() + text->size(), nr);  // "running": stays -1
    for (const auto& m : kMaskSyscalls)
        if (m.nr == nr)
            out.push_back(std::string("signals: in ") + m.name +
                          " with a temporary signal mask; its saved mask" + std::string(kNotYet));
    return {};
}

}  // namespace crfs::state
