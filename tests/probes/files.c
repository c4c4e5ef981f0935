/* File descriptor probes: a regular file with an offset round-trips; the
 * rest are refused variants. */
#include "probe.h" /* first: it defines _GNU_SOURCE */

#include <linux/fs.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
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

static void dup_setup(void) {
    regular_setup();
    g_fd2 = dup(g_fd);
}
static void dup_check(void) {
    lseek(g_fd, 7, SEEK_SET);
    if (lseek(g_fd2, 0, SEEK_CUR) != 7) fail("dup'd fds do not share their offset");
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
    {"dup", dup_setup, dup_check, NULL},
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
    {"deleted", deleted_setup, deleted_check, NULL},
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
