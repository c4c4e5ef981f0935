// The task as a whole (state/task_attrs.h): detect, dump, restore.
#include "state/task_attrs.h"

#include <grp.h>
#include <pwd.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <fstream>
#include <string>

#include "checkpoint/task_attrs.h"
#include "common/io.h"
#include "common/strfmt.h"
#include "restorer/child.h"
#include "state/check.h"
#include "state/fs.h"
#include "state/kind.h"

// --- detect ------------------------------------------------------------------

namespace crfs::state {

Status detect_task(TaskView& t, Reasons& out) {
    auto st = t.stat();
    if (!st) return std::unexpected(st.error());
    if ((*st)->flags & kPfKthread) out.push_back("task: kernel thread");
    if ((*st)->state == 'Z' || (*st)->state == 'X')
        out.push_back("task: zombie (exited, not yet reaped by its parent)");
    if (!out.empty()) return {};
    auto status = t.status();
    if (!status) return std::unexpected(status.error());
    if (pid_t tracer = (*status)->tracer_pid; tracer != 0 && !t.traced_by_us(tracer))
        out.push_back("task: being traced by pid " + std::to_string(t.tracer_tgid(tracer)));
    return {};
}

}  // namespace crfs::state

namespace crfs {

// --- dump (checkpoint) -------------------------------------------------------

namespace {

template <class T>
bool parse_num(std::string_view s, T& out, int base = 10) {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
    return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

Status with_stat(TaskAttrs& a, const ProcStat& stat, const ProcStatus& status) {
    if (!status.has_umask)
        return make_error(ENOTSUP, "no Umask in /proc/<pid>/status (kernel < 4.7)");
    a.stat = stat;
    a.status = status;
    return {};
}

Result<TaskAttrs> read_task_attrs(pid_t pid) {
    TaskAttrs a;
    auto pers = read_proc(pid, "personality");
    if (!pers) return std::unexpected(pers.error());
    if (!parse_num(std::string_view(*pers).substr(0, pers->find('\n')), a.personality, 16))
        return make_error(EINVAL, "parse " + proc_path(pid, "personality"));

    for (auto [name, dst] : {std::pair{"cwd", &a.cwd}, {"root", &a.root}, {"exe", &a.exe}}) {
        auto l = read_link(proc_path(pid, name));
        if (!l)
            return std::unexpected(l.error().code == ENOENT ? Error{ESRCH, l.error().what}
                                                            : l.error());
        *dst = std::move(*l);
    }

    auto auxv = read_proc(pid, "auxv", 4096);
    if (!auxv) return std::unexpected(auxv.error());
    a.auxv.resize(auxv->size() / 8);
    std::memcpy(a.auxv.data(), auxv->data(), a.auxv.size() * 8);
    // Trim after AT_NULL: the kernel pads the saved vector with zero pairs.
    for (size_t i = 0; i + 1 < a.auxv.size(); i += 2)
        if (a.auxv[i] == 0) {
            a.auxv.resize(i + 2);
            break;
        }

    auto limits_text = read_proc(pid, "limits", 8192);
    if (!limits_text) return std::unexpected(limits_text.error());
    auto limits = parse_limits(*limits_text);
    if (!limits) return std::unexpected(limits.error().context(proc_path(pid, "limits")));
    for (int r = 0; r < 16; ++r) {
        a.rlimits.cur[r] = limits->cur[r];
        a.rlimits.max[r] = limits->max[r];
    }
    return a;
}

Result<Limits> parse_limits(std::string_view text) {
    // "Limit  Soft Limit  Hard Limit  Units" then one row per resource, in
    // RLIMIT_* order, formatted "%-25s %-20s %-20s %-10s": the name has spaces,
    // the values sit in fixed columns.
    auto value = [](std::string_view field, uint64_t& out) {
        while (!field.empty() && field.back() == ' ') field.remove_suffix(1);
        while (!field.empty() && field.front() == ' ') field.remove_prefix(1);
        if (field == "unlimited") {
            out = RLIM64_INFINITY;
            return true;
        }
        auto [p, ec] = std::from_chars(field.data(), field.data() + field.size(), out);
        return ec == std::errc() && p == field.data() + field.size() && !field.empty();
    };
    Limits l{};
    size_t nl = text.find('\n');
    if (nl == std::string_view::npos || !text.starts_with("Limit"))
        return make_error(EIO, "parse limits: no header");
    text.remove_prefix(nl + 1);
    for (int r = 0; r < 16; ++r) {
        nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        if (nl == std::string_view::npos || line.size() < 67 ||
            !value(line.substr(26, 20), l.cur[r]) || !value(line.substr(47, 20), l.max[r]))
            return make_error(EIO, strfmt("parse limits: bad row {}", r));
        text.remove_prefix(nl + 1);
    }
    return l;
}

// --- restore -----------------------------------------------------------------

AttrPlan plan_attrs(const DecodedImage& img) {
    AttrPlan p;
    p.image_pid = img.task.pid;
    p.image_sid = img.task.sid;
    p.image_pgid = img.task.pgid;
    p.cwd = img.cwd;
    p.umask = img.fs.umask & 0777;
    p.nice = img.task.nice;
    p.personality = img.task.personality;
    std::memcpy(p.comm, img.task.comm, sizeof p.comm);
    p.comm[15] = 0;
    for (int i = 0; i < 16; ++i) p.rlimits[i] = {img.rlimits.cur[i], img.rlimits.max[i]};
    p.fsuid = img.creds.uid[3];
    p.fsgid = img.creds.gid[3];
    p.groups.assign(img.groups.begin(), img.groups.end());
    return p;
}

void fill_creds(const DecodedImage& img, crfs_restorer_args& a, const uint32_t* groups) {
    const auto& c = img.creds;
    a.set_creds = 1;
    std::memcpy(a.uid, c.uid, sizeof a.uid);
    std::memcpy(a.gid, c.gid, sizeof a.gid);
    a.groups = reinterpret_cast<uint64_t>(groups);
    a.nr_groups = img.groups.size();
    a.cap_inh = c.cap_inh, a.cap_prm = c.cap_prm, a.cap_eff = c.cap_eff;
    a.cap_bnd = c.cap_bnd, a.cap_amb = c.cap_amb;
    a.no_new_privs = c.no_new_privs;
    a.last_cap = 40;
    std::ifstream lc("/proc/sys/kernel/cap_last_cap");
    if (uint32_t v; lc >> v) a.last_cap = v;
}

void child_session(const AttrPlan& p, int status_fd) {
    // A session leader stays one, a group leader leads a new group; joining
    // another group is best effort (it must exist in the daemon's session).
    if (p.image_sid == p.image_pid) {
        if (setsid() < 0) child_fail(status_fd, CRFS_RA_STEP_SESSION, errno, 0);
    } else if (p.image_pgid == p.image_pid) {
        if (setpgid(0, 0) < 0) child_fail(status_fd, CRFS_RA_STEP_SESSION, errno, 1);
    } else {
        (void)setpgid(0, p.image_pgid);
    }
}

// Raw syscalls: glibc's set*id wrappers signal every thread the daemon had,
// threads that do not exist in this task.
void child_enter_fs_creds(const AttrPlan& p, int status_fd) {
    if (syscall(SYS_setgroups, p.groups.size(), p.groups.data()) < 0)
        child_fail(status_fd, CRFS_RA_STEP_FSCREDS, errno, 0);
    syscall(SYS_setfsgid, p.fsgid);
    syscall(SYS_setfsuid, p.fsuid);
    if (syscall(SYS_setfsuid, -1) != long(p.fsuid))
        child_fail(status_fd, CRFS_RA_STEP_FSCREDS, EPERM, 1);
}

void child_leave_fs_creds(int status_fd) {
    syscall(SYS_setfsuid, 0);
    syscall(SYS_setfsgid, 0);
    if (syscall(SYS_setfsuid, -1) != 0) child_fail(status_fd, CRFS_RA_STEP_FSCREDS, EPERM, 2);
}

void child_attrs(const AttrPlan& p, int status_fd) {
    ::umask(p.umask);
    if (syscall(SYS_personality, p.personality) < 0)
        child_fail(status_fd, CRFS_RA_STEP_PERSONALITY, errno, p.personality);
    if (syscall(SYS_setpriority, PRIO_PROCESS, 0, p.nice) < 0)
        child_fail(status_fd, CRFS_RA_STEP_NICE, errno, uint64_t(p.nice));
    syscall(SYS_prctl, PR_SET_NAME, p.comm, 0, 0, 0);
    for (int i = 0; i < 16; ++i)
        if (syscall(SYS_prlimit64, 0, i, &p.rlimits[i], nullptr) < 0)
            child_fail(status_fd, CRFS_RA_STEP_RLIMIT, errno, uint64_t(i));
}

}  // namespace crfs

// --- check (hostile images, restorer/check_fields.cc runs it) ----------------

namespace crfs {

using check::bad;
using check::bad_path;

Status check_task(const DecodedImage& img) {
    if (img.task.nice < -20 || img.task.nice > 19) return bad(strfmt("nice {}", img.task.nice));
    if (img.fs.umask & ~0777u) return bad(strfmt("umask 0{:o}", img.fs.umask));
    if (bad_path(img.cwd)) return bad("cwd not absolute or holds a NUL");
    if (auto s = state::check_deleted_cwd(img); !s) return s;  // delcwd
    if (!img.exe.empty() && bad_path(img.exe)) return bad("exe not absolute or holds a NUL");
    if (img.header.flags & ~image::kHeaderTaskWasStopped)
        return bad(strfmt("header flags 0x{:x}", img.header.flags));
    for (int i = 0; i < 16; ++i)
        if (img.rlimits.cur[i] > img.rlimits.max[i])
            return bad(strfmt("rlimit {}: soft {} above hard {}", i, img.rlimits.cur[i],
                              img.rlimits.max[i]));
    return {};
}

// The writer's right to the image's credentials: all of the image's ids the
// writer's, no capability, every supplementary group one the writer holds.
Status check_creds(const DecodedImage& img, const RestoreRequest& req) {
    if (req.writer_is_root) return {};
    const auto& c = img.creds;
    auto deny = [&](std::string why) {
        return make_error(EPERM, strfmt("image credentials not the writer's ({}): only "
                                        "root may restore them",
                                        why));
    };
    for (int i = 0; i < 4; ++i) {
        if (c.uid[i] != req.writer_uid)
            return deny(strfmt("image uid {}, writer uid {}", c.uid[i], req.writer_uid));
        if (c.gid[i] != req.writer_gid)
            return deny(strfmt("image gid {}, writer gid {}", c.gid[i], req.writer_gid));
    }
    if (c.cap_prm || c.cap_eff || c.cap_amb || c.cap_inh)
        return deny(strfmt("image holds capabilities 0x{:x}",
                           c.cap_prm | c.cap_eff | c.cap_amb | c.cap_inh));
    if (!img.groups.empty() && req.writer_pid > 0) {
        // The writer's groups as the kernel holds them, not as passwd lists
        // them (a writer that dropped a group must not get it back).
        auto st = read_status(req.writer_pid);
        if (!st) return deny("cannot read the writer's groups: " + st.error().what);
        for (uint32_t g : img.groups)
            if (std::find(st->groups.begin(), st->groups.end(), g) == st->groups.end())
                return deny(strfmt("image group {} is not one of the writer's groups", g));
    } else if (!img.groups.empty()) {
        std::vector<gid_t> mine(256);
        int n = int(mine.size());
        struct passwd pw, *pwp = nullptr;
        char buf[4096];
        if (getpwuid_r(req.writer_uid, &pw, buf, sizeof buf, &pwp) != 0 || !pwp)
            return deny(strfmt("image has supplementary groups, uid {} has no passwd entry",
                               req.writer_uid));
        if (getgrouplist(pw.pw_name, req.writer_gid, mine.data(), &n) < 0) {
            mine.resize(size_t(n));
            if (getgrouplist(pw.pw_name, req.writer_gid, mine.data(), &n) < 0)
                return deny("cannot list the writer's groups");
        }
        mine.resize(size_t(n));
        for (uint32_t g : img.groups)
            if (std::find(mine.begin(), mine.end(), g) == mine.end())
                return deny(
                    strfmt("image group {} is not one of uid {}'s groups", g, req.writer_uid));
    }
    return {};
}

}  // namespace crfs
