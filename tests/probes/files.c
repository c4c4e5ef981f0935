/* File descriptor probes: a regular file with an offset, a deleted file and
 * fds sharing open file descriptions round-trip; the rest are refused
 * variants. */
#include "probe.h" /* first: it defines _GNU_SOURCE */

#include <linux/fs.h>
#include <linux/kcmp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>

static int g_fd = -1, g_fd2 = -1;
static struct stat g_st;

static int open_or_die(const char* path, int flags) {
    int fd = open(path, flags, 0600);
    if (fd < 0) die(path);
    return fd;
}

static void regular_setup(void) {
    g_fd = open_or_die(at("data"), O_RDWR | O_CREAT);
    if (write(g_fd, "0123456789", 10) != 10) die("write");
    lseek(g_fd, 4, SEEK_SET);
    g_fd2 = open_or_die(at("log"), O_WRONLY | O_CREAT | O_APPEND);
}
static void regular_check(void) {
    off_t pos = lseek(g_fd, 0, SEEK_CUR);
    if (pos != 4) fail("offset %ld, want 4", (long)pos);
    char buf[8] = {0};
    if (read(g_fd, buf, 3) != 3 || memcmp(buf, "456", 3) != 0) fail("read at offset: '%s'", buf);
    int fl = fcntl(g_fd, F_GETFL);
    if ((fl & O_ACCMODE) != O_RDWR) fail("flags %o, want O_RDWR", fl);
    if (!(fcntl(g_fd2, F_GETFL) & O_APPEND)) fail("O_APPEND lost");
}

static void check_open(void) {
    if (fcntl(g_fd, F_GETFD) < 0) fail("fd %d is not open", g_fd);
}

/* Fds sharing one open file description: 1 and 2 onto one log (`>log 2>&1`:
 * opened once, dup'd), a read-only file at an offset with a close-on-exec dup,
 * and a deleted file with a dup. After a restore each group must be one
 * description again: kcmp says so, the offset moves through both, flags set
 * through one show through the other, each fd keeps its own close-on-exec. */
static int g_del = -1, g_del2 = -1;

static void shared_setup(void) {
    int log = open_or_die(at("log"), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND);
    if (write(log, "start\n", 6) != 6) die("write log");
    if (dup2(log, 1) != 1 || dup2(log, 2) != 2) die("dup2 log");
    close(log);
    write_file(at("data"), "0123456789");
    g_fd = open_or_die(at("data"), O_RDONLY);
    lseek(g_fd, 4, SEEK_SET);
    g_fd2 = fcntl(g_fd, F_DUPFD_CLOEXEC, 10);
    if (g_fd2 < 0) die("F_DUPFD_CLOEXEC");
    g_del = open_or_die(at("scratch"), O_RDWR | O_CREAT);
    if (write(g_del, "abcdef", 6) != 6) die("write scratch");
    lseek(g_del, 2, SEEK_SET);
    g_del2 = dup(g_del);
    unlink(at("scratch"));
}

static int same_description(int a, int b) {
    return syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, a, b) == 0;
}

/* Writes through fds 1 and 2, checks they land one after the other and move
 * both offsets, then puts the log back as it was (size and mtime: the same
 * image is restored again, and the restore checks the file is unchanged). */
static void shared_log_check(void) {
    struct stat st;
    if (fstat(1, &st) != 0) {
        fail("fstat fd 1");
        return;
    }
    if (write(1, "one\n", 4) != 4 || write(2, "two\n", 4) != 4 || write(1, "three\n", 6) != 6)
        fail("write through fds 1 and 2");
    off_t end = st.st_size + 14;
    off_t p1 = lseek(1, 0, SEEK_CUR), p2 = lseek(2, 0, SEEK_CUR);
    if (p1 != end || p2 != end)
        fail("log offsets %ld and %ld, want %ld", (long)p1, (long)p2, (long)end);
    char buf[32] = {0};
    int fd = open(at("log"), O_RDONLY);
    if (pread(fd, buf, 14, st.st_size) != 14 || memcmp(buf, "one\ntwo\nthree\n", 14) != 0)
        fail("log tail '%s'", buf);
    close(fd);
    struct timespec times[2] = {{.tv_nsec = UTIME_OMIT}, st.st_mtim};
    if (ftruncate(1, st.st_size) != 0 || futimens(1, times) != 0) fail("put the log back");
}

