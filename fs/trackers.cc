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
    size_t mine = 0;
    for (const auto& x : entries_) mine += x.second.uid == e.uid;
    if (mine >= kMaxTrackedPerUser) {
        auto oldest = std::find_if(entries_.begin(), entries_.end(),
                                   [&](const auto& x) { return x.second.uid == e.uid; });
        entries_.erase(oldest);
    }
    entries_.emplace_back(task, std::move(e));
}

}  // namespace crfs::fs
