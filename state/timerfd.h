// timerfd (state/timerfd.cc): the part a unit test reaches.
#pragma once

#include <optional>
#include <string_view>

namespace crfs::state {

// Whether /proc/timer_list (`text`) lists a timerfd's hrtimer (timerfd_tmrproc;
// alarmtimer_fired for the alarm clocks; an unnamed function counts too) that
// is queued with its expiry due: the kernel's interrupt has not run it yet.
// nullopt: text this crfs cannot read.
std::optional<bool> timer_list_due(std::string_view text);

}  // namespace crfs::state