static void shared_check(void) {
    if (!same_description(1, 2)) fail("fds 1 and 2 are two descriptions");
    if (!same_description(g_fd, g_fd2)) fail("fds %d and %d are two descriptions", g_fd, g_fd2);
    if (!same_description(g_del, g_del2)) fail("fds %d and %d are two descriptions", g_del, g_del2);
    if (same_description(1, g_fd)) fail("fds 1 and %d are one description", g_fd);
    if (!(fcntl(1, F_GETFL) & O_APPEND) || !(fcntl(2, F_GETFL) & O_APPEND)) fail("O_APPEND lost");
    if (fcntl(1, F_GETFD) != 0 || fcntl(2, F_GETFD) != 0 || fcntl(g_fd, F_GETFD) != 0)
        fail("close-on-exec set where it was not");
    if (fcntl(g_fd2, F_GETFD) != FD_CLOEXEC) fail("close-on-exec of fd %d lost", g_fd2);
    if ((fcntl(g_fd, F_GETFL) & O_ACCMODE) != O_RDONLY) fail("fd %d is no longer read-only", g_fd);
    shared_log_check();

    char buf[8] = {0};
    off_t pos = lseek(g_fd2, 0, SEEK_CUR);
    if (pos != 4) fail("offset of fd %d is %ld, want 4", g_fd2, (long)pos);
    if (read(g_fd, buf, 3) != 3 || memcmp(buf, "456", 3) != 0) fail("read at offset: '%s'", buf);
    if (read(g_fd2, buf, 2) != 2 || memcmp(buf, "78", 2) != 0)
        fail("read through the dup: '%s'", buf);

    if (write(g_del, "X", 1) != 1 || write(g_del2, "Y", 1) != 1) fail("write the deleted file");
    if (pread(g_del, buf, 6, 0) != 6 || memcmp(buf, "abXYef", 6) != 0)
        fail("deleted file '%.6s', want abXYef", buf);
    if (fcntl(g_del, F_SETFL, O_NONBLOCK) != 0 || !(fcntl(g_del2, F_GETFL) & O_NONBLOCK))
        fail("F_SETFL through fd %d does not show through fd %d", g_del, g_del2);
}

static void opath_setup(void) {
    g_fd = open_or_die("/etc", O_PATH);
}
static void nsfs_setup(void) {
    g_fd = open_or_die("/proc/self/ns/net", O_RDONLY);
}
static void procfs_setup(void) {
    g_fd = open_or_die("/proc/self/stat", O_RDONLY);
}
static void ptmx_setup(void) {
    g_fd = open_or_die("/dev/ptmx", O_RDWR | O_NOCTTY);
}
static void fuse_setup(void) {
    g_fd = open_or_die("/dev/fuse", O_RDWR);
}
static void pipe_setup(void) {
    int p[2];
    if (pipe(p) != 0) die("pipe");
    g_fd = p[0];
}
static void eventfd_setup(void) {
    g_fd = eventfd(3, 0);
}

static void memfd_setup(void) {
    g_fd = memfd_create("probe", MFD_ALLOW_SEALING);
    if (g_fd < 0 || write(g_fd, "x", 1) != 1) die("memfd");
    fcntl(g_fd, F_ADD_SEALS, F_SEAL_SHRINK);
}
static void memfd_check(void) {
    if (fcntl(g_fd, F_GET_SEALS) != F_SEAL_SHRINK) fail("seals lost");
}

static void deleted_sparse_setup(void) {
    g_fd = open_or_die(at("sparse"), O_RDWR | O_CREAT);
    if (pwrite(g_fd, "end", 3, 1 << 20) != 3) die("pwrite");
    unlink(at("sparse"));
}
static void deleted_sparse_check(void) {
    struct stat st;
    fstat(g_fd, &st);
    if (st.st_blocks * 512 >= st.st_size) fail("the deleted file is no longer sparse");
}

static void deleted_linked_setup(void) {
    g_fd = open_or_die(at("name1"), O_RDWR | O_CREAT);
    if (link(at("name1"), at("name2")) != 0) die("link");
    unlink(at("name1"));
    fstat(g_fd, &g_st);
}
static void deleted_linked_check(void) {
    struct stat st;
    if (stat(at("name2"), &st) != 0 || st.st_ino != g_st.st_ino) fail("fd is not name2's file");
}

/* A file made by O_TMPFILE (ed, many editors and mkstemp-like helpers):
 * never linked, and O_TMPFILE stays in its flags. Restored by making it again
 * with O_TMPFILE in the same directory: its flags, content, offset and mode
 * are the same, and it can still be linked into place (its main use). */
static struct stat g_dir_st;

