// Timers: itimers (ITIMER_REAL/VIRTUAL/PROF) are captured by the parasite
// (checkpoint/parasite.cc) and re-armed by the blob (restorer/blob/blob.c).
// POSIX timers (timer_create) are not: each one in /proc/<pid>/timers is a
// reason. timerfd is an fd kind (state/fds.cc).
#include "state/kind.h"

namespace crfs::state {

Status detect_timers(TaskView& t, Reasons& out) {
    auto text = t.read("timers");
    if (!text) return std::unexpected(text.error());
    size_t n = 0;
    for (size_t pos = 0; (pos = text->find("ID: ", pos)) != std::string::npos; pos += 4)
        n += pos == 0 || (*text)[pos - 1] == '\n';  // not "ClockID: "
    if (n)
        out.push_back("timers: " + std::to_string(n) + " POSIX timer(s) (timer_create)" +
                      std::string(kNotYet));
    return {};
}

}  // namespace crfs::state
