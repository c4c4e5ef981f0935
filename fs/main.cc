// crfsd: serves the crfs tree.
//
//   crfsd [-f] [-d] [-s] [-o opt,...] [[SOURCE] MOUNTPOINT]      (default /crfs)
//
// crfs options: -o state_dir=DIR (default /run/crfs) holds the marks state
// file and the lock that keeps two daemons off one state; the per-user limits
// and restore_pid_group (fs/limits.h, docs/security-limits.md). Any other -o
// option must be libfuse's, or crfsd names it and exits 2 before touching
// the state dir or the mount point.
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/filesystem.hpp>

#include "checkpoint/pid_lock.h"
#include "checkpoint/worker.h"
#include "common/io.h"
#include "common/log.h"
#include "common/malloc_arena.h"
#include "common/own_children.h"
#include "fs/inode.h"
#include "fs/kernel_marks.h"
#include "fs/limits.h"
#include "fs/ops.h"
#include "fs/single_loop.h"
#include "state/memory.h"

namespace {

using namespace crfs;
using namespace crfs::fs;

struct Options {
    char* state_dir = nullptr;
    std::vector<std::string> positional;  // [SOURCE] MOUNTPOINT
    LimitConfig limits = LimitConfig::defaults();
};

constexpr int kKeyLimit = 1;

// Takes the mount point out of the arguments so that crfsd, not libfuse's
// parser (which insists that it exist), handles it: it is created if missing.
// mount(8) and fstab (`mount -t fuse.crfsd crfs /crfs`) go through
// mount.fuse3, which passes a source before the mount point: with two
// positional arguments the first is that source, and it is ignored.
// Also applies the limit options.
int take_mountpoint(void* data, const char* arg, int key, fuse_args*) {
    auto* o = static_cast<Options*>(data);
    if (key == kKeyLimit) {
        std::string_view opt(arg);
        size_t eq = opt.find('=');
        if (auto ok = o->limits.set(opt.substr(0, eq), opt.substr(eq + 1)); !ok) {
            std::fprintf(stderr, "crfsd: -o %s: %s\n", arg, ok.error().what.c_str());
            return -1;
        }
        return 0;
    }
    if (key != FUSE_OPT_KEY_NONOPT) return 1;
    o->positional.emplace_back(arg);
    return 0;
}

const fuse_opt kOptSpec[] = {
    {"state_dir=%s", offsetof(Options, state_dir), 0},
    FUSE_OPT_KEY("restore_pid_group=", kKeyLimit),
    FUSE_OPT_KEY("user_spool=", kKeyLimit),
    FUSE_OPT_KEY("user_slots=", kKeyLimit),
    FUSE_OPT_KEY("user_image_handles=", kKeyLimit),
    FUSE_OPT_KEY("user_checkpoints=", kKeyLimit),
    FUSE_OPT_KEY("user_restores=", kKeyLimit),
    FUSE_OPT_END,
};

void usage(const char* prog) {
    std::printf(
        "usage: %s [-f] [-d] [-s] [-o opt,...] [[SOURCE] MOUNTPOINT]\n"
        "Serves the crfs checkpoint/restart tree at MOUNTPOINT (default /crfs).\n\n"
        "    -f                  stay in the foreground\n"
        "    -d                  debug log (implies -f)\n"
        "    -s                  single-threaded\n"
        "    -o state_dir=DIR    where marks persist (default /run/crfs)\n"
        "    -o restore_pid_group=GROUP  members may name slots after pids (root always may)\n"
        "  per-user limits (uid 0 is not bounded; docs/security-limits.md):\n"
        "    -o user_spool=SIZE          image bytes spooled in slots (default min(RAM/2, 16G))\n"
        "    -o user_slots=N             slots (default 64)\n"
        "    -o user_image_handles=N     open handles reading an image (default 8)\n"
        "    -o user_checkpoints=N       checkpoints at once (default 2)\n"
        "    -o user_restores=N          restores at once (default 2)\n\n",
        prog);
    fuse_cmdline_help();
}

// Is `path` a mount point right now? Compares with /proc/self/mountinfo.
bool is_mount_point(const std::string& path) {
    std::ifstream in("/proc/self/mountinfo");
    std::string line;
    while (std::getline(in, line)) {
        // "id parent major:minor root mountpoint ..."
        size_t p = 0;
        for (int field = 0; field < 4 && p != std::string::npos; ++field) p = line.find(' ', p + 1);
        if (p == std::string::npos) continue;
        size_t e = line.find(' ', p + 1);
        if (line.substr(p + 1, e - p - 1) == path) return true;
    }
    return false;
}

Status mkdir_p(const std::string& path, mode_t mode) {
    boost::system::error_code ec;
    bool made = boost::filesystem::create_directories(path, ec);
    if (ec) return sys_error(ec.value(), "mkdir " + path);
    if (made && ::chmod(path.c_str(), mode) < 0) return errno_error("chmod " + path);
    return {};
}

// Checks the mount point and returns its canonical path.
Result<std::string> prepare_mountpoint(const std::string& mp) {
    if (auto ok = mkdir_p(mp, 0755); !ok) return std::unexpected(ok.error());
    char real[PATH_MAX];
    if (!::realpath(mp.c_str(), real)) {
        if (errno == ENOTCONN)
            return make_error(ENOTCONN, mp +
                                            " is a dead FUSE mount (its daemon died); "
                                            "unmount it first: fusermount3 -u " +
                                            mp);
        return errno_error(mp);
    }
    if (is_mount_point(real))
        return make_error(EBUSY, std::string(real) +
                                     " is already a mount point (another crfsd "
                                     "serving it?); unmount it first: fusermount3 -u " +
                                     real);
    return std::string(real);
}

}  // namespace

