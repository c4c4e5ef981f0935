// Scheduling: nice is captured (checkpoint/checkpoint.cc TaskRecord.nice) and
// restored (restorer/task_attrs.cc). Policy, CPU affinity and oom_score_adj
// are not: a restored task gets SCHED_OTHER and the daemon's affinity and
// oom_score_adj, so any other value is a reason.
#include <unistd.h>

#include "state/kind.h"
#include "state/self.h"

namespace crfs::state {
namespace {

std::string policy_name(unsigned p) {
    static constexpr const char* kNames[] = {"SCHED_OTHER",    "SCHED_FIFO", "SCHED_RR",
                                             "SCHED_BATCH",    "SCHED_ISO",  "SCHED_IDLE",
                                             "SCHED_DEADLINE", "SCHED_EXT"};
    return p < std::size(kNames) ? kNames[p] : "policy " + std::to_string(p);
}

}  // namespace

Status detect_sched(TaskView& t, Reasons& out) {
    auto st = t.stat();
    if (!st) return std::unexpected(st.error());
    if ((*st)->policy != 0)
        out.push_back("sched: scheduling policy " + policy_name((*st)->policy) +
                      std::string(kNotYet));
    auto status = t.status();
    if (!status) return std::unexpected(status.error());
    auto self = read_status(getpid());
    if (!self) return std::unexpected(self.error());
    if ((*status)->cpus_allowed != self->cpus_allowed)
        out.push_back("sched: CPU affinity " + (*status)->cpus_allowed + " (a restored task gets " +
                      self->cpus_allowed + ")" + std::string(kNotYet));
    auto oom = t.read("oom_score_adj");
    if (!oom) return std::unexpected(oom.error());
    while (!oom->empty() && oom->back() == '\n') oom->pop_back();
    if (std::string ours = self_value("oom_score_adj"); *oom != ours)
        out.push_back("sched: oom_score_adj " + *oom + " (a restored task gets " + ours + ")" +
                      std::string(kNotYet));
    return {};
}

}  // namespace crfs::state
