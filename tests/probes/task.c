/* Task-wide probes: rlimits and cwd/umask round-trip; the rest are refused. */
#include "probe.h" /* first: it defines _GNU_SOURCE */

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

static void rlimits_setup(void) {
    struct rlimit r = {.rlim_cur = 123, .rlim_max = 456};
    if (setrlimit(RLIMIT_NOFILE, &r) != 0) die("setrlimit");
    r.rlim_cur = 1 << 20;
    r.rlim_max = RLIM_INFINITY;
    if (setrlimit(RLIMIT_CORE, &r) != 0) die("setrlimit core");
}
static void rlimits_check(void) {
    struct rlimit r;
    getrlimit(RLIMIT_NOFILE, &r);
    if (r.rlim_cur != 123 || r.rlim_max != 456)
        fail("NOFILE %lu/%lu", (unsigned long)r.rlim_cur, (unsigned long)r.rlim_max);
    getrlimit(RLIMIT_CORE, &r);
    if (r.rlim_cur != 1 << 20 || r.rlim_max != RLIM_INFINITY) fail("CORE limits differ");
}

static void cwd_setup(void) {
    mkdir(at("sub"), 0755);
    if (chdir(at("sub")) != 0) die("chdir");
    umask(027);
}
static void cwd_check(void) {
    char buf[1200];
    if (!getcwd(buf, sizeof buf) || strcmp(buf, at("sub")) != 0) fail("cwd %s", buf);
    mode_t m = umask(0);
    if (m != 027) fail("umask %o, want 027", m);
}

/* delcwd: a removed cwd (state/fs.cc), made again empty in its old parent,
 * removed, with its mode, owner and mtime. */
static struct stat g_cwd_st;
static char g_cwd_link[1200];

static void cwd_link(char* out, size_t n) {
    ssize_t r = readlink("/proc/self/cwd", out, n - 1);
    out[r < 0 ? 0 : r] = 0;
}

