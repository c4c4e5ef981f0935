#include "common/own_children.h"

#include <dirent.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_set>
#include <utility>

#include "common/log.h"
#include "common/procfs.h"

namespace crfs::own_children {
namespace {

// Forks read-lock it, the listing write-locks it; writers first (a fork that
// comes while the listing waits waits too), never taken twice by a thread.
pthread_rwlock_t g_making = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;
struct Registry {
    std::mutex mu;  // guards the rest
    std::unordered_set<pid_t> pids;
    Adopter adopter;
    std::function<void()> after_walk;  // tests
};

// Never destroyed: a thread that outlives main's return (a worker reaped by
// checkpoint/piped_image.cc's detached wait) may still use it while exit()
// runs the destructors of statics.
Registry& reg() {
    static Registry* r = new Registry;
    return *r;
}

// The pid of every process of /proc whose parent is this process. /proc's
// readdir walks the pids in order from where it was, so none that stays is
// missed while others end meanwhile (the children files of
// /proc/self/task/*/children skip one when an earlier sibling is reaped
// between two reads).
std::vector<pid_t> children_now(pid_t self) {
    std::vector<pid_t> out;
    DIR* d = opendir("/proc");
    if (!d) {
        log_error("orphans: open /proc: %s", std::strerror(errno));
        return out;
    }
    while (dirent* e = readdir(d)) {
        char* end = nullptr;
        long pid = std::strtol(e->d_name, &end, 10);
        if (pid <= 0 || *end != '\0') continue;
        auto st = read_stat(pid_t(pid));
        if (st && st->ppid == self) out.push_back(pid_t(pid));
    }
    closedir(d);
    return out;
}

}  // namespace

Making::Making() {
    pthread_rwlock_rdlock(&g_making);
}

Making::~Making() {
    pthread_rwlock_unlock(&g_making);
}

void Making::made(long pid) {
    if (pid <= 0) return;
    std::lock_guard lock(reg().mu);
    reg().pids.insert(pid_t(pid));
}

namespace {

// Without WNOHANG: waits, reaping nothing, until `id` can be reaped (or the
// wait fails: the reap that follows says how).
void wait_ended(idtype_t type, id_t id, int options) {
    if (options & WNOHANG) return;
    siginfo_t si{};
    while (waitid(type, id, &si, WEXITED | WNOWAIT | (options & (__WALL | __WCLONE))) < 0 &&
           errno == EINTR) {
    }
}

}  // namespace

pid_t waitpid(pid_t pid, int* status, int options) {
    wait_ended(P_PID, id_t(pid), options);
    std::lock_guard lock(reg().mu);
    pid_t r;
    while ((r = ::waitpid(pid, status, options | WNOHANG)) < 0 && errno == EINTR) {
    }
    int err = errno;
    if (r == pid || (r < 0 && err == ECHILD)) reg().pids.erase(pid);
    errno = err;
    return r;
}

int waitid_pidfd(pid_t pid, int pidfd, siginfo_t* info, int options) {
    wait_ended(P_PIDFD, id_t(pidfd), options);
    std::lock_guard lock(reg().mu);
    *info = siginfo_t{};
    int r;
    while ((r = ::waitid(P_PIDFD, id_t(pidfd), info, WEXITED | WNOHANG | options)) < 0 &&
           errno == EINTR) {
    }
    int err = errno;
    // ECHILD: the pidfd's process is no child of ours (`pid` may be another's).
    if (r == 0 && info->si_pid != 0) reg().pids.erase(pid);
    errno = err;
    return r;
}

bool registered(pid_t pid) {
    std::lock_guard lock(reg().mu);
    return reg().pids.contains(pid);
}

void test_after_walk(std::function<void()> hook) {
    std::lock_guard lock(reg().mu);
    reg().after_walk = std::move(hook);
}

void set_adopter(Adopter adopter) {
    std::lock_guard lock(reg().mu);
    reg().adopter = std::move(adopter);
}

Orphans adopt_orphans() {
    Orphans out;
    {
        std::lock_guard lock(reg().mu);
        if (!reg().adopter) return out;  // not crfsd: its own children are not registered
    }
    pid_t self = getpid();
    // /proc must be our pid namespace's: its pids are the ones clone returned.
    char link[32] = {};
    if (readlink("/proc/self", link, sizeof link - 1) <= 0 || std::atoi(link) != self) {
        log_error("orphans: /proc is not of crfsd's pid namespace: adopted orphans are not reaped");
        return out;
    }
    // An exit that still re-parents its children to us (it read the
    // subreaper flag before it went off) does so holding the kernel's
    // tasklist lock; waitid takes that lock too, so it is done by now.
    siginfo_t si{};
    (void)waitid(P_PID, id_t(self), &si, WEXITED | WNOHANG);
    // The walk (the slow part: every process of the host) without the lock:
    // every orphan is in it (none comes after it, and only we reap one), and
    // a child made meanwhile is registered once we have the lock.
    auto kids = children_now(self);
    std::function<void()> after_walk;
    {
        std::lock_guard lock(reg().mu);
        after_walk = reg().after_walk;
    }
    if (after_walk) after_walk();
    pthread_rwlock_wrlock(&g_making);  // no child is made until we are done
    std::vector<pid_t> orphans;
    Adopter adopter;
    {
        std::lock_guard lock(reg().mu);
        std::unordered_set<pid_t> seen(kids.begin(), kids.end());
        for (pid_t pid : kids)
            if (!reg().pids.contains(pid)) orphans.push_back(pid);
        // A registered pid that is no child of ours now (its owner reaped it
        // and did not say) is forgotten; one made during the walk stays.
        std::erase_if(reg().pids, [&](pid_t pid) {
            siginfo_t child{};
            return !seen.contains(pid) &&
                   waitid(P_PID, id_t(pid), &child, WEXITED | WNOHANG | WNOWAIT | __WALL) < 0 &&
                   errno == ECHILD;
        });
        adopter = reg().adopter;
    }
    for (pid_t pid : orphans) {
        // Seen unregistered in the walk: an orphan, or a child made during
        // the walk and reaped by its owner since (its pid maybe another's by
        // now: the pidfd's waitid says whether this process is our child).
        UniqueFd fd(int(syscall(SYS_pidfd_open, pid, 0)));
        if (!fd) continue;  // that child, reaped
        siginfo_t info{};
        if (waitid_pidfd(pid, fd.get(), &info, WNOHANG | __WALL) < 0) continue;  // no child
        if (info.si_pid != 0) {
            out.reaped.push_back(pid);
            continue;
        }
        bool watched = false;
        if (adopter) {
            {
                std::lock_guard lock(reg().mu);  // the adopter's now: the next listing leaves it
                reg().pids.insert(pid);
            }
            watched = adopter(pid, std::move(fd));
            if (!watched) {
                std::lock_guard lock(reg().mu);
                reg().pids.erase(pid);
            }
        }
        (watched ? out.adopted : out.left).push_back(pid);
        if (!watched) log_error("orphans: adopted pid %d is not reaped when it ends", pid);
    }
    pthread_rwlock_unlock(&g_making);
    for (pid_t pid : out.reaped) log_debug("orphans: reaped adopted pid %d", pid);
    return out;
}

}  // namespace crfs::own_children
