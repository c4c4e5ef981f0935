#include "common/cpu_placement.h"

#include "common/procfs.h"

namespace crfs {

int last_cpu_of(pid_t tid) {
    if (tid <= 0) return -1;
    auto st = read_stat(tid);
    return st && st->processor >= 0 && st->processor < CPU_SETSIZE ? st->processor : -1;
}

RunOn::RunOn(int cpu) {
    if (cpu < 0 || cpu >= CPU_SETSIZE || sched_getcpu() == cpu) return;
    if (sched_getaffinity(0, sizeof own_, &own_) != 0 || !CPU_ISSET(cpu, &own_)) return;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    moved_ = sched_setaffinity(0, sizeof one, &one) == 0;
}

RunOn::~RunOn() {
    if (moved_) sched_setaffinity(0, sizeof own_, &own_);
}

bool keep_off(pid_t tid, const cpu_set_t& allowed, int cpu) {
    if (tid <= 0) return false;
    cpu_set_t set = allowed;
    if (cpu >= 0 && cpu < CPU_SETSIZE && CPU_ISSET(cpu, &set) && CPU_COUNT(&set) >= 2)
        CPU_CLR(cpu, &set);
    return sched_setaffinity(tid, sizeof set, &set) == 0;
}

}  // namespace crfs