static void remove_cwd(void) {
    struct timespec t[2] = {{1000000000, 0}, {1234567890, 123456789}};
    if (chmod(".", 02751) != 0 || rmdir(at("sub")) != 0 || utimensat(AT_FDCWD, ".", t, 0) != 0)
        die("rmdir");
    if (stat(".", &g_cwd_st) != 0) die("stat .");
    cwd_link(g_cwd_link, sizeof g_cwd_link);
}
static void deleted_cwd_setup(void) {
    cwd_setup();
    remove_cwd();
}
static void deleted_cwd_check(void) {
    char buf[1200];
    if (getcwd(buf, sizeof buf) != NULL || errno != ENOENT) fail("cwd is not a deleted dir");
    cwd_link(buf, sizeof buf);
    if (strcmp(buf, g_cwd_link) != 0) fail("/proc/self/cwd %s, was %s", buf, g_cwd_link);
    struct stat st;
    if (stat(".", &st) != 0 || !S_ISDIR(st.st_mode) || st.st_nlink != 0)
        fail("stat .: mode 0%o nlink %lu", st.st_mode, (unsigned long)st.st_nlink);
    if (st.st_mode != g_cwd_st.st_mode || st.st_uid != g_cwd_st.st_uid ||
        st.st_gid != g_cwd_st.st_gid)
        fail("mode 0%o owner %u:%u, was 0%o %u:%u", st.st_mode, st.st_uid, st.st_gid,
             g_cwd_st.st_mode, g_cwd_st.st_uid, g_cwd_st.st_gid);
    if (st.st_mtim.tv_sec != g_cwd_st.st_mtim.tv_sec ||
        st.st_mtim.tv_nsec != g_cwd_st.st_mtim.tv_nsec)
        fail("mtime %lld.%09ld", (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    if (open("x", O_CREAT | O_WRONLY | O_CLOEXEC, 0600) >= 0 || errno != ENOENT)
        fail("open(x, O_CREAT) in it: %s", strerror(errno));
    if (mkdir("y", 0700) == 0 || errno != ENOENT) fail("mkdir in it: %s", strerror(errno));
    mode_t m = umask(0);
    if (m != 027) fail("umask %o, want 027", m);
}

/* The cwd and an fd of the same removed directory: one directory again. */
static int g_cwd_fd = -1;
static void deleted_cwd_fd_setup(void) {
    deleted_cwd_setup();
    g_cwd_fd = open(".", O_RDONLY | O_DIRECTORY);
    if (g_cwd_fd != 3) die("open .");
}
static void deleted_cwd_fd_check(void) {
    deleted_cwd_check();
    struct stat cwd, fd;
    if (stat(".", &cwd) != 0 || fstat(g_cwd_fd, &fd) != 0) fail("stat: %s", strerror(errno));
    if (cwd.st_ino != fd.st_ino || cwd.st_dev != fd.st_dev)
        fail("cwd %lu and fd %d %lu are two directories", (unsigned long)cwd.st_ino, g_cwd_fd,
             (unsigned long)fd.st_ino);
    if (openat(g_cwd_fd, "x", O_CREAT | O_WRONLY | O_CLOEXEC, 0600) >= 0 || errno != ENOENT)
        fail("openat(fd, x, O_CREAT): %s", strerror(errno));
}

/* Held O_PATH too: no kind makes such an fd of a removed directory. */
static void deleted_cwd_opath_setup(void) {
    deleted_cwd_setup();
    if (open(".", O_PATH | O_DIRECTORY) != 3) die("open . O_PATH");
}

/* Owned by another user than the task's: the new one would be the writer's. */
static void deleted_cwd_owner_setup(void) {
    cwd_setup();
    if (chown(".", 65534, 65534) != 0 || rmdir(at("sub")) != 0) die("rmdir");
}

/* cwdtree: a shell's child that inherited its removed cwd: one directory
 * again, made by the parent's restore, the child's cwd a dup of it
 * (state/fs_tree.cc, record 132). */
static pid_t g_cwd_child;
static void deleted_cwd_child_setup(void) {
    deleted_cwd_setup();
    g_cwd_child = fork();
    if (g_cwd_child < 0) die("fork");
    if (g_cwd_child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (;;) pause();
    }
}
/* The child's cwd (`fd` < 0) or fd `fd` is this process's cwd. */
static void same_dir_as_cwd(const char* what, int fd) {
    char path[64];
    if (fd < 0)
        snprintf(path, sizeof path, "/proc/%d/cwd", g_cwd_child);
    else
        snprintf(path, sizeof path, "/proc/%d/fd/%d", g_cwd_child, fd);
    struct stat mine, its;
    if (stat(".", &mine) != 0 || stat(path, &its) != 0)
        fail("stat of %s: %s", path, strerror(errno));
    else if (mine.st_dev != its.st_dev || mine.st_ino != its.st_ino)
        fail("the child's %s is directory %lu, the cwd is %lu: two directories", what,
             (unsigned long)its.st_ino, (unsigned long)mine.st_ino);
}
static void end_cwd_child(void) {
    kill(g_cwd_child, SIGKILL);
    if (waitpid(g_cwd_child, NULL, 0) != g_cwd_child) fail("child %d is not ours", g_cwd_child);
}
static void deleted_cwd_child_check(void) {
    deleted_cwd_check();
    same_dir_as_cwd("cwd", -1);
    char link[80], its[1200];
    snprintf(link, sizeof link, "/proc/%d/cwd", g_cwd_child);
    ssize_t n = readlink(link, its, sizeof its - 1);
    its[n < 0 ? 0 : n] = 0;
    if (strcmp(its, g_cwd_link) != 0) fail("the child's cwd reads %s, not %s", its, g_cwd_link);
    end_cwd_child();
}

/* cwdtree: the parent's removed cwd, the child's fd of it (opened "." after
 * the rmdir; its cwd then "/"): the child's fd is a description of its own
 * of the parent's directory (fd kind 43). `read`: the child read it before
 * the rmdir (its offset a getdents cookie: opened and seeked by the parent's
 * restore before its rmdir, cwdoffset); `nofollow`: opened O_NOFOLLOW, which
 * an open through /proc/self/fd refuses (refused); `nofollow_read`: so opened
 * and read, made by the parent's restore by the directory's name before the
 * rmdir, which takes O_NOFOLLOW (s19-fdshare); `twice_read`: a second
 * description of it in the child (fd kind 40 naming the kind 43), each read
 * in part before the rmdir (s19-fdshare: a bad image at restore before). */
static int g_child_fd = -1, g_child_fd2 = -1;
static char g_child_info[256], g_child_info2[256]; /* the child's fdinfo pos and flags lines */
/* Forks g_cwd_child with a readiness pipe; true in the child. */
static int fork_cwd_child(int ready[2]) {
    if (pipe(ready) != 0) die("pipe");
    g_cwd_child = fork();
    if (g_cwd_child < 0) die("fork");
    if (g_cwd_child == 0) prctl(PR_SET_PDEATHSIG, SIGKILL);
    return g_cwd_child == 0;
}
/* "pos: ...\nflags: ...\n" of the child's fd `fd`. */
static void child_fd_info(int fd, char* out, size_t n) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fdinfo/%d", g_cwd_child, fd);
    FILE* f = fopen(path, "r");
    out[0] = 0;
    if (!f) return;
    size_t used = 0;
    for (char line[128]; fgets(line, sizeof line, f) && used + strlen(line) < n;)
        if (!strncmp(line, "pos:", 4) || !strncmp(line, "flags:", 6)) {
            strcpy(out + used, line);
            used += strlen(line);
        }
    fclose(f);
}
/* The child opens "." (flags | `flags`), read first when `read_first` (one
 * entry of two when `twice`), and `twice`: again, read to its end. */
static void cwd_child_fds(int read_first, int flags, int twice) {
    cwd_setup();
    int ready[2];
    if (fork_cwd_child(ready)) {
        char buf[4096];
        unsigned char fd[2] = {0, 0};
        fd[0] = (unsigned char)open(".", O_RDONLY | O_DIRECTORY | flags);
        if (fd[0] > 100 ||
            (read_first && syscall(SYS_getdents64, fd[0], buf, twice ? 32 : sizeof buf) <= 0))
            _exit(2);
        if (twice) {
            fd[1] = (unsigned char)open(".", O_RDONLY | O_DIRECTORY | flags);
            if (fd[1] > 100 || syscall(SYS_getdents64, fd[1], buf, sizeof buf) <= 0) _exit(2);
        }
        if (chdir("/") != 0 || write(ready[1], fd, 2) != 2) _exit(2);
        close(ready[0]);
        close(ready[1]);
        for (;;) pause();
    }
    close(ready[1]);
    unsigned char fd[2];
    if (read(ready[0], fd, 2) != 2) die("waiting for the child");
    close(ready[0]);
    g_child_fd = fd[0];
    g_child_fd2 = twice ? fd[1] : -1;
    remove_cwd();
    child_fd_info(g_child_fd, g_child_info, sizeof g_child_info);
    if (twice) child_fd_info(g_child_fd2, g_child_info2, sizeof g_child_info2);
}
static void deleted_cwd_child_fd_setup(void) {
    cwd_child_fds(0, 0, 0);
}
static void deleted_cwd_child_read_setup(void) {
    cwd_child_fds(1, 0, 0);
}
static void deleted_cwd_child_nofollow_setup(void) {
    cwd_child_fds(0, O_NOFOLLOW, 0);
}
static void deleted_cwd_child_nofollow_read_setup(void) {
    cwd_child_fds(1, O_NOFOLLOW, 0);
}
static void deleted_cwd_child_twice_read_setup(void) {
    cwd_child_fds(1, 0, 1);
}
static void child_fd_same(int fd, const char* was) {
    char now[sizeof g_child_info];
    same_dir_as_cwd("fd", fd);
    child_fd_info(fd, now, sizeof now);
    if (strcmp(now, was) != 0 || !was[0]) fail("the child's fd %d: %s, was %s", fd, now, was);
}
static void deleted_cwd_child_fd_check(void) {
    deleted_cwd_check();
    child_fd_same(g_child_fd, g_child_info);
    if (g_child_fd2 >= 0) {
        child_fd_same(g_child_fd2, g_child_info2);
        if (syscall(SYS_kcmp, g_cwd_child, g_cwd_child, 0 /* KCMP_FILE */, g_child_fd,
                    g_child_fd2) <= 0)
            fail("the child's fds %d and %d are not two descriptions", g_child_fd, g_child_fd2);
    }
    end_cwd_child();
}

/* cwdtree: the parent's fd 3 of the removed directory (its cwd elsewhere), the
 * child's cwd (inherited, its copy of fd 3 closed): made once, by the
 * parent's kind 39 fd, and the child's cwd a dup of it (record 132 naming fd 3). */
static void deleted_fd_child_cwd_setup(void) {
    cwd_setup();
    g_cwd_fd = open(".", O_RDONLY | O_DIRECTORY);
    if (g_cwd_fd != 3) die("open .");
    int ready[2];
    if (fork_cwd_child(ready)) {
        close(g_cwd_fd);
        close(ready[0]);
        close(ready[1]);
        for (;;) pause();
    }
    close(ready[1]);
    char c;
    if (read(ready[0], &c, 1) != 0) die("waiting for the child");
    close(ready[0]);
    if (chdir(g_dir) != 0 || fchmod(g_cwd_fd, 02751) != 0 || rmdir(at("sub")) != 0 ||
        fstat(g_cwd_fd, &g_cwd_st) != 0)
        die("rmdir");
}
static void deleted_fd_child_cwd_check(void) {
    struct stat st, its;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/cwd", g_cwd_child);
    if (fstat(g_cwd_fd, &st) != 0 || stat(path, &its) != 0)
        fail("stat: %s", strerror(errno));
    else if (st.st_nlink != 0 || st.st_mode != g_cwd_st.st_mode || st.st_ino != its.st_ino ||
             st.st_dev != its.st_dev)
        fail(
            "fd 3 (mode 0%o, nlink %lu, inode %lu) and the child's cwd (inode %lu) are not one "
            "removed directory of mode 0%o",
            st.st_mode, (unsigned long)st.st_nlink, (unsigned long)st.st_ino,
            (unsigned long)its.st_ino, g_cwd_st.st_mode);
    end_cwd_child();
}
static void check_nothing(void) {}

static pid_t g_child;
static int g_gone = -1;
static struct stat g_gone_st;
/* A child: its inherited descriptions are restored shared (docs/trees.md);
 * one deleted directory opened by each of the two separately is too (deldir:
 * made again by the parent, reopened through /proc/self/fd for the child, as
 * a memfd, deleted file or unlinked queue so opened is: mqtree, tree_share). */
static void child_setup(void) {
    if (mkdir(at("gone"), 0700) != 0) die("mkdir");
    int fd = open(at("gone"), O_RDONLY | O_DIRECTORY), ready[2];
    if (fd < 0) die("open gone");
    g_gone = fd;
    if (pipe(ready) != 0) die("pipe");
    g_child = fork();
    if (g_child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (open(at("gone"), O_RDONLY | O_DIRECTORY) < 0) _exit(2);
        close(fd);
        close(ready[0]);
        close(ready[1]); /* the parent's read ends: the reopen is done */
        for (;;) pause();
    }
    /* Ready only once the child holds its own description and not the
     * inherited one (else `reason` depends on when it is read). */
    close(ready[1]);
    char c;
    if (read(ready[0], &c, 1) != 0) die("waiting for the child");
    close(ready[0]);
    if (rmdir(at("gone")) != 0 || fstat(fd, &g_gone_st) != 0) die("rmdir");
}
static void child_check(void) {
    /* One removed directory, two open file descriptions: the parent's and the child's. */
    struct stat st;
    if (fstat(g_gone, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_nlink != 0 ||
        st.st_mode != g_gone_st.st_mode)
        fail("fd %d: not a removed directory of mode 0%o", g_gone, g_gone_st.st_mode);
    if (openat(g_gone, "x", O_CREAT | O_WRONLY | O_CLOEXEC, 0600) >= 0 || errno != ENOENT)
        fail("openat(O_CREAT) in the removed directory: %s", strerror(errno));
    int child_fd = -1;
    for (int n = 0; n < 64 && child_fd < 0; ++n) {
        char path[64];
        struct stat cs;
        snprintf(path, sizeof path, "/proc/%d/fd/%d", g_child, n);
        if (stat(path, &cs) == 0 && cs.st_ino == st.st_ino && cs.st_dev == st.st_dev) child_fd = n;
    }
    if (child_fd < 0)
        fail("the child holds no fd of the removed directory");
    else if (syscall(SYS_kcmp, getpid(), g_child, 0 /* KCMP_FILE */, g_gone, child_fd) <= 0)
        fail("the child's fd %d is not a description of its own", child_fd);
    kill(g_child, SIGKILL);
    if (waitpid(g_child, NULL, 0) != g_child) fail("child %d is not ours any more", g_child);
}

static void seccomp_setup(void) {
    struct sock_filter f[] = {BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 0),
                              BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 999, 0, 1),
                              BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 77),
                              BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
    struct sock_fprog prog = {4, f};
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) die("seccomp");
}
static void seccomp_check(void) {
    if (syscall(999) != -1 || errno != 77) fail("the seccomp filter is gone");
}

