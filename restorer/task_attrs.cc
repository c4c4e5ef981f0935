#include "restorer/task_attrs.h"

#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "restorer/child.h"

namespace crfs {

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
