#include "fs/trackers.h"

#include <algorithm>
#include <string>

namespace crfs::fs {

Result<DeltaTrackers::Entry> DeltaTrackers::take(const TaskId& task) {
    std::lock_guard l(mu_);
    if (std::find(busy_.begin(), busy_.end(), task) != busy_.end())
        return make_error(EBUSY, "delta of task " + std::to_string(task.pid) +
                                     ": another read of it is being taken; try again");
    busy_.push_back(task);
    Entry out;
    auto it = std::find_if(entries_.begin(), entries_.end(),
                           [&](const auto& e) { return e.first == task; });
    if (it != entries_.end()) {
        out = std::move(it->second);
        entries_.erase(it);
    }
    return out;
}

void DeltaTrackers::release(const TaskId& task) {
    std::lock_guard l(mu_);
    std::erase(busy_, task);
}

void DeltaTrackers::put(const TaskId& task, Entry e) {
    std::lock_guard l(mu_);
    std::erase(busy_, task);
    std::erase_if(entries_, [](const auto& x) { return !task_alive(x.first); });
    for (;;) {
        size_t mine = 0, processes = e.chain.members.size();
        for (const auto& x : entries_)
            if (x.second.uid == e.uid) ++mine, processes += x.second.chain.members.size();
        if (mine < kMaxTrackedPerUser && processes <= kMaxTrackedProcessesPerUser) break;
        auto oldest = std::find_if(entries_.begin(), entries_.end(),
                                   [&](const auto& x) { return x.second.uid == e.uid; });
        if (oldest == entries_.end()) break;  // this one alone (at most kMaxProcesses)
        entries_.erase(oldest);
    }
    entries_.emplace_back(task, std::move(e));
}

}  // namespace crfs::fs
