#include "restorer/writer.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>
#include <thread>

#include "common/io.h"
#include "common/strfmt.h"
#include "restorer/child.h"

namespace crfs {

namespace {

// "N:controllers:path" lines of /proc/<pid>/cgroup, by "N:controllers".
std::vector<std::pair<std::string, std::string>> cgroups_of(const std::string& proc) {
    std::vector<std::pair<std::string, std::string>> out;
    auto text = read_file(proc + "/cgroup");
    if (!text) return out;
    std::istringstream in(*text);
    for (std::string line; std::getline(in, line);) {
        size_t c1 = line.find(':'), c2 = line.find(':', c1 + 1);
        if (c1 == std::string::npos || c2 == std::string::npos) continue;
        out.push_back({line.substr(0, c2), line.substr(c2 + 1)});
    }
    return out;
}

std::string controllers(const std::string& key) {
    return key.substr(key.find(':') + 1);
}

// The mount point of the hierarchy "N:controllers" in our mount namespace, or "".
std::string hierarchy_mount(const std::string& key) {
    std::string ctrls = controllers(key);
    auto text = read_file("/proc/self/mountinfo");
    if (!text) return "";
    std::istringstream in(*text);
    for (std::string line; std::getline(in, line);) {
        std::istringstream f(line);
        std::string id, parent, devno, root, mnt, opts, tok;
        f >> id >> parent >> devno >> root >> mnt >> opts;
        while (f >> tok && tok != "-") {
        }
        std::string fstype, source, super;
        f >> fstype >> source >> super;
        if (root != "/") continue;
        if (ctrls.empty()) {
            if (fstype == "cgroup2") return mnt;
            continue;
        }
        if (fstype != "cgroup") continue;
        std::string s = "," + super + ",";
        bool all = true;
        std::istringstream cs(ctrls);
        for (std::string c; std::getline(cs, c, ',');)
            if (s.find("," + c + ",") == std::string::npos) all = false;
        if (all) return mnt;
    }
    return "";
}

// /proc/<pid>/limits: a header, then one line per resource in RLIMIT_*
// order, printed as "%-25s %-20s %-20s %-10s".
Result<std::vector<struct rlimit>> writer_rlimits(const std::string& proc) {
    auto text = read_file(proc + "/limits");
    if (!text) return std::unexpected(text.error().context("the writer's rlimits"));
    std::vector<struct rlimit> out;
    std::istringstream in(*text);
    std::string line;
    std::getline(in, line);
    auto value = [](std::string v) -> rlim_t {
        v = v.substr(0, v.find(' '));
        return v == "unlimited" ? RLIM_INFINITY : rlim_t(std::stoull(v));
    };
    while (out.size() < 16 && std::getline(in, line)) {
        if (line.size() < 47)
            return make_error(EIO, "unexpected line in " + proc + "/limits: " + line);
        out.push_back({value(line.substr(26)), value(line.substr(47))});
    }
    if (out.size() != 16) return make_error(EIO, proc + "/limits: fewer than 16 limits");
    return out;
}

Result<WriterContext> read_writer_context(const RestoreRequest& req) {
    WriterContext p;
    std::ifstream lc("/proc/sys/kernel/cap_last_cap");
    if (uint32_t v; lc >> v) p.last_cap = v;
    pid_t w = req.writer_pid > 0 ? req.writer_pid : getpid();
    std::string proc = strfmt("/proc/{}", w);
    // Rlimits and nice: the writer's, capped by ours (raising a hard limit
    // needs CAP_SYS_RESOURCE, which this daemon may lack).
    // (prlimit(2) of another process needs CAP_SYS_RESOURCE; /proc/<pid>/limits
    // is world-readable.)
    auto theirs_all = writer_rlimits(proc);
    if (!theirs_all) return std::unexpected(theirs_all.error());
    for (int i = 0; i < 16; ++i) {
        struct rlimit mine, theirs = (*theirs_all)[size_t(i)];
        if (prlimit(0, __rlimit_resource(i), nullptr, &mine) < 0)
            return errno_error(strfmt("reading rlimit {}", i));
        p.rlimits[i].rlim_max = std::min(mine.rlim_max, theirs.rlim_max);
        p.rlimits[i].rlim_cur = std::min(theirs.rlim_cur, p.rlimits[i].rlim_max);
    }
    errno = 0;
    p.nice = getpriority(PRIO_PROCESS, id_t(w));
    if (errno) return errno_error("reading the writer's nice value");
    auto theirs = read_file(proc + "/loginuid"), mine = read_file("/proc/self/loginuid");
    if (theirs && mine && *theirs != *mine) p.loginuid = *theirs;
    auto ours = cgroups_of("/proc/self");
    auto theirs_cg = cgroups_of(proc);
    // A cgroup name may hold a newline: a line that repeats a hierarchy is a
    // forged one, and then nothing of the file is believed.
    for (size_t i = 0; i < theirs_cg.size(); ++i)
        for (size_t k = 0; k < i; ++k)
            if (controllers(theirs_cg[i].first) == controllers(theirs_cg[k].first))
                return make_error(EINVAL, "the writer's cgroup names hold a newline");
    for (const auto& [key, path] : theirs_cg) {
        if (std::find(ours.begin(), ours.end(), std::pair{key, path}) != ours.end()) continue;
        std::string mnt = hierarchy_mount(key);
        if (mnt.empty()) continue;  // not mounted here: nothing to join
        if (path.find("/..") != std::string::npos)
            return make_error(EINVAL, "the writer's cgroup path is not canonical");
        p.cgroup_procs.push_back(mnt + (path == "/" ? "" : path) + "/cgroup.procs");
    }
    return p;
}

}  // namespace

Result<WriterPlan> plan_writer(const DecodedImage& img, const RestoreRequest& req,
                               std::optional<WriterContext>* shared) {
    WriterPlan p;
    p.as_writer = !req.writer_is_root;
    p.uid = img.creds.uid[1];
    p.gid = img.creds.gid[1];
    p.groups.assign(img.groups.begin(), img.groups.end());
    p.cap_bnd = img.creds.cap_bnd;
    if (shared && *shared) {
        p.context = **shared;
        return p;
    }
    auto context = read_writer_context(req);
    if (!context) return std::unexpected(context.error());
    p.context = std::move(*context);
    if (shared) *shared = p.context;
    return p;
}

Status as_writer(const WriterPlan& plan, const std::function<Status()>& fn) {
    if (!plan.as_writer) return fn();
    Status out;
    // Raw syscalls change this thread's credentials only (glibc's wrappers
    // would change every thread of the daemon). The thread ends with fn.
    std::thread t;
    try {
        t = std::thread([&] {
            if (syscall(SYS_setgroups, plan.groups.size(), plan.groups.data()) < 0 ||
                syscall(SYS_setresgid, plan.gid, plan.gid, plan.gid) < 0 ||
                syscall(SYS_setresuid, plan.uid, plan.uid, plan.uid) < 0) {
                out = errno_error("taking the writer's credentials");
                return;
            }
            out = fn();
        });
    } catch (const std::system_error& e) {
        return make_error(EAGAIN, std::string("starting the writer's helper thread: ") + e.what());
    }
    t.join();
    return out;
}

void child_writer_context(const WriterPlan& p, int status_fd) {
    auto put = [&](const char* path, const char* text, size_t len, int what) {
        int fd = int(syscall(SYS_open, path, O_WRONLY | O_CLOEXEC, 0));
        if (fd < 0) child_fail(status_fd, CRFS_RA_STEP_WRITER_CONTEXT, errno, uint64_t(what));
        if (::write(fd, text, len) != ssize_t(len))
            child_fail(status_fd, CRFS_RA_STEP_WRITER_CONTEXT, errno, uint64_t(what));
        ::close(fd);
    };
    const WriterContext& c = p.context;
    if (!c.loginuid.empty()) put("/proc/self/loginuid", c.loginuid.data(), c.loginuid.size(), 1);
    for (const auto& procs : c.cgroup_procs) put(procs.c_str(), "0", 1, 2);
    if (!p.as_writer) return;
    for (int i = 0; i < 16; ++i)
        if (syscall(SYS_prlimit64, 0, i, &c.rlimits[i], nullptr) < 0)
            child_fail(status_fd, CRFS_RA_STEP_WRITER_CONTEXT, errno, 3);
    if (syscall(SYS_setpriority, PRIO_PROCESS, 0, c.nice) < 0)
        child_fail(status_fd, CRFS_RA_STEP_WRITER_CONTEXT, errno, 4);
    // The bounding set may only shrink; dropping needs CAP_SETPCAP, which the
    // switch below takes away.
    for (uint32_t k = 0; k <= c.last_cap && k < 64; ++k)
        if (!(p.cap_bnd & (1ull << k)) && syscall(SYS_prctl, PR_CAPBSET_DROP, k, 0, 0, 0) < 0)
            child_fail(status_fd, CRFS_RA_STEP_WRITER_CONTEXT, errno, 5);
}

void child_become_writer(const WriterPlan& p, int status_fd) {
    auto fail = [&](int what) { child_fail(status_fd, CRFS_RA_STEP_BECOME_WRITER, errno, what); };
    if (p.as_writer) {
        if (p.keep_exe_cap && syscall(SYS_prctl, PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) fail(1);
        if (syscall(SYS_setgroups, p.groups.size(), p.groups.data()) < 0) fail(2);
        if (syscall(SYS_setresgid, p.gid, p.gid, p.gid) < 0) fail(3);
        if (syscall(SYS_setresuid, p.uid, p.uid, p.uid) < 0) fail(4);
        // Nothing but CAP_CHECKPOINT_RESTORE (PR_SET_MM_MAP's exe_fd), and only
        // when the blob sets the exe link; it drops it right after.
        __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
        __user_cap_data_struct data[2] = {};
        if (p.keep_exe_cap) {
            data[1].permitted = data[1].effective = 1u << (kCapCheckpointRestore - 32);
        }
        if (syscall(SYS_capset, &hdr, data) < 0) fail(5);
        if (syscall(SYS_prctl, PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0) fail(6);
        if (syscall(SYS_getuid) != long(p.uid) || syscall(SYS_geteuid) != long(p.uid)) {
            errno = EPERM;
            fail(7);
        }
        // Not dumpable, whatever fs.suid_dumpable made of the change above (1
        // would let the writer ptrace this process, which until the blob
        // unmaps it holds a copy of the daemon's memory: other requests'
        // buffers). The blob sets the image's value last, after that unmap.
        if (syscall(SYS_prctl, PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) fail(9);
    }
    // A fresh session keyring, owned by whoever the task is now: never the
    // daemon's (KEYCTL_JOIN_SESSION_KEYRING with no name).
    if (syscall(SYS_keyctl, 1, nullptr, 0, 0, 0) < 0) fail(8);
}

}  // namespace crfs