static pthread_mutex_t g_mutex;
static void robust_setup(void) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&g_mutex, &a);
    if (pthread_mutex_lock(&g_mutex) != 0) die("lock");
}
static void robust_check(void) {
    if (pthread_mutex_unlock(&g_mutex) != 0) fail("robust mutex not held");
}

static void thp_setup(void) {
    prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
}
static void thp_check(void) {
    if (prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) != 1) fail("THP disable lost");
}
static void slack_setup(void) {
    prctl(PR_SET_TIMERSLACK, 123456);
}
static void slack_check(void) {
    if (prctl(PR_GET_TIMERSLACK) != 123456) fail("timer slack %d", prctl(PR_GET_TIMERSLACK));
}
static void oom_setup(void) {
    int fd = open("/proc/self/oom_score_adj", O_WRONLY);
    if (fd < 0 || write(fd, "345\n", 4) != 4) die("oom_score_adj");
    close(fd);
}
static void oom_check(void) {
    char buf[32] = {0};
    int fd = open("/proc/self/oom_score_adj", O_RDONLY);
    if (read(fd, buf, sizeof buf - 1) <= 0 || atoi(buf) != 345) fail("oom_score_adj %s", buf);
    close(fd);
}
static void batch_setup(void) {
    struct sched_param p = {0};
    if (sched_setscheduler(0, SCHED_BATCH, &p) != 0) die("SCHED_BATCH");
}
static void batch_check(void) {
    if (sched_getscheduler(0) != SCHED_BATCH) fail("policy %d", sched_getscheduler(0));
}
static void affinity_setup(void) {
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(0, &s);
    if (sched_setaffinity(0, sizeof s, &s) != 0) die("affinity");
}
static void affinity_check(void) {
    cpu_set_t s;
    sched_getaffinity(0, sizeof s, &s);
    if (CPU_COUNT(&s) != 1 || !CPU_ISSET(0, &s)) fail("affinity differs");
}