static void tmpfile_setup(void) {
    g_fd = open(g_dir, O_TMPFILE | O_RDWR, 0600);
    if (g_fd < 0 || write(g_fd, "tmp\n", 4) != 4 || fchmod(g_fd, 0640) != 0) die("O_TMPFILE");
    if (stat(g_dir, &g_dir_st) != 0) die("stat dir");
}
static void tmpfile_check(void) {
    int fl = fcntl(g_fd, F_GETFL);
    if (fl < 0 || (fl & O_TMPFILE) != O_TMPFILE || (fl & O_ACCMODE) != O_RDWR)
        fail("flags 0%o, want O_TMPFILE|O_RDWR", fl);
    struct stat st;
    if (fstat(g_fd, &st) != 0 || st.st_nlink != 0 || (st.st_mode & 07777) != 0640 ||
        st.st_dev != g_dir_st.st_dev)
        fail("nlink %lu mode %o dev %lx, want 0, 640, the directory's %lx",
             (unsigned long)st.st_nlink, st.st_mode & 07777, (unsigned long)st.st_dev,
             (unsigned long)g_dir_st.st_dev);
    off_t pos = lseek(g_fd, 0, SEEK_CUR);
    if (pos != 4) fail("offset %ld, want 4", (long)pos);
    char buf[8] = {0}, self[64];
    if (pread(g_fd, buf, 4, 0) != 4 || memcmp(buf, "tmp\n", 4) != 0) fail("content '%s'", buf);
    snprintf(self, sizeof self, "/proc/self/fd/%d", g_fd);
    unlink(at("linked"));
    if (linkat(AT_FDCWD, self, AT_FDCWD, at("linked"), AT_SYMLINK_FOLLOW) != 0)
        fail("linkat of the O_TMPFILE file: %s", strerror(errno));
    unlink(at("linked"));
}

/* ... whose directory is gone: nowhere to make it again. Refused. */
static void tmpfile_gone_setup(void) {
    if (mkdir(at("sub"), 0700) != 0) die("mkdir");
    g_fd = open(at("sub"), O_TMPFILE | O_RDWR, 0600);
    if (g_fd < 0 || rmdir(at("sub")) != 0) die("O_TMPFILE in sub");
}

static void deleted_huge_setup(void) {
    g_fd = open_or_die(at("huge"), O_RDWR | O_CREAT);
    if (ftruncate(g_fd, (1ll << 30) + 4096) != 0) die("ftruncate");
    unlink(at("huge"));
}

/* Renaming another file over the open one unlinks it: a deleted file, whose
 * content goes into the image. */
static void deleted_setup(void) {
    regular_setup();
    fchmod(g_fd, 0640);
    write_file(at("other"), "other\n");
    if (rename(at("other"), at("data")) != 0) die("rename");
}
static void deleted_check(void) {
    regular_check();
    struct stat st;
    fstat(g_fd, &st);
    if (st.st_nlink != 0) fail("the file has a name again");
    if ((st.st_mode & 07777) != 0640) fail("mode %o, want 640", st.st_mode & 07777);
}

/* One deleted file held by two open file descriptions of the task (opened
 * twice, then unlinked): restored, they must stay one file (state/file_reopen.cc),
 * each description with its own flags and offset, a dup of the second (g_del3)
 * one description with it. */
static int g_del3 = -1;
static int g_twice_fl[2];
static off_t g_twice_pos[2];

static void twice_save(void) {
    int fds[2] = {g_del, g_del2};
    for (int i = 0; i < 2; ++i) {
        g_twice_fl[i] = fcntl(fds[i], F_GETFL);
        g_twice_pos[i] = lseek(fds[i], 0, SEEK_CUR);
    }
}

/* Each of g_del's and g_del2's descriptions has its flags and offset of twice_save. */
static void twice_check_saved(void) {
    int fds[2] = {g_del, g_del2};
    for (int i = 0; i < 2; ++i) {
        if (fcntl(fds[i], F_GETFL) != g_twice_fl[i])
            fail("fd %d flags 0%o, were 0%o", fds[i], fcntl(fds[i], F_GETFL), g_twice_fl[i]);
        if (lseek(fds[i], 0, SEEK_CUR) != g_twice_pos[i])
            fail("fd %d at offset %ld, was %ld", fds[i], (long)lseek(fds[i], 0, SEEK_CUR),
                 (long)g_twice_pos[i]);
    }
}

