// Test support: run shell commands with a bound on time, and a crfsd mounted
// on a temporary directory that is always unmounted and killed, even when a
// test fails or the test process dies (the daemon gets SIGTERM from
// PR_SET_PDEATHSIG and unmounts).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace crfs::test {

struct ShellResult {
    int status = -1;  // exit code; 128+N when killed by signal N; -1 on timeout
    std::string out;
    std::string err;
};

// Runs `cmd` with /bin/sh -c and `env` prepended ("M=/tmp/x; export M; ").
// Kills it (and its process group) after `timeout`.
ShellResult sh(const std::string& cmd,
               std::chrono::milliseconds timeout = std::chrono::seconds(30));

// Polls `cond` every 10 ms until it holds or `timeout` passes.
bool wait_until(const std::function<bool()>& cond,
                std::chrono::milliseconds timeout = std::chrono::seconds(10));

// Starts a program with stdin/stdout/stderr on /dev/null, in its own process
// group, killed with SIGKILL if the test process dies.
pid_t spawn(const std::vector<std::string>& argv);
// SIGKILLs and reaps a spawned process (no-op for pid <= 0).
void kill_and_reap(pid_t pid);

// A fresh directory under /tmp, world-searchable (so unprivileged test users
// reach a mount inside it), removed with its content on destruction.
class TempDir {
  public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }

  private:
    std::string path_;
};

class MountedCrfs {
  public:
    // Mounts crfsd at <tmp>/mnt with state in <tmp>/state. Check ok().
    MountedCrfs();
    ~MountedCrfs();
    MountedCrfs(const MountedCrfs&) = delete;
    MountedCrfs& operator=(const MountedCrfs&) = delete;

    bool ok() const { return daemon_ > 0; }
    // Stops the daemon (SIGTERM, bounded) and starts it again on the same state.
    bool restart();
    void stop();
    bool start();
    const std::string& mnt() const { return mnt_; }
    const std::string& state_dir() const { return state_; }
    std::string log() const;
    pid_t daemon_pid() const { return daemon_; }
    // A shell prefix exporting M=<mount point>.
    std::string env() const { return "M=" + mnt_ + "; export M; "; }

  private:
    TempDir dir_;
    std::string mnt_, state_, log_;
    pid_t daemon_ = -1;
};

bool is_mounted(const std::string& path);

}  // namespace crfs::test