int main(int argc, char** argv) {
    // malloc: before any thread; what it frees goes back before a tree's
    // clone (common/malloc_arena.h).
    crfs::use_one_malloc_arena();
    // perf: the fd table grown before libfuse's threads start (common/io.h):
    // a tree's restore holds fds per member, and a table grown then, shared
    // by threads, waits for an RCU grace period each time it doubles.
    crfs::presize_fd_table(1024);
    fuse_args args = FUSE_ARGS_INIT(argc, argv);
    std::unique_ptr<fuse_args, decltype(&fuse_opt_free_args)> args_owner(&args, fuse_opt_free_args);
    Options opts;
    if (fuse_opt_parse(&args, &opts, kOptSpec, take_mountpoint) < 0) return 2;
    std::unique_ptr<char, decltype(&std::free)> state_dir_owner(opts.state_dir, std::free);
    fuse_cmdline_opts cl{};
    if (fuse_parse_cmdline(&args, &cl) != 0) return 2;
    std::unique_ptr<char, decltype(&std::free)> mp_owner(cl.mountpoint, std::free);
    if (cl.show_help) {
        usage(argv[0]);
        return 0;
    }
    if (cl.show_version) {
        std::printf("crfsd %s, libfuse %s\n", CRFS_VERSION, fuse_pkgversion());
        return 0;
    }
    log_init(true, cl.debug);

    if (opts.positional.size() > 2 || cl.mountpoint) {
        std::fprintf(stderr, "crfsd: one mount point only (see crfsd -h)\n");
        return 2;
    }
    std::string mountpoint = opts.positional.empty() ? "/crfs" : opts.positional.back();
    std::string state_dir = opts.state_dir ? opts.state_dir : "/run/crfs";
    Daemon daemon(state_dir + "/marks", opts.limits);

    // As root, serve every user; crfs checks rights itself, so the kernel's
    // default_permissions stays off.
    if (::geteuid() == 0) fuse_opt_add_arg(&args, "-oallow_other");
    fuse_opt_add_arg(&args, "-ofsname=crfs");
    // First, so that an unknown -o option is named (by libfuse) before
    // anything else can fail.
    fuse_session* se = fuse_session_new(&args, &crfs_ops(), sizeof(fuse_lowlevel_ops), &daemon);
    if (!se) {
        std::fprintf(stderr, "crfsd: bad options (see crfsd -h)\n");
        return 2;
    }
    std::unique_ptr<fuse_session, decltype(&fuse_session_destroy)> se_owner(se,
                                                                            fuse_session_destroy);

    auto mp = prepare_mountpoint(mountpoint);
    if (!mp) {
        log_error("%s", mp.error().what.c_str());
        return 1;
    }
    if (auto ok = mkdir_p(state_dir, 0700); !ok) {
        log_error("%s", ok.error().what.c_str());
        return 1;
    }
    auto lock = open_fd(state_dir + "/crfsd.lock", O_RDWR | O_CREAT, 0600);
    if (!lock) {
        log_error("%s", lock.error().what.c_str());
        return 1;
    }
    if (::flock(lock->get(), LOCK_EX | LOCK_NB) < 0) {
        log_error("state dir %s is in use by another crfsd", state_dir.c_str());
        return 1;
    }

    // Each watched task and mark holds a pidfd: allow as many as we may.
    rlimit nofile;
    if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &nofile);
    }

    daemon.self_tgid = ::getpid();
    init_kernel_marks();
    if (auto ok = daemon.marks.load(); !ok) {
        log_error("%s", ok.error().what.c_str());
        return 1;
    }

    int rc = 1;
    if (fuse_set_signal_handlers(se) == 0) {
        if (fuse_session_mount(se, mp->c_str()) == 0) {
            log_info("serving %s", mp->c_str());
            fuse_daemonize(cl.foreground);
            log_init(cl.foreground, cl.debug);
            // Before any thread starts: setenv is not thread-safe.
            if (!cl.foreground) ::setenv(kLogToSyslogEnv, "1", 1);
            daemon.self_tgid = ::getpid();
            // crfsd is a child subreaper only while it kills a failed tree
            // (state/tree_restore.cc). Started as one (by a wrapper that set
            // it and exec'd crfsd: execve keeps it), every orphan of a
            // restored tree would come to it at any time and stay a zombie.
            if (int was = 0; ::prctl(PR_GET_CHILD_SUBREAPER, &was, 0, 0, 0) == 0 && was != 0) {
                ::prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
                log_info("started as a child subreaper: no longer one (orphans of restored "
                         "tasks go to the subreaper above or to init)");
            }
            // A task a live snapshot streams: its write protection is ours.
            state::set_ours_to_protect([](pid_t pid) { return PidLock::busy_at_or_above(pid); });
            // Forget /crfs/<pid> in the kernel's dentry cache when the task exits.
            auto forget = [se](pid_t pid) {
                std::string name = std::to_string(pid);
                fuse_lowlevel_notify_inval_entry(se, kRootIno, name.c_str(), name.size());
            };
            daemon.tasks.start(forget);
            Status started = daemon.exits.start();
            // Orphans that come to crfsd while it is a subreaper (a failed
            // tree's cleanup) are watched and reaped (common/own_children.h).
            own_children::set_adopter([&daemon](pid_t pid, UniqueFd fd) {
                return daemon.reaper.adopt_orphan(pid, std::move(fd));
            });
            // perf: a checkpoint worker spawned ahead, if asked (checkpoint/worker.h:
            // off by default, its images stream slower into files).
            if (const char* v = ::getenv("CRFS_WORKER_SPARE"); v && std::string_view(v) == "1")
                keep_worker_spare(true);
            if (!started) {
                log_error("%s", started.error().what.c_str());
            } else if (cl.singlethread) {
                rc = session_loop_on_fixed_stack(se);  // not on the main stack (fs/single_loop.h)
            } else {
                fuse_loop_config* cfg = fuse_loop_cfg_create();
                fuse_loop_cfg_set_clone_fd(cfg, static_cast<unsigned>(cl.clone_fd));
                fuse_loop_cfg_set_max_threads(cfg, cl.max_threads);
                rc = fuse_session_loop_mt(se, cfg);
                fuse_loop_cfg_destroy(cfg);
            }
            keep_worker_spare(false);
            own_children::set_adopter(nullptr);  // a late one stays crfsd's: init's at our exit
            fuse_session_unmount(se);
            log_info("unmounted %s", mp->c_str());
        }
        fuse_remove_signal_handlers(se);
    }
    se_owner.reset();
    // The loop returns the number of the signal that ended it: SIGTERM and
    // SIGINT are the way to stop crfsd, not a failure.
    return rc == 0 || rc == SIGTERM || rc == SIGINT ? 0 : 1;
}
