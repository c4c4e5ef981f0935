/* Kernel-object probes of issue 11, part c (memfd, state/memfd.cc): one memfd
 * object behind several fds and mappings, its name, size, holes, seals, mode;
 * a write through one fd or mapping is seen through the others. Refused: a
 * memfd another process holds, a hugetlbfs memfd; System V shm. (System V
 * semaphores and message queues: tests/probes/sysv_ipc.c.) POSIX message queues are restored now
 * (tests/probes/mqueue.c); posix_mq stays as a variant without a row. */
#include "probe.h" /* first: it defines _GNU_SOURCE */

#include <linux/kcmp.h>
#include <mqueue.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/prctl.h>
#include <sys/sem.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x8U
#endif
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x10
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x20
#endif

#define PAGE 4096
#define HOLE_AT (1 << 20) /* a second extent after a hole */

static int g_fd = -1, g_dup = -1, g_reopen = -1;
static char *g_shared, *g_private, *g_shared2;

static void expect_name(int fd, const char* want) {
    char path[64], link[512];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, link, sizeof link - 1);
    if (n < 0) return fail("readlink fd %d: %s", fd, strerror(errno));
    link[n] = '\0';
    if (strcmp(link, want) != 0) fail("fd %d is '%s', want '%s'", fd, link, want);
}

static void expect_seals(int fd, int want) {
    int s = fcntl(fd, F_GET_SEALS);
    if (s != want) fail("seals 0x%x, want 0x%x", s, want);
}

static char* map_or_die(int prot, int flags, int fd, off_t off) {
    char* p = mmap(NULL, 2 * PAGE, prot, flags, fd, off);
    if (p == MAP_FAILED) die("mmap memfd");
    return p;
}

/* memfd: name, a hole, an fd at an offset, its dup (one description) and a
 * reopen through /proc (a second one, O_RDONLY), a shared writable mapping
 * twice (at two addresses), a private one with one copied-on-write page;
 * F_SEAL_SHRINK | F_SEAL_GROW. */
