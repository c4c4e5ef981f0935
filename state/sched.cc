// Scheduling: nice (TaskRecord.nice, restorer/task_attrs.cc), and the policy
// with its real-time priority and reset-on-fork, CPU affinity and
// oom_score_adj (the settings record: checkpoint/settings.cc, restored by
// restorer/settings.cc as the writer). What the settings record cannot
// carry is a reason: SCHED_DEADLINE (runtime, deadline, period) and
// sched_ext or any policy newer than crfs.
#include <sched.h>

#include "state/kind.h"

namespace crfs::state {
namespace {

std::string policy_name(unsigned p) {
    static constexpr const char* kNames[] = {"SCHED_OTHER",    "SCHED_FIFO", "SCHED_RR",
                                             "SCHED_BATCH",    "SCHED_ISO",  "SCHED_IDLE",
                                             "SCHED_DEADLINE", "SCHED_EXT"};
    return p < std::size(kNames) ? kNames[p] : "policy " + std::to_string(p);
}

// What restorer/settings.cc sets with sched_setscheduler.
bool restorable(unsigned p) {
    return p == SCHED_OTHER || p == SCHED_FIFO || p == SCHED_RR || p == SCHED_BATCH ||
           p == SCHED_IDLE;
}

}  // namespace

Status detect_sched(TaskView& t, Reasons& out) {
    auto st = t.stat();
    if (!st) return std::unexpected(st.error());
    if (!restorable((*st)->policy))
        out.push_back("sched: scheduling policy " + policy_name((*st)->policy) +
                      std::string(kNotYet));
    return {};
}

}  // namespace crfs::state