static void deleted_twice_setup(void) {
    g_del = open_or_die(at("twice"), O_RDWR | O_CREAT);
    g_del2 = open_or_die(at("twice"), O_RDWR);
    if (write(g_del, "abcdef", 6) != 6 || unlink(at("twice")) != 0) die("write twice");
    lseek(g_del2, 2, SEEK_SET);
    twice_save();
}
static void deleted_twice_check(void) {
    struct stat a, b;
    if (fstat(g_del, &a) != 0 || fstat(g_del2, &b) != 0) fail("fstat: %s", strerror(errno));
    if (a.st_ino != b.st_ino || a.st_dev != b.st_dev)
        fail("fds %d and %d are two files", g_del, g_del2);
    if (same_description(g_del, g_del2)) fail("fds %d and %d are one description", g_del, g_del2);
    twice_check_saved();
    if (g_del3 >= 0 && !same_description(g_del2, g_del3))
        fail("fd %d, a dup of fd %d, is another description", g_del3, g_del2);
    /* One offset each: moving the first's leaves the second's. */
    if (lseek(g_del, 1, SEEK_SET) != 1 || lseek(g_del2, 0, SEEK_CUR) != g_twice_pos[1])
        fail("a seek of fd %d moved fd %d", g_del, g_del2);
    /* A write through the writable one shows through the readable one. */
    int w = (g_twice_fl[0] & O_ACCMODE) != O_RDONLY ? g_del : g_del2;
    int r = w == g_del ? g_del2 : g_del;
    off_t at_ = (fcntl(w, F_GETFL) & O_APPEND) ? b.st_size : 0; /* pwrite appends there */
    char c = 0;
    if (pwrite(w, "X", 1, 0) != 1 || pread(r, &c, 1, at_) != 1 || c != 'X')
        fail("a write through fd %d does not show through fd %d", w, r);
}

/* Two access modes and offsets (a tool's temp file opened read-only and
 * write-only in append mode), the write-only one dup'd close-on-exec and
 * holding a shared flock. */
static void deleted_twice_modes_setup(void) {
    g_del = open_or_die(at("twice"), O_RDONLY | O_CREAT);
    g_del2 = open_or_die(at("twice"), O_WRONLY | O_APPEND | O_NONBLOCK);
    if (write(g_del2, "abcdef", 6) != 6) die("write twice");
    lseek(g_del, 3, SEEK_SET);
    g_del3 = fcntl(g_del2, F_DUPFD_CLOEXEC, 20);
    if (g_del3 < 0 || flock(g_del2, LOCK_SH) != 0 || unlink(at("twice")) != 0) die("twice");
    twice_save();
}
static void deleted_twice_modes_check(void) {
    deleted_twice_check();
    if (fcntl(g_del3, F_GETFD) != FD_CLOEXEC) fail("fd %d lost its close-on-exec", g_del3);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", g_del);
    int other = open(path, O_RDONLY);
    if (other < 0 || flock(other, LOCK_EX | LOCK_NB) == 0 || errno != EWOULDBLOCK)
        fail("the flock of fd %d is gone", g_del2);
    if (other >= 0) close(other);
}

/* A file made with O_TMPFILE whose lower fd is a description opened through
 * /proc/self/fd (read-only, at offset 1): the file is made again by the later
 * O_TMPFILE description (write-only, O_APPEND, at offset 4), still linkable,
 * and the first's opened again from it (state/file_deleted.cc). */
static void deleted_twice_tmpfile_setup(void) {
    int t = open(g_dir, O_TMPFILE | O_WRONLY | O_APPEND, 0640);
    if (t < 0) die("O_TMPFILE");
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", t);
    int r = open_or_die(path, O_RDONLY);
    g_del2 = fcntl(t, F_DUPFD, 10);
    if (g_del2 < 0 || dup2(r, t) != t || write(g_del2, "abcd", 4) != 4) die("dup");
    close(r);
    g_del = g_fd = t;
    lseek(g_del, 1, SEEK_SET);
    twice_save();
}
static void deleted_twice_tmpfile_check(void) {
    struct stat a, b;
    if (fstat(g_del, &a) != 0 || fstat(g_del2, &b) != 0 || a.st_ino != b.st_ino ||
        a.st_nlink != 0 || (a.st_mode & 07777) != 0640)
        fail("fds %d and %d: not one unlinked file of mode 0640", g_del, g_del2);
    if (same_description(g_del, g_del2)) fail("fds %d and %d are one description", g_del, g_del2);
    twice_check_saved();
    char buf[8] = {0};
    if (write(g_del2, "e", 1) != 1 || pread(g_del, buf, sizeof buf, 0) != 5 ||
        strcmp(buf, "abcde") != 0)
        fail("content through fd %d: %s", g_del, buf);
    /* Still an O_TMPFILE file: linkable by its name in /proc. */
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", g_del2);
    if (linkat(AT_FDCWD, path, AT_FDCWD, at("linked"), AT_SYMLINK_FOLLOW) != 0)
        fail("linkat of the O_TMPFILE file: %s", strerror(errno));
    else
        unlink(at("linked"));
}

