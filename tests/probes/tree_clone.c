/* Clones that share their fd table (CLONE_FILES) or cwd, root and umask
 * (CLONE_FS) with another process of the tree without being its thread
 * (docs/trees.md "Clones sharing their fd table or fs", state/tree_share_task.h).
 * Exact variants check with kcmp that the same processes share the same
 * objects after the restore, and that what one does is seen by the other:
 * an fd opened by the parent is in the child's table, an fd opened by the
 * child in the parent's, a chdir/umask by the parent is the child's.
 * Refused variants (CLONE_VM without CLONE_THREAD, CLONE_SIGHAND, a sharer that
 * cannot be made again) must be EBUSY. Children are made with the raw clone
 * syscall (fork-like: a copy of the memory, the flags' objects shared), live
 * until the check and are reaped by it. */
#include "probe.h"

#include <linux/kcmp.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/wait.h>

enum { kParentFd = 60, kChildFd = 61, kMaxKids = 3 };

static pid_t g_kid[kMaxKids];
static int g_nkids;

static long cmp(pid_t a, pid_t b, int type) {
    return syscall(SYS_kcmp, a, b, type, 0, 0);
}

/* A process made by clone(flags) that says it is ready on a pipe, runs
 * `then` (may be NULL) and waits for SIGUSR1; then exits with verify()'s
 * answer (NULL: 0). Returns its pid once it is ready. */
static pid_t make(unsigned long flags, void (*then)(void), int (*verify)(void)) {
    int ready[2];
    if (pipe(ready) != 0) die("pipe");
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    sigprocmask(SIG_BLOCK, &s, NULL);
    long pid = syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, 0);
    if (pid < 0) die("clone");
    if (pid == 0) {
        if (then) then();
        /* With CLONE_FILES the parent's copy of the pipe is ours too: write. */
        if (write(ready[1], "r", 1) != 1) _exit(4);
        int sig = 0;
        while (sigwait(&s, &sig) != 0) {
        }
        _exit(verify ? verify() : 0);
    }
    char x;
    if (read(ready[0], &x, 1) != 1) die("clone ready");
    close(ready[0]);
    close(ready[1]);
    return (pid_t)pid;
}

/* Each child verifies itself (SIGUSR1), then is reaped. */
static void reap_kids(void) {
    for (int i = 0; i < g_nkids; ++i) {
        kill(g_kid[i], SIGUSR1);
        int st = 0;
        if (waitpid(g_kid[i], &st, __WALL) != g_kid[i])
            fail("child %d is not ours", g_kid[i]);
        else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            fail("child %d: what it shares is not what it was (status 0x%x)", g_kid[i], st);
    }
}

static void expect_shared(pid_t a, pid_t b, int type, const char* what, int shared) {
    long r = cmp(a, b, type);
    if (shared ? r != 0 : r <= 0)
        fail("kcmp %s of %d and %d: %ld (want %s)", what, a, b, r, shared ? "same" : "other");
}

/* What the parent does after the restore, for its sharers to see: an fd at
   kParentFd and (`fs`) a chdir to sub and umask 027. */
static void parent_acts(int fs) {
    int fd = open(at("from_parent"), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || dup2(fd, kParentFd) != kParentFd) fail("open from_parent: %s", strerror(errno));
    close(fd);
    if (!fs) return;
    if (chdir(at("sub")) != 0) fail("chdir sub: %s", strerror(errno));
    umask(027);
}

