#include "common/cpu_placement.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace crfs {

int last_cpu_of(pid_t tid) {
    if (tid <= 0) return -1;
    char path[48];
    std::snprintf(path, sizeof path, "/proc/%d/stat", int(tid));
    int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char buf[1024];
    ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    if (n <= 0) return -1;
    buf[n] = '\0';
    // Fields after the command's closing parenthesis: the state is field 3.
    const char* p = std::strrchr(buf, ')');
    if (!p) return -1;
    int field = 2;
    for (++p; *p; ++p) {
        if (*p != ' ') continue;
        if (++field == 39) {
            char* end = nullptr;
            long cpu = std::strtol(p + 1, &end, 10);
            return end != p + 1 && cpu >= 0 && cpu < CPU_SETSIZE ? int(cpu) : -1;
        }
    }
    return -1;
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