static void memfd_setup(void) {
    g_fd = memfd_create("kobj-c mem", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (g_fd < 0) die("memfd_create");
    if (ftruncate(g_fd, HOLE_AT + 2 * PAGE) != 0) die("ftruncate");
    if (pwrite(g_fd, "first page", 10, 0) != 10 || pwrite(g_fd, "page two", 8, PAGE) != 8 ||
        pwrite(g_fd, "far", 3, HOLE_AT) != 3)
        die("pwrite");
    if (lseek(g_fd, 5, SEEK_SET) != 5) die("lseek");
    g_dup = dup(g_fd);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", g_fd);
    g_reopen = open(path, O_RDONLY);
    if (g_dup < 0 || g_reopen < 0) die("dup/reopen");
    if (lseek(g_reopen, 7, SEEK_SET) != 7) die("lseek");
    g_shared = map_or_die(PROT_READ | PROT_WRITE, MAP_SHARED, g_fd, 0);
    g_shared2 = map_or_die(PROT_READ, MAP_SHARED, g_fd, 0);
    g_private = map_or_die(PROT_READ | PROT_WRITE, MAP_PRIVATE, g_fd, 0);
    memcpy(g_private + PAGE, "private!", 8); /* page 2: the mapping's own copy */
    memcpy(g_shared, "FIRST", 5);
    if (fcntl(g_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0) die("F_ADD_SEALS");
}
static void memfd_check(void) {
    pid_t me = getpid();
    expect_name(g_fd, "/memfd:kobj-c mem (deleted)");
    expect_seals(g_fd, F_SEAL_SHRINK | F_SEAL_GROW);
    struct stat st;
    fstat(g_fd, &st);
    if (st.st_size != HOLE_AT + 2 * PAGE) fail("size %lld", (long long)st.st_size);
    if (!(fcntl(g_fd, F_GETFD) & FD_CLOEXEC) || (fcntl(g_reopen, F_GETFD) & FD_CLOEXEC))
        fail("close-on-exec differs");
    if ((fcntl(g_reopen, F_GETFL) & O_ACCMODE) != O_RDONLY) fail("reopen not read-only");
    if (syscall(SYS_kcmp, me, me, KCMP_FILE, g_fd, g_dup) != 0) fail("dup no longer shared");
    if (syscall(SYS_kcmp, me, me, KCMP_FILE, g_fd, g_reopen) == 0) fail("reopen shares");
    if (lseek(g_dup, 0, SEEK_CUR) != 5 || lseek(g_reopen, 0, SEEK_CUR) != 7)
        fail("offsets %lld/%lld", (long long)lseek(g_dup, 0, SEEK_CUR),
             (long long)lseek(g_reopen, 0, SEEK_CUR));
    if (lseek(g_reopen, 2 * PAGE, SEEK_DATA) != HOLE_AT) fail("the hole is gone");
    char buf[16] = {0};
    if (pread(g_reopen, buf, 10, 0) != 10 || memcmp(buf, "FIRST page", 10) != 0)
        fail("content '%.10s'", buf);
    if (memcmp(g_private + PAGE, "private!", 8) != 0) fail("private page lost");
    if (memcmp(g_shared + PAGE, "page two", 8) != 0)
        fail("shared page two '%.8s'", g_shared + PAGE);
    /* One object: a write through the fd shows in both shared mappings and
     * in the private mapping's page it never wrote; not in its own copy. */
    if (pwrite(g_dup, "again", 5, 0) != 5) fail("pwrite: %s", strerror(errno));
    if (memcmp(g_shared, "again", 5) || memcmp(g_shared2, "again", 5) ||
        memcmp(g_private, "again", 5))
        fail("a write through the fd is not seen through the mappings");
    memcpy(g_shared + PAGE, "via map", 7);
    if (pread(g_reopen, buf, 7, PAGE) != 7 || memcmp(buf, "via map", 7) != 0)
        fail("a write through the mapping is not seen through the fd");
    if (memcmp(g_private + PAGE, "private!", 8) != 0) fail("private copy follows the file");
    if (ftruncate(g_fd, PAGE) == 0 || errno != EPERM) fail("F_SEAL_SHRINK not enforced");
}

/* memfd_sealed: F_SEAL_WRITE | F_SEAL_SEAL with a read-only shared mapping. */
static void memfd_sealed_setup(void) {
    g_fd = memfd_create("sealed", MFD_ALLOW_SEALING);
    if (g_fd < 0 || write(g_fd, "frozen", 6) != 6) die("memfd");
    if (fcntl(g_fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SEAL) != 0) die("F_ADD_SEALS");
    g_shared = map_or_die(PROT_READ, MAP_SHARED, g_fd, 0);
}
static void memfd_sealed_check(void) {
    expect_seals(g_fd, F_SEAL_WRITE | F_SEAL_SEAL);
    if (memcmp(g_shared, "frozen", 6) != 0) fail("mapping content differs");
    if (pwrite(g_fd, "x", 1, 0) >= 0 || errno != EPERM) fail("F_SEAL_WRITE not enforced");
    if (mprotect(g_shared, PAGE, PROT_READ | PROT_WRITE) == 0) fail("mapping became writable");
    if (fcntl(g_fd, F_ADD_SEALS, F_SEAL_GROW) >= 0) fail("F_SEAL_SEAL not enforced");
}

/* memfd_future_write: a writable shared mapping made before F_SEAL_FUTURE_WRITE. */
static void memfd_future_setup(void) {
    g_fd = memfd_create("future", MFD_ALLOW_SEALING);
    if (g_fd < 0 || ftruncate(g_fd, PAGE) != 0) die("memfd");
    g_shared = map_or_die(PROT_READ | PROT_WRITE, MAP_SHARED, g_fd, 0);
    if (fcntl(g_fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE) != 0) die("F_ADD_SEALS");
    memcpy(g_shared, "still", 5);
}
static void memfd_future_check(void) {
    expect_seals(g_fd, F_SEAL_FUTURE_WRITE);
    memcpy(g_shared + 5, " writable", 9);
    char buf[16] = {0};
    if (pread(g_fd, buf, 14, 0) != 14 || memcmp(buf, "still writable", 14) != 0)
        fail("content '%.14s'", buf);
    if (pwrite(g_fd, "x", 1, 0) >= 0 || errno != EPERM) fail("write() not sealed");
    if (mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, g_fd, 0) != MAP_FAILED)
        fail("a new writable mapping was allowed");
}

/* memfd_noexec: MFD_NOEXEC_SEAL (mode 0666, F_SEAL_EXEC) and no MFD_ALLOW_SEALING
 * of another memfd (F_SEAL_SEAL alone); chmod'd 0640. */
static void memfd_noexec_setup(void) {
    g_fd = memfd_create("noexec", MFD_NOEXEC_SEAL);
    g_dup = memfd_create("nosealing", 0);
    if (g_fd < 0 || g_dup < 0) die("memfd_create");
    if (fchmod(g_dup, 0640) != 0) die("fchmod");
}
static void memfd_noexec_check(void) {
    expect_seals(g_fd, F_SEAL_EXEC);
    expect_seals(g_dup, F_SEAL_SEAL);
    struct stat a, b;
    fstat(g_fd, &a);
    fstat(g_dup, &b);
    if ((a.st_mode & 07777) != 0666 || (b.st_mode & 07777) != 0640)
        fail("modes 0%o 0%o", a.st_mode & 07777, b.st_mode & 07777);
    if (fchmod(g_fd, 0755) == 0) fail("F_SEAL_EXEC not enforced");
}

/* memfd_mapped: a memfd held by mappings only (its fd closed): root reads it
 * through map_files. */
static void memfd_mapped_setup(void) {
    int fd = memfd_create("mapped", 0);
    if (fd < 0 || ftruncate(fd, 2 * PAGE) != 0 || write(fd, "hello", 5) != 5) die("memfd");
    g_shared = map_or_die(PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    g_private = map_or_die(PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    close(fd);
    g_private[0] = 'J';
}
static void memfd_mapped_check(void) {
    if (memcmp(g_shared, "hello", 5) != 0 || memcmp(g_private, "Jello", 5) != 0)
        fail("content '%.5s' '%.5s'", g_shared, g_private);
    g_shared[1] = 'a';
    if (g_private[1] != 'e') fail("the private copy follows the file");
    memcpy(g_shared + PAGE, "p2", 2);
    if (memcmp(g_private + PAGE, "p2", 2) != 0)
        fail("an untouched private page does not follow the file");
}

/* Refused: a memfd a child process holds too. */
static pid_t g_child;
static void memfd_other_setup(void) {
    g_fd = memfd_create("other", 0);
    if (g_fd < 0) die("memfd_create");
    g_child = fork();
    if (g_child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (;;) pause();
    }
    if (g_child < 0) die("fork");
}
static void memfd_other_check(void) {
    kill(g_child, SIGKILL);
    struct stat st;
    if (fstat(g_fd, &st) != 0) fail("memfd gone");
}

static void memfd_hugetlb_setup(void) {
    g_fd = memfd_create("huge", MFD_HUGETLB);
    if (g_fd < 0) die("memfd_create MFD_HUGETLB");
}
static void check_fd(void) {
    struct stat st;
    if (fstat(g_fd, &st) != 0) fail("fd gone");
}

/* Shared anonymous memory split by mprotect (one object, disjoint pages):
 * restored exactly. */
static void shared_split_setup(void) {
    g_shared = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g_shared == MAP_FAILED) die("mmap");
    strcpy(g_shared, "one");
    strcpy(g_shared + 2 * PAGE, "three");
    if (mprotect(g_shared + PAGE, PAGE, PROT_READ) != 0) die("mprotect");
}
static void shared_split_check(void) {
    if (strcmp(g_shared, "one") || strcmp(g_shared + 2 * PAGE, "three") || g_shared[PAGE])
        fail("content differs");
    if (mprotect(g_shared + PAGE, PAGE, PROT_READ | PROT_WRITE) != 0) fail("mprotect");
    strcpy(g_shared + PAGE, "two");
}

/* Refused: one shared anonymous object at two addresses (mremap, old size 0). */
static void shared_alias_setup(void) {
    g_shared = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g_shared == MAP_FAILED) die("mmap");
    g_shared2 = mremap(g_shared, 0, 2 * PAGE, MREMAP_MAYMOVE);
    if (g_shared2 == MAP_FAILED) die("mremap");
    g_shared[PAGE] = 'x';
}
static void shared_alias_check(void) {
    g_shared[0] = 'y';
    if (g_shared2[0] != 'y' || g_shared2[PAGE] != 'x') fail("the alias is a copy");
}

/* A POSIX message queue (restored now: the mqueue probes). System V
 * message queues and semaphore sets are restored now too:
 * tests/fs/sysv_ipc_mount_test.py, refused ones tests/probes/sysv_ipc.c. */
static mqd_t g_mq = (mqd_t)-1;
static void posix_mq_setup(void) {
    char name[64];
    snprintf(name, sizeof name, "/crfs-kobj-c-%d", (int)getpid());
    g_mq = mq_open(name, O_RDWR | O_CREAT | O_EXCL, 0600, NULL);
    if (g_mq == (mqd_t)-1) die("mq_open");
    mq_unlink(name);
    if (mq_send(g_mq, "m", 1, 0) != 0) die("mq_send");
}
static void posix_mq_check(void) {
    struct mq_attr a;
    if (mq_getattr(g_mq, &a) != 0 || a.mq_curmsgs != 1) fail("queue differs");
}

static const struct variant kVariants[] = {
    {"memfd_one", memfd_setup, memfd_check, NULL},
    {"memfd_sealed", memfd_sealed_setup, memfd_sealed_check, NULL},
    {"memfd_future_write", memfd_future_setup, memfd_future_check, NULL},
    {"memfd_noexec", memfd_noexec_setup, memfd_noexec_check, NULL},
    {"memfd_mapped", memfd_mapped_setup, memfd_mapped_check, NULL},
    {"memfd_other", memfd_other_setup, memfd_other_check, NULL},
    {"memfd_hugetlb", memfd_hugetlb_setup, check_fd, NULL},
    {"shared_anon_split", shared_split_setup, shared_split_check, NULL},
    {"shared_anon_alias", shared_alias_setup, shared_alias_check, NULL},
    {"posix_mq", posix_mq_setup, posix_mq_check, NULL},
};
PROBE_MAIN(kVariants)
