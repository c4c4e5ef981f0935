// The children this process made itself, told apart from the orphans it
// adopted (docs/trees.md "A failed restore"). crfsd is a child subreaper only
// while it kills a failed tree (state/tree_restore.cc `Subreaper`); an orphan
// anywhere below it meanwhile (a child of a restored tree whose parent ends,
// or of another restore in progress) comes to it rather than to init, and no
// owner reaps it. So every place where crfsd itself makes a process holds a
// `Making` across the fork (clone3, posix_spawn) and registers the pid before
// it lets go; the owner reaps it with `waitpid` or `waitid_pidfd` below,
// which forget it in the same step. When the last
// holder of the subreaper flag lets go, `adopt_orphans` lists crfsd's
// children: each that is not registered came to it as an orphan, and is
// reaped at once (a zombie) or handed to the adopter (the daemon's reaper,
// fs/reaper.h: a pidfd watched until it ends, then reaped).
//
// Locks: forks hold a shared lock (many at once), the listing's check of what
// it saw the exclusive one (writer first: forks never starve it), so no child
// is ever taken for an orphan before it is registered. The walk of /proc
// before that check holds no lock. Only the parent touches the registry: a clone that copies
// the daemon's memory (a restored task) never does, nor a posix_spawn child.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <functional>
#include <vector>

#include "common/unique_fd.h"

namespace crfs::own_children {

// Held in the parent across the syscall that makes a child.
class Making {
  public:
    Making();
    ~Making();
    Making(const Making&) = delete;
    Making& operator=(const Making&) = delete;
    // `pid` (> 0: made; anything else is ignored) is this process's child now.
    void made(long pid);
};

// waitpid(2) and waitid(P_PIDFD, WEXITED) of a registered child, EINTR
// retried, that forget `pid` once it is reaped (waitpid: or is no child), in
// one step under the registry's lock: a child made under that pid again
// meanwhile (a restore chooses its pids) is never forgotten by mistake. Without WNOHANG they first
// wait without reaping (WNOWAIT), the lock not held, until it ended.
pid_t waitpid(pid_t pid, int* status, int options);
int waitid_pidfd(pid_t pid, int pidfd, siginfo_t* info, int options);

// Whether `pid` is registered (tests).
bool registered(pid_t pid);
// Tests: `hook` runs in adopt_orphans after the walk of /proc, before the
// check under the lock (empty: none).
void test_after_walk(std::function<void()> hook);

// Gets each living adopted orphan, registered by then: watches `pidfd` until
// the process ends and reaps it then (waitid_pidfd). Runs under the listing's
// lock: it must not make a process. False: it does not watch it (the next
// listing finds it again).
using Adopter = std::function<bool(pid_t pid, UniqueFd pidfd)>;
// Installs (or, with an empty one, removes) the adopter: crfsd does, once its
// exit watcher runs. Without one nothing is listed: a tool or bench that
// restores trees itself makes children it does not register.
void set_adopter(Adopter adopter);

struct Orphans {
    std::vector<pid_t> reaped;   // zombies already: reaped here
    std::vector<pid_t> adopted;  // alive (or a zombie a tracer holds): the adopter watches it
    std::vector<pid_t> left;     // the adopter did not watch it: crfsd's until it ends
};
// Every child of this process that is not registered: reaped or adopted
// (nothing without an adopter). Registered pids that are no child any more
// (their owner reaped them and did not say) are forgotten. Call it once the
// subreaper flag is off (then no orphan comes after the listing), never
// holding a Making (the same lock).
Orphans adopt_orphans();

}  // namespace crfs::own_children