/* One memfd held by two open file descriptions of the task (the second
 * opened through /proc/self/fd): restored, they must stay one memfd. */
static void memfd_twice_setup(void) {
    g_del = memfd_create("twice", 0);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", g_del);
    g_del2 = open_or_die(path, O_RDWR);
    if (write(g_del, "abcdef", 6) != 6) die("write twice");
    twice_save();
}

static void flock_setup(void) {
    regular_setup();
    if (flock(g_fd, LOCK_EX) != 0) die("flock");
}
static void flock_check(void) {
    int fd = open(at("data"), O_RDONLY);
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) fail("the flock is not held");
    close(fd);
}

static void posix_lock_setup(void) {
    regular_setup();
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 5};
    if (fcntl(g_fd, F_SETLK, &fl) != 0) die("F_SETLK");
}
static void posix_lock_check(void) {
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 5};
    int fd = open(at("data"), O_RDWR);
    if (fcntl(fd, F_OFD_GETLK, &fl) != 0 || fl.l_type == F_UNLCK)
        fail("the POSIX lock is not held");
    close(fd);
}

static void deleted_owner_setup(void) {
    g_fd = open_or_die(at("owned"), O_RDWR | O_CREAT);
    if (fchown(g_fd, 65534, 65534) != 0) die("fchown");
    unlink(at("owned"));
}
static void deleted_owner_check(void) {
    struct stat st;
    fstat(g_fd, &st);
    if (st.st_uid != 65534 || st.st_gid != 65534) fail("owner %u:%u", st.st_uid, st.st_gid);
}

static void socketpair_setup(void) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) die("socketpair");
    g_fd = sv[0];
}
static void timerfd_setup(void) {
    g_fd = timerfd_create(CLOCK_MONOTONIC, 0);
}
static void signalfd_setup(void) {
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR1);
    g_fd = signalfd(-1, &m, 0);
}
static void epoll_setup(void) {
    g_fd = epoll_create1(0);
}
static void inotify_setup(void) {
    g_fd = inotify_init1(0);
}

static const struct variant kVariants[] = {
    {"regular", regular_setup, regular_check, NULL},
    {"shared", shared_setup, shared_check, NULL},
    {"opath", opath_setup, check_open, NULL},
    {"nsfs", nsfs_setup, check_open, NULL},
    {"procfs", procfs_setup, check_open, NULL},
    {"ptmx", ptmx_setup, check_open, NULL},
    {"fuse", fuse_setup, check_open, NULL},
    {"pipe", pipe_setup, check_open, NULL},
    {"eventfd", eventfd_setup, check_open, NULL},
    {"memfd", memfd_setup, memfd_check, NULL},
    {"deleted_sparse", deleted_sparse_setup, deleted_sparse_check, NULL},
    {"deleted_linked", deleted_linked_setup, deleted_linked_check, NULL},
    {"deleted_huge", deleted_huge_setup, check_open, NULL},
    {"tmpfile", tmpfile_setup, tmpfile_check, NULL},
    {"tmpfile_gone", tmpfile_gone_setup, check_open, NULL},
    {"deleted", deleted_setup, deleted_check, NULL},
    {"deleted_twice", deleted_twice_setup, deleted_twice_check, NULL},
    {"deleted_twice_modes", deleted_twice_modes_setup, deleted_twice_modes_check, NULL},
    {"deleted_twice_tmpfile", deleted_twice_tmpfile_setup, deleted_twice_tmpfile_check, NULL},
    {"memfd_twice", memfd_twice_setup, deleted_twice_check, NULL},
    {"flock", flock_setup, flock_check, NULL},
    {"posix_lock", posix_lock_setup, posix_lock_check, NULL},
    {"deleted_owner", deleted_owner_setup, deleted_owner_check, NULL},
    {"socketpair", socketpair_setup, check_open, NULL},
    {"timerfd", timerfd_setup, check_open, NULL},
    {"signalfd", signalfd_setup, check_open, NULL},
    {"epoll", epoll_setup, check_open, NULL},
    {"inotify", inotify_setup, check_open, NULL},
};
PROBE_MAIN(kVariants)