/* --- files_fs: a child sharing both with its parent ----------------------- */
static struct stat g_sub;
static int both_verify(void) {
    struct stat st, p;
    /* The parent's fd (opened after the restore) is in our table, */
    if (fstat(kParentFd, &p) != 0) return 10;
    /* its chdir and umask are ours, */
    if (stat(".", &st) != 0 || st.st_ino != g_sub.st_ino || st.st_dev != g_sub.st_dev) return 11;
    if (umask(027) != 027) return 12;
    /* and the fd we open is in its table. */
    int fd = open(at("from_child"), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || dup2(fd, kChildFd) != kChildFd) return 13;
    close(fd);
    return 0;
}
static void files_fs_setup(void) {
    if (mkdir(at("sub"), 0700) != 0 || stat(at("sub"), &g_sub) != 0) die("mkdir sub");
    g_kid[g_nkids++] = make(CLONE_FILES | CLONE_FS, NULL, both_verify);
}
static void files_fs_check(void) {
    expect_shared(getpid(), g_kid[0], KCMP_FILES, "files", 1);
    expect_shared(getpid(), g_kid[0], KCMP_FS, "fs", 1);
    parent_acts(1);
    reap_kids();
    struct stat a, b;
    if (fstat(kChildFd, &a) != 0 || stat(at("from_child"), &b) != 0 || a.st_ino != b.st_ino)
        fail("the fd the child opened is not in the parent's table");
}

/* --- fs_only: cwd and umask shared, fd tables not ------------------------- */
static int fs_verify(void) {
    struct stat st;
    if (stat(".", &st) != 0 || st.st_ino != g_sub.st_ino) return 11;
    if (umask(022) != 027) return 12;
    return fcntl(kParentFd, F_GETFD) == -1 ? 0 : 13; /* not in our table */
}
static void fs_only_setup(void) {
    if (mkdir(at("sub"), 0700) != 0 || stat(at("sub"), &g_sub) != 0) die("mkdir sub");
    g_kid[g_nkids++] = make(CLONE_FS, NULL, fs_verify);
}
static void fs_only_check(void) {
    expect_shared(getpid(), g_kid[0], KCMP_FILES, "files", 0);
    expect_shared(getpid(), g_kid[0], KCMP_FS, "fs", 1);
    parent_acts(1);
    reap_kids();
}

/* --- grandchild: three processes, one table ------------------------------- */
/* The grandchild's pid goes through a file (a pipe would be one more
   description held by the three). */
static pid_t read_pid(void) {
    pid_t g = 0;
    int fd = open(at("grand"), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, &g, sizeof g) != sizeof g) g = 0;
    if (fd >= 0) close(fd);
    return g;
}
static int files_verify(void) {
    return fcntl(kParentFd, F_GETFD) == -1 ? 10 : 0;
}
static void grandchild_body(void) {
    pid_t g = make(CLONE_FILES, NULL, files_verify);
    int fd = open(at("grand"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, &g, sizeof g) != sizeof g) _exit(5);
    close(fd);
}
/* The middle one reaps its child (SIGUSR1 to it, then wait) before it ends. */
static int middle_verify(void) {
    int r = files_verify();
    g_nkids = 0;
    g_kid[g_nkids++] = read_pid();
    g_fail[0] = 0;
    reap_kids();
    return r ? r : g_fail[0] ? 21 : 0;
}
static pid_t g_grand;
static int g_pids[2];
static void grandchild_setup(void) {
    g_kid[g_nkids++] = make(CLONE_FILES, grandchild_body, middle_verify);
    if ((g_grand = read_pid()) <= 0) die("grandchild pid");
}
static void grandchild_check(void) {
    expect_shared(getpid(), g_kid[0], KCMP_FILES, "files", 1);
    expect_shared(getpid(), g_grand, KCMP_FILES, "files", 1);
    expect_shared(getpid(), g_kid[0], KCMP_FS, "fs", 0);
    parent_acts(0);
    reap_kids();
}
/* --- siblings: two children share, their parent unshared since ----------- */
/* The first opens an fd, changes cwd and umask; the second sees them. */
static int sib_first_verify(void) {
    int fd = open(at("from_child"), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || dup2(fd, kChildFd) != kChildFd) return 10;
    close(fd);
    if (chdir(at("sub")) != 0) return 11;
    umask(027);
    return 0;
}
static int sib_second_verify(void) {
    struct stat st, c;
    if (fstat(kChildFd, &c) != 0 || stat(at("from_child"), &st) != 0 || c.st_ino != st.st_ino)
        return 10;
    if (stat(".", &st) != 0 || st.st_ino != g_sub.st_ino) return 11;
    return umask(022) == 027 ? 0 : 12;
}
static void siblings_setup(void) {
    if (mkdir(at("sub"), 0700) != 0 || stat(at("sub"), &g_sub) != 0) die("mkdir sub");
    g_kid[g_nkids++] = make(CLONE_FILES | CLONE_FS, NULL, sib_first_verify);
    g_kid[g_nkids++] = make(CLONE_FILES | CLONE_FS, NULL, sib_second_verify);
    if (unshare(CLONE_FILES | CLONE_FS) != 0) die("unshare");
}
static void siblings_check(void) {
    expect_shared(g_kid[0], g_kid[1], KCMP_FILES, "files", 1);
    expect_shared(g_kid[0], g_kid[1], KCMP_FS, "fs", 1);
    expect_shared(getpid(), g_kid[0], KCMP_FILES, "files", 0);
    expect_shared(getpid(), g_kid[1], KCMP_FS, "fs", 0);
    reap_kids(); /* the first, then the second */
    struct stat st;
    if (fcntl(kChildFd, F_GETFD) != -1) fail("the children's fd %d is in the parent", kChildFd);
    if (stat(".", &st) == 0 && st.st_ino == g_sub.st_ino)
        fail("the children's chdir moved the parent");
}