/* Run as a normal user (the driver's "as nobody"): a root task's dumpable
 * flag does not show outside it. */
static void nodump_setup(void) {
    if (prctl(PR_SET_DUMPABLE, 0) != 0) die("PR_SET_DUMPABLE");
}
static void nodump_check(void) {
    if (prctl(PR_GET_DUMPABLE) != 0) fail("dumpable again");
}

static const struct variant kVariants[] = {
    {"rlimits", rlimits_setup, rlimits_check, NULL},
    {"cwd_umask", cwd_setup, cwd_check, NULL},
    {"deleted_cwd", deleted_cwd_setup, deleted_cwd_check, NULL},
    {"deleted_cwd_fd", deleted_cwd_fd_setup, deleted_cwd_fd_check, NULL},
    {"deleted_cwd_opath", deleted_cwd_opath_setup, check_nothing, NULL},
    {"deleted_cwd_owner", deleted_cwd_owner_setup, check_nothing, NULL},
    {"deleted_cwd_child", deleted_cwd_child_setup, deleted_cwd_child_check, NULL},
    {"deleted_cwd_child_fd", deleted_cwd_child_fd_setup, deleted_cwd_child_fd_check, NULL},
    {"deleted_cwd_child_read", deleted_cwd_child_read_setup, deleted_cwd_child_fd_check, NULL},
    {"deleted_cwd_child_nofollow", deleted_cwd_child_nofollow_setup, check_nothing, NULL},
    {"deleted_cwd_child_nofollow_read", deleted_cwd_child_nofollow_read_setup,
     deleted_cwd_child_fd_check, NULL},
    {"deleted_cwd_child_twice_read", deleted_cwd_child_twice_read_setup, deleted_cwd_child_fd_check,
     NULL},
    {"deleted_fd_child_cwd", deleted_fd_child_cwd_setup, deleted_fd_child_cwd_check, NULL},
    {"child", child_setup, child_check, NULL},
    {"seccomp", seccomp_setup, seccomp_check, NULL},
    {"robust", robust_setup, robust_check, NULL},
    {"thp", thp_setup, thp_check, NULL},
    {"timerslack", slack_setup, slack_check, NULL},
    {"oom", oom_setup, oom_check, NULL},
    {"sched_batch", batch_setup, batch_check, NULL},
    {"affinity", affinity_setup, affinity_check, NULL},
    {"nodump", nodump_setup, nodump_check, NULL},
};
PROBE_MAIN(kVariants)