/* --- removed directories in a shared table (s19-fdshare) ----------------- */
/* `files_deleted_dir`: the parent's fd kDirFd of sub (kind 39), the table
 * taker's cwd (fchdir to it, its fs its own); `files_deleted_cwd`: the
 * parent's cwd sub, inherited by the taker; `files_deleted_cwd_fd`: the
 * parent's cwd sub, a plain child's own description of it at kDirFd (kind
 * 43, read in part before the rmdir) in the table it shares with its
 * CLONE_FILES child, whose cwd it is too; `files_fs_deleted_cwd`: the
 * parent's cwd sub shared with a CLONE_FILES|CLONE_FS child; `files_own_cwd`:
 * the taker's own cwd sub (its parent's elsewhere), held by no one else.
 * After the restore: one removed directory (nlink 0) for all of them, the
 * tables shared as before. */
enum { kDirFd = 62 };
static int is_removed(const char* path, const struct stat* want) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode) && st.st_nlink == 0 &&
           (!want || (st.st_ino == want->st_ino && st.st_dev == want->st_dev));
}
static int cwd_is_fd_verify(void) {
    struct stat fd;
    if (fstat(kDirFd, &fd) != 0) return 10;
    return is_removed(".", &fd) ? 0 : 11;
}
static int cwd_is_parents_verify(void) {
    struct stat p;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/cwd", (int)getppid());
    if (stat(path, &p) != 0) return 10;
    return is_removed(".", &p) ? 0 : 11;
}
static void fchdir_dir_fd(void) {
    if (fchdir(kDirFd) != 0) _exit(6);
}
static void open_dir_fd(const char* path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0 || dup2(fd, kDirFd) != kDirFd) die("open sub");
    close(fd);
}
static void files_deleted_dir_setup(void) {
    if (mkdir(at("sub"), 0700) != 0) die("mkdir sub");
    open_dir_fd(at("sub"));
    g_kid[g_nkids++] = make(CLONE_FILES, fchdir_dir_fd, cwd_is_fd_verify);
    if (rmdir(at("sub")) != 0) die("rmdir");
}
static void files_deleted_dir_check(void) {
    expect_shared(getpid(), g_kid[0], KCMP_FILES, "files", 1);
    expect_shared(getpid(), g_kid[0], KCMP_FS, "fs", 0);
    struct stat st;
    if (fstat(kDirFd, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_nlink != 0)
        fail("fd %d is no removed directory", kDirFd);
    reap_kids();
}
static void files_deleted_cwd_setup(void) {
    if (mkdir(at("sub"), 0700) != 0 || chdir(at("sub")) != 0) die("mkdir sub");
    g_kid[g_nkids++] = make(CLONE_FILES, NULL, cwd_is_parents_verify);
    if (rmdir(at("sub")) != 0) die("rmdir");
}
static void files_deleted_cwd_check(void) {
    expect_shared(getpid(), g_kid[0], KCMP_FILES, "files", 1);
    expect_shared(getpid(), g_kid[0], KCMP_FS, "fs", 0);
    if (!is_removed(".", NULL)) fail("the cwd is no removed directory");
    reap_kids();
}
static void files_fs_deleted_cwd_setup(void) {
    if (mkdir(at("sub"), 0700) != 0 || chdir(at("sub")) != 0) die("mkdir sub");
    g_kid[g_nkids++] = make(CLONE_FILES | CLONE_FS, NULL, cwd_is_parents_verify);
    if (rmdir(at("sub")) != 0) die("rmdir");
}
static void files_fs_deleted_cwd_check(void) {
    expect_shared(getpid(), g_kid[0], KCMP_FILES, "files", 1);
    expect_shared(getpid(), g_kid[0], KCMP_FS, "fs", 1);
    if (!is_removed(".", NULL)) fail("the cwd is no removed directory");
    reap_kids();
}
static void chdir_sub(void) {
    if (chdir(at("sub")) != 0 || rmdir(at("sub")) != 0) _exit(6);
}
static int own_cwd_verify(void) {
    return is_removed(".", NULL) ? 0 : 11;
}
static void files_own_cwd_setup(void) {
    if (mkdir(at("sub"), 0700) != 0) die("mkdir sub");
    g_kid[g_nkids++] = make(CLONE_FILES, chdir_sub, own_cwd_verify);
}
static void files_own_cwd_check(void) {
    expect_shared(getpid(), g_kid[0], KCMP_FILES, "files", 1);
    if (is_removed(".", NULL)) fail("the parent's cwd is the child's removed one");
    reap_kids();
}
/* The middle child: kDirFd of its parent's cwd, read in part, its cwd "/";
 * its CLONE_FILES child's cwd that directory (fchdir). */
static off_t g_dir_fd_pos;
static void middle_dir_body(void) {
    char buf[32];
    open_dir_fd(".");
    if (syscall(SYS_getdents64, kDirFd, buf, sizeof buf) <= 0 || chdir("/") != 0) _exit(5);
    g_dir_fd_pos = lseek(kDirFd, 0, SEEK_CUR);
    pid_t g = make(CLONE_FILES, fchdir_dir_fd, cwd_is_fd_verify);
    int fd = open(at("grand"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, &g, sizeof g) != sizeof g) _exit(5);
    close(fd);
}
static int middle_dir_verify(void) {
    struct stat st;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/cwd", (int)getppid());
    if (stat(path, &st) != 0 || !is_removed(path, NULL)) return 10;
    int r = cwd_is_parents_verify() == 0 ? 11 : 0; /* its own cwd is "/" */
    if (!r && lseek(kDirFd, 0, SEEK_CUR) != g_dir_fd_pos) r = 12;
    struct stat fd;
    if (!r && (fstat(kDirFd, &fd) != 0 || fd.st_ino != st.st_ino)) r = 13;
    g_nkids = 0;
    g_kid[g_nkids++] = read_pid();
    g_fail[0] = 0;
    reap_kids();
    return r ? r : g_fail[0] ? 21 : 0;
}
static void files_deleted_cwd_fd_setup(void) {
    if (mkdir(at("sub"), 0700) != 0 || chdir(at("sub")) != 0) die("mkdir sub");
    g_kid[g_nkids++] = make(0, middle_dir_body, middle_dir_verify);
    if ((g_grand = read_pid()) <= 0) die("grandchild pid");
    if (rmdir(at("sub")) != 0) die("rmdir");
}
static void files_deleted_cwd_fd_check(void) {
    expect_shared(g_kid[0], g_grand, KCMP_FILES, "files", 1);
    expect_shared(getpid(), g_kid[0], KCMP_FILES, "files", 0);
    if (!is_removed(".", NULL)) fail("the cwd is no removed directory");
    reap_kids();
}

/* --- refused ------------------------------------------------------------- */
/* A child sharing our memory (vfork-like) runs on a stack of its own. */
static char g_stack[64 * 1024] __attribute__((aligned(16)));
static int vm_child(void* arg) {
    (void)arg;
    for (;;) pause();
    return 0;
}
static void vm_make(int flags) {
    pid_t pid = clone(vm_child, g_stack + sizeof g_stack, flags | SIGCHLD, NULL);
    if (pid < 0) die("clone");
    g_kid[g_nkids++] = pid;
}
static void vm_setup(void) {
    vm_make(CLONE_VM);
}
static void sighand_setup(void) {
    vm_make(CLONE_VM | CLONE_SIGHAND);
}
static void kill_kids(void) {
    for (int i = 0; i < g_nkids; ++i) {
        if (kill(g_kid[i], 0) != 0) fail("child %d is gone", g_kid[i]);
        kill(g_kid[i], SIGKILL);
        waitpid(g_kid[i], NULL, __WALL);
    }
}
/* The middle process unshared: its child shares its grandparent's table, and
   neither its parent nor a sibling can make it so again. */
static void unshared_body(void) {
    pid_t g = make(CLONE_FILES, NULL, NULL);
    if (write(g_pids[1], &g, sizeof g) != sizeof g) _exit(5);
    if (unshare(CLONE_FILES) != 0) _exit(6);
}
static void unshared_middle_setup(void) {
    if (pipe(g_pids) != 0) die("pipe");
    g_kid[g_nkids++] = make(CLONE_FILES, unshared_body, NULL);
    if (read(g_pids[0], &g_grand, sizeof g_grand) != sizeof g_grand) die("grandchild pid");
}
static void unshared_middle_check(void) {
    expect_shared(getpid(), g_grand, KCMP_FILES, "files", 1);
    expect_shared(getpid(), g_kid[0], KCMP_FILES, "files", 0);
    kill(g_grand, SIGKILL);
    kill_kids();
}

/* A sharer holding a POSIX lock (its owner is the shared table): refused,
   and `reason` says so before the checkpoint does. */
static void lock_body(void) {
    int fd = open(at("locked"), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    struct flock l = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    if (fd < 0 || fcntl(fd, F_SETLK, &l) != 0) _exit(7);
}
static void files_lock_setup(void) {
    g_kid[g_nkids++] = make(CLONE_FILES, lock_body, NULL);
}

static const struct variant kVariants[] = {
    {"files_fs", files_fs_setup, files_fs_check, NULL},
    {"fs_only", fs_only_setup, fs_only_check, NULL},
    {"grandchild", grandchild_setup, grandchild_check, NULL},
    {"sibling_pair", siblings_setup, siblings_check, NULL},
    {"vm", vm_setup, kill_kids, NULL},
    {"sighand", sighand_setup, kill_kids, NULL},
    {"unshared_middle", unshared_middle_setup, unshared_middle_check, NULL},
    {"files_lock", files_lock_setup, kill_kids, NULL},
    {"files_deleted_dir", files_deleted_dir_setup, files_deleted_dir_check, NULL},
    {"files_deleted_cwd", files_deleted_cwd_setup, files_deleted_cwd_check, NULL},
    {"files_deleted_cwd_fd", files_deleted_cwd_fd_setup, files_deleted_cwd_fd_check, NULL},
    {"files_fs_deleted_cwd", files_fs_deleted_cwd_setup, files_fs_deleted_cwd_check, NULL},
    {"files_own_cwd", files_own_cwd_setup, files_own_cwd_check, NULL},
};

PROBE_MAIN(kVariants)
