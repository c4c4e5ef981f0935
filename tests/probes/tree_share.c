/* What a tree's processes share (docs/trees.md "Sharing between members"):
 * restored once and held by every member again, or refused when a process
 * outside the tree holds it too. The children live until the check, which
 * has them verify what they hold (SIGUSR1: exit 0 when right) and reaps them. */
#include "outsider.h"
#include "probe.h"
#include "tree_kids.h"

#include <linux/kcmp.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static const char kBytes[] = "bytes in flight between two children";

/* One log description held by the parent (fd 3) and its child (fd 3): after
 * the parent writes, the child's offset moved too. */
static int log_verify(void) {
    return lseek(3, 0, SEEK_CUR) == 6 ? 0 : 1;
}
static void shared_desc_setup(void) {
    int fd = open(at("log"), O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd != 3 || write(fd, "abc", 3) != 3) die("open log");
    g_kids[0] = spawn(NULL, log_verify);
}
static void shared_desc_check(void) {
    long same = syscall(SYS_kcmp, getpid(), g_kids[0], KCMP_FILE, 3, 3);
    if (same != 0) fail("kcmp of the log's fds: %ld", same);
    if (write(3, "def", 3) != 3) fail("write log: %s", strerror(errno));
    kids_check();
}

/* A pipe whose write end is in one child, read end in another, bytes in it;
 * the parent holds neither. */
static int g_pipe[2];
static void writer_body(void) {
    close(g_pipe[0]);
    if (write(g_pipe[1], kBytes, sizeof kBytes) != sizeof kBytes) _exit(3);
}
static void reader_body(void) {
    close(g_pipe[1]);
}
static int reader_verify(void) {
    char buf[sizeof kBytes + 1];
    fcntl(g_pipe[0], F_SETFL, O_NONBLOCK);
    ssize_t n = read(g_pipe[0], buf, sizeof buf);
    return n == sizeof kBytes && memcmp(buf, kBytes, sizeof kBytes) == 0 ? 0 : 1;
}
static void pipe_setup(void) {
    if (pipe(g_pipe) != 0) die("pipe");
    g_kids[0] = spawn(writer_body, NULL);
    g_kids[1] = spawn(reader_body, reader_verify);
    close(g_pipe[0]);
    close(g_pipe[1]);
}

/* A unix socketpair the parent made, one end in each child, a message queued
 * to the reader; the parent closed both. SO_PEERCRED of each end names the
 * parent (who makes the pair again at restore). */
static int g_sp[2];
static int made_by_parent(int s) {
    struct ucred c;
    socklen_t len = sizeof c;
    if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &c, &len) != 0) return 0;
    return c.pid == getppid() && c.uid == geteuid() && c.gid == getegid();
}
static void sp_writer_body(void) {
    close(g_sp[0]);
    if (send(g_sp[1], kBytes, sizeof kBytes, 0) != sizeof kBytes) _exit(3);
}
static int sp_writer_verify(void) {
    return made_by_parent(g_sp[1]) ? 0 : 1;
}
static void sp_reader_body(void) {
    close(g_sp[1]);
}
static int sp_reader_verify(void) {
    char buf[sizeof kBytes + 1];
    ssize_t n = recv(g_sp[0], buf, sizeof buf, MSG_DONTWAIT);
    if (!made_by_parent(g_sp[0])) return 2;
    return n == sizeof kBytes && memcmp(buf, kBytes, sizeof kBytes) == 0 ? 0 : 1;
}
static void socketpair_setup(void) {
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, g_sp) != 0) die("socketpair");
    g_kids[0] = spawn(sp_writer_body, sp_writer_verify);
    g_kids[1] = spawn(sp_reader_body, sp_reader_verify);
    close(g_sp[0]);
    close(g_sp[1]);
}

/* Both ends of a seqpacket pair the parent made in one child, a message
 * queued each way, the second end with a receive buffer of its own. */
static int g_rcvbuf;
static void sp_both_body(void) {
    int size = 20000;
    socklen_t len = sizeof g_rcvbuf;
    if (setsockopt(g_sp[1], SOL_SOCKET, SO_RCVBUF, &size, sizeof size) != 0 ||
        getsockopt(g_sp[1], SOL_SOCKET, SO_RCVBUF, &g_rcvbuf, &len) != 0)
        _exit(3);
    if (send(g_sp[0], kBytes, sizeof kBytes, 0) != sizeof kBytes) _exit(3);
    if (send(g_sp[1], "back", 4, 0) != 4) _exit(3);
}
static int sp_both_verify(void) {
    char a[sizeof kBytes + 1], b[8];
    int rcvbuf = 0;
    socklen_t len = sizeof rcvbuf;
    if (!made_by_parent(g_sp[0]) || !made_by_parent(g_sp[1])) return 2;
    if (getsockopt(g_sp[1], SOL_SOCKET, SO_RCVBUF, &rcvbuf, &len) != 0 || rcvbuf != g_rcvbuf)
        return 3;
    ssize_t n = recv(g_sp[1], a, sizeof a, MSG_DONTWAIT),
            m = recv(g_sp[0], b, sizeof b, MSG_DONTWAIT);
    return n == sizeof kBytes && m == 4 && memcmp(b, "back", 4) == 0 ? 0 : 1;
}
static void socketpair_one_setup(void) {
    if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, g_sp) != 0) die("socketpair");
    g_kids[0] = spawn(sp_both_body, sp_both_verify);
    close(g_sp[0]);
    close(g_sp[1]);
}

/* SO_KEEPALIVE on a socketpair end: the parent's pair, its own end plain,
 * the child's end (given at restore, its records the parent's) with it set;
 * and a pair whose ends the parent holds both, one with it set. */
static int keepalive(int s) {
    int on = 0;
    socklen_t len = sizeof on;
    return getsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &on, &len) == 0 ? on : -1;
}
static void ka_child_body(void) {
    int on = 1;
    close(g_sp[0]);
    if (setsockopt(g_sp[1], SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) != 0) _exit(3);
}
static int ka_child_verify(void) {
    return keepalive(g_sp[1]) > 0 ? 0 : 1;
}
static void keepalive_setup(void) {
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, g_sp) != 0) die("socketpair");
    g_kids[0] = spawn(ka_child_body, ka_child_verify);
    close(g_sp[1]);
}
static void keepalive_check(void) {
    if (keepalive(g_sp[0]) != 0) fail("SO_KEEPALIVE of the parent's end: %d", keepalive(g_sp[0]));
    kids_check();
}
static void keepalive_own_setup(void) {
    int on = 1;
    g_kids[0] = spawn(NULL, NULL); /* a tree, as the others (restored into its pids) */
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, g_sp) != 0) die("socketpair");
    if (setsockopt(g_sp[1], SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) != 0) die("keepalive");
}
static void keepalive_own_check(void) {
    if (keepalive(g_sp[0]) != 0 || keepalive(g_sp[1]) != 1)
        fail("SO_KEEPALIVE of the ends: %d %d, not 0 1", keepalive(g_sp[0]), keepalive(g_sp[1]));
    kids_check();
}

/* The read end is also held by a process outside the tree (reparented away):
 * a reason, the checkpoint EBUSY. */
static pid_t g_outside;
static void outside_setup(void) {
    if (pipe(g_pipe) != 0) die("pipe");
    g_outside = spawn_outsider();
    g_kids[0] = spawn(reader_body, NULL);
    close(g_pipe[0]);
}
static void outside_check(void) {
    kill(g_outside, SIGKILL);
    kids_check();
}

/* mqtree: one object with no name, a description of it opened by the parent
 * (fd 3, read-write, offset 10) and another by the child itself (fd 3,
 * read-only, offset 4): a deleted file both opened before the unlink, or a
 * memfd the child opened again through /proc/PID/fd. Restored, the parent
 * opens it again through /proc/self/fd with the child's flags and offset:
 * two descriptions (kcmp), one inode (the parent's write after the restore
 * is read by the child). */
static const char kTen[] = "0123456789";
static void own_desc_body(int again) {
    if (again < 0 || dup2(again, 3) != 3 || close(again) != 0 || lseek(3, 4, SEEK_SET) != 4)
        _exit(3);
}
static void deleted_body(void) {
    own_desc_body(open(at("scratch"), O_RDONLY));
}
static void memfd_body(void) {
    own_desc_body(open("/proc/self/fd/3", O_RDONLY));
}
static int own_desc_verify(void) {
    char buf[3] = "";
    if ((fcntl(3, F_GETFL) & O_ACCMODE) != O_RDONLY || lseek(3, 0, SEEK_CUR) != 4) return 1;
    if (pread(3, buf, 2, 10) != 2 || memcmp(buf, "XY", 2) != 0) return 2; /* the parent's */
    return read(3, buf, 2) == 2 && memcmp(buf, "45", 2) == 0 ? 0 : 3;
}
static void own_desc_setup(int fd, void (*body)(void), int (*verify)(void)) {
    if (fd != 3 || write(3, kTen, 10) != 10) die("the object at fd 3");
    g_kids[0] = spawn(body, verify);
}
static void deleted_two_setup(void) {
    own_desc_setup(open(at("scratch"), O_RDWR | O_CREAT | O_TRUNC, 0600), deleted_body,
                   own_desc_verify);
    if (unlink(at("scratch")) != 0) die("unlink");
}
static void memfd_two_setup(void) {
    own_desc_setup(memfd_create("two", 0), memfd_body, own_desc_verify);
}
/* The child's own description held by its child too (inherited): the child
 * gives on the description made for it (kShareSame of a reopened fd). */
static pid_t g_grandkid;
static void given_on_body(void) {
    deleted_body();
    g_grandkid = fork();
    if (g_grandkid == 0) {
        syscall(SYS_close_range, 4, ~0U, 0); /* spawn's pipe: its parent is done */
        for (;;) pause();
    }
    if (g_grandkid < 0) _exit(4);
}
static int given_on_verify(void) {
    int r = own_desc_verify();
    long same = syscall(SYS_kcmp, getpid(), g_grandkid, KCMP_FILE, 3, 3);
    kill(g_grandkid, SIGKILL);
    waitpid(g_grandkid, NULL, 0);
    return r ? r : same == 0 ? 0 : 5;
}
static void given_on_setup(void) {
    own_desc_setup(open(at("scratch"), O_RDWR | O_CREAT | O_TRUNC, 0600), given_on_body,
                   given_on_verify);
    if (unlink(at("scratch")) != 0) die("unlink");
}
static void own_desc_check(void) {
    char path[64];
    struct stat mine, theirs;
    snprintf(path, sizeof path, "/proc/%d/fd/3", (int)g_kids[0]);
    if (fstat(3, &mine) != 0 || stat(path, &theirs) != 0 || mine.st_ino != theirs.st_ino)
        fail("the child's fd 3 is not the parent's object");
    long same = syscall(SYS_kcmp, getpid(), g_kids[0], KCMP_FILE, 3, 3);
    if (same <= 0) fail("kcmp of the fds: %ld (one description, or unknown)", same);
    if ((fcntl(3, F_GETFL) & O_ACCMODE) != O_RDWR || lseek(3, 0, SEEK_CUR) != 10)
        fail("the parent's description: flags 0%o, offset %ld", fcntl(3, F_GETFL),
             (long)lseek(3, 0, SEEK_CUR));
    if (write(3, "XY", 2) != 2) fail("write: %s", strerror(errno));
    kids_check();
}

/* deltwice: a deleted file the parent opened twice (fd 3 read-write, fd 4
 * read-only at offset 2; fd 4 is fd kind 40, state/file_reopen.cc), both
 * inherited by its child: each fd one description with the parent's again. */
static int twice_kid_verify(void) {
    struct stat a, b;
    if (fstat(3, &a) != 0 || fstat(4, &b) != 0 || a.st_ino != b.st_ino) return 1;
    if (syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, 3, 4) == 0) return 2;
    return lseek(4, 0, SEEK_CUR) == 2 ? 0 : 3;
}
static void deleted_twice_kid_setup(void) {
    if (open(at("scratch"), O_RDWR | O_CREAT | O_TRUNC, 0600) != 3 ||
        open(at("scratch"), O_RDONLY) != 4 || write(3, "abcdef", 6) != 6 ||
        lseek(4, 2, SEEK_SET) != 2 || unlink(at("scratch")) != 0)
        die("the deleted file at fds 3 and 4");
    g_kids[0] = spawn(NULL, twice_kid_verify);
}
static void deleted_twice_kid_check(void) {
    for (int fd = 3; fd <= 4; ++fd)
        if (syscall(SYS_kcmp, getpid(), g_kids[0], KCMP_FILE, fd, fd) != 0)
            fail("the child's fd %d is not the parent's description", fd);
    struct stat a, b;
    if (fstat(3, &a) != 0 || fstat(4, &b) != 0 || a.st_ino != b.st_ino)
        fail("fds 3 and 4 are two files");
    if (syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, 3, 4) == 0)
        fail("fds 3 and 4 are one description");
    kids_check();
}

/* share39: the parent's removed directory (fd 3), the child's own
 * description of it (opened through /proc/self/fd before the rmdir) read in
 * part with getdents: its offset a getdents cookie, which the removed
 * directory takes no more (opened and seeked by the parent's restore before
 * its rmdir). After the restore: that offset, getdents ENOENT, one inode,
 * two descriptions. */
static off_t g_dir_pos;
static int g_dir_flags;    /* `nofollow`: O_NOFOLLOW, opened by the name (fdshare) */
static int g_parent_flags; /* `giver_nofollow`: the parent's fd O_NOFOLLOW (fdshare) */
static void dir_offset_body(void) {
    char buf[64];
    int again = g_dir_flags ? open(at("dd"), O_RDONLY | O_DIRECTORY | g_dir_flags)
                            : open("/proc/self/fd/3", O_RDONLY | O_DIRECTORY);
    if (again < 0 || dup2(again, 3) != 3 || close(again) != 0 ||
        syscall(SYS_getdents64, 3, buf, sizeof buf) <= 0)
        _exit(3);
    g_dir_pos = lseek(3, 0, SEEK_CUR);
    if (g_dir_pos <= 0) _exit(4);
}
static int dir_offset_verify(void) {
    char buf[64], path[64];
    struct stat mine, theirs;
    snprintf(path, sizeof path, "/proc/%d/fd/3", (int)getppid());
    if (fstat(3, &mine) != 0 || stat(path, &theirs) != 0 || mine.st_ino != theirs.st_ino ||
        mine.st_nlink != 0)
        return 1;
    if (syscall(SYS_kcmp, getpid(), getppid(), KCMP_FILE, 3, 3) <= 0) return 2;
    if ((fcntl(3, F_GETFL) & ~0100000) != (O_RDONLY | O_DIRECTORY | g_dir_flags)) return 3;
    if (lseek(3, 0, SEEK_CUR) != g_dir_pos) return 4;
    return syscall(SYS_getdents64, 3, buf, sizeof buf) < 0 && errno == ENOENT ? 0 : 5;
}
static void deleted_dir_offset_setup(void) {
    static const char* const kNames[] = {"dd/a", "dd/b", "dd/c", "dd/d"};
    if (mkdir(at("dd"), 0750) != 0) die("mkdir");
    for (int i = 0; i < 4; ++i) write_file(at(kNames[i]), "x");
    if (open(at("dd"), O_RDONLY | O_DIRECTORY | g_parent_flags) != 3) die("open dd");
    g_kids[0] = spawn(dir_offset_body, dir_offset_verify);
    for (int i = 0; i < 4; ++i)
        if (unlink(at(kNames[i])) != 0) die("unlink");
    if (rmdir(at("dd")) != 0) die("rmdir");
}
static void deleted_dir_offset_nofollow_setup(void) {
    g_dir_flags = O_NOFOLLOW;
    deleted_dir_offset_setup();
}
static void deleted_dir_giver_nofollow_setup(void) {
    g_parent_flags = O_NOFOLLOW;
    deleted_dir_offset_setup();
}
static void deleted_dir_offset_check(void) {
    struct stat st;
    if (fstat(3, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_nlink != 0 ||
        lseek(3, 0, SEEK_CUR) != 0)
        fail("fd 3 is no removed directory at offset 0");
    if ((fcntl(3, F_GETFL) & ~0100000) != (O_RDONLY | O_DIRECTORY | g_parent_flags))
        fail("fd 3's flags 0%o", fcntl(3, F_GETFL));
    if (syscall(SYS_kcmp, getpid(), g_kids[0], KCMP_FILE, 3, 3) <= 0)
        fail("the child's fd 3 is the parent's description, or kcmp failed");
    kids_check();
}

/* A FIFO two children opened separately by its path (issue 11, docs/trees.md
 * "FIFOs between members"): the reader O_RDONLY|O_NONBLOCK, the writer
 * O_WRONLY with bytes written; the parent holds neither. Each comes back its
 * own description of the FIFO at the path, the bytes in it once. */
static struct stat g_fifo_st;
static int g_fifo = -1;
static int is_the_fifo(int fd, int flags) {
    struct stat st;
    return fstat(fd, &st) == 0 && st.st_ino == g_fifo_st.st_ino && st.st_dev == g_fifo_st.st_dev &&
           (fcntl(fd, F_GETFL) & (O_ACCMODE | O_NONBLOCK)) == flags;
}
static void fifo_reader_body(void) {
    g_fifo = open(at("fifo"), O_RDONLY | O_NONBLOCK);
    if (g_fifo < 0) _exit(3);
}
static int fifo_reader_verify(void) {
    char buf[2 * sizeof kBytes];
    if (!is_the_fifo(g_fifo, O_RDONLY | O_NONBLOCK)) return 2;
    ssize_t n = read(g_fifo, buf, sizeof buf); /* once: no second copy behind it */
    if (n != sizeof kBytes || memcmp(buf, kBytes, sizeof kBytes) != 0) return 1;
    n = read(g_fifo, buf, sizeof buf); /* EAGAIN, or end of file once the writer is gone */
    return n == 0 || (n < 0 && errno == EAGAIN) ? 0 : 4;
}
static void fifo_writer_body(void) {
    g_fifo = open(at("fifo"), O_WRONLY); /* a reader is open: does not block */
    if (g_fifo < 0 || write(g_fifo, kBytes, sizeof kBytes) != sizeof kBytes) _exit(3);
}
static int fifo_writer_verify(void) {
    return is_the_fifo(g_fifo, O_WRONLY) ? 0 : 1;
}
static void fifo_make(void) {
    if (mkfifo(at("fifo"), 0600) != 0 || stat(at("fifo"), &g_fifo_st) != 0) die("mkfifo");
}
static void fifo_reader_first_setup(void) {
    fifo_make();
    g_kids[0] = spawn(fifo_reader_body, fifo_reader_verify);
    g_kids[1] = spawn(fifo_writer_body, fifo_writer_verify);
}
static void fifo_writer_first_setup(void) {
    fifo_make();
    int r = open(at("fifo"), O_RDONLY | O_NONBLOCK); /* for the writer's open, closed after */
    if (r < 0) die("open fifo");
    g_kids[0] = spawn(fifo_writer_body, fifo_writer_verify);
    g_kids[1] = spawn(fifo_reader_body, fifo_reader_verify);
    close(r);
}
/* The FIFO also held by a process outside the tree: a reason, EBUSY. */
static void fifo_outside_setup(void) {
    fifo_make();
    int r = open(at("fifo"), O_RDONLY | O_NONBLOCK);
    if (r < 0) die("open fifo");
    g_outside = spawn_outsider(); /* inherits r */
    close(r);
    g_kids[0] = spawn(fifo_reader_body, NULL);
    g_kids[1] = spawn(fifo_writer_body, NULL);
}

/* pidfd: the parent's PIDFD_NONBLOCK pidfd of its child (fd 3), the child's
 * pidfd of its parent: each names the restored process, flags kept. */
static int g_up = -1;
static int pidfd_names(int fd, pid_t pid, int nonblock) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    int f = open(path, O_RDONLY);
    ssize_t n = f < 0 ? -1 : read(f, buf, sizeof buf - 1);
    if (f >= 0) close(f);
    if (n <= 0) return 0;
    buf[n] = 0;
    const char* p = strstr(buf, "\nPid:");
    int flags = fcntl(fd, F_GETFL);
    return p && atoi(p + 5) == pid && flags >= 0 && ((flags & O_NONBLOCK) != 0) == nonblock &&
           syscall(SYS_pidfd_send_signal, fd, 0, NULL, 0) == 0;
}
static void pidfd_up_body(void) {
    g_up = (int)syscall(SYS_pidfd_open, getppid(), 0);
    if (g_up < 0) _exit(3);
}
static int pidfd_up_verify(void) {
    return pidfd_names(g_up, getppid(), 0) ? 0 : 1;
}
static void pidfd_kids_setup(void) {
    g_kids[0] = spawn(pidfd_up_body, pidfd_up_verify);
    if (syscall(SYS_pidfd_open, g_kids[0], O_NONBLOCK) != 3) die("pidfd_open child");
}
static void pidfd_kids_check(void) {
    if (!pidfd_names(3, g_kids[0], 1))
        fail("fd 3 names no child %d, or lost O_NONBLOCK", g_kids[0]);
    kids_check();
}

/* A child's pidfd of its earlier sibling (pidfd2: opened by their parent
 * right after it clones the sibling, handed over): it names the restored
 * sibling. The holder is checked first (g_kids[0]), while the sibling lives. */
static pid_t g_first;
static int g_sib = -1;
static void pidfd_sibling_body(void) {
    g_sib = (int)syscall(SYS_pidfd_open, g_first, 0);
    if (g_sib < 0) _exit(3);
}
static int pidfd_sibling_verify(void) {
    return pidfd_names(g_sib, g_first, 0) ? 0 : 1;
}
static void pidfd_sibling_setup(void) {
    g_kids[1] = g_first = spawn(NULL, NULL);
    g_kids[0] = spawn(pidfd_sibling_body, pidfd_sibling_verify);
}

/* The parent's PIDFD_NONBLOCK pidfd of its grandchild (fd 3; pidfd2: its
 * child opens it right after it clones the grandchild): after the restore it
 * names the grandchild, and its SIGKILL through it ends the grandchild, whose
 * parent, the child, sees it killed. */
static pid_t g_grand;
static void grand_body(void) {
    g_grand = fork();
    if (g_grand < 0) _exit(3);
    if (g_grand == 0) {
        syscall(SYS_close_range, 3, ~0u, 0); /* spawn's pipe, fd 9: its parent's */
        for (;;) pause();
    }
    if (write(9, &g_grand, sizeof g_grand) != sizeof g_grand) _exit(3);
    close(9);
}
static int grand_verify(void) {
    int st = 0;
    return waitpid(g_grand, &st, 0) == g_grand && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL ? 0
                                                                                             : 1;
}
static void pidfd_grandchild_setup(void) {
    int p[2];
    if (pipe(p) != 0 || dup2(p[1], 9) != 9) die("pipe");
    close(p[1]);
    g_kids[0] = spawn(grand_body, grand_verify);
    close(9);
    if (read(p[0], &g_grand, sizeof g_grand) != sizeof g_grand) die("read the grandchild's pid");
    close(p[0]);
    if (syscall(SYS_pidfd_open, g_grand, O_NONBLOCK) != 3) die("pidfd_open grandchild");
}
static void pidfd_grandchild_check(void) {
    if (!pidfd_names(3, g_grand, 1))
        fail("fd 3 names no grandchild %d, or lost O_NONBLOCK", g_grand);
    if (syscall(SYS_pidfd_send_signal, 3, SIGKILL, NULL, 0) != 0)
        fail("pidfd_send_signal SIGKILL: %s", strerror(errno));
    struct pollfd pf = {3, POLLIN, 0};
    if (poll(&pf, 1, 60000) != 1) fail("the grandchild's pidfd never said it ended");
    kids_check();
}

/* A child's pidfd of its zombie sibling (exit 7, not reaped; pidfd2: the
 * parent opens it right after it clones the zombie again): it names the
 * zombie, and the parent then reaps the zombie's status 7. */
static pid_t g_zombie;
static int g_zfd = -1;
static void zombie_sibling_body(void) {
    g_zfd = (int)syscall(SYS_pidfd_open, g_zombie, 0);
    if (g_zfd < 0) _exit(3);
}
static int zombie_sibling_verify(void) {
    return pidfd_names(g_zfd, g_zombie, 0) ? 0 : 1;
}
static void pidfd_zombie_sibling_setup(void) {
    g_zombie = fork();
    if (g_zombie < 0) die("fork");
    if (g_zombie == 0) _exit(7);
    siginfo_t si;
    if (waitid(P_PID, (id_t)g_zombie, &si, WEXITED | WNOWAIT) != 0) die("waitid");
    g_kids[0] = spawn(zombie_sibling_body, zombie_sibling_verify);
}
static void pidfd_zombie_sibling_check(void) {
    kids_check();
    int st = 0;
    if (waitpid(g_zombie, &st, 0) != g_zombie || !WIFEXITED(st) || WEXITSTATUS(st) != 7)
        fail("zombie %d: status 0x%x, not exit 7", g_zombie, st);
}

static const struct variant kVariants[] = {
    {"shared_desc", shared_desc_setup, shared_desc_check, NULL},
    {"cross_pipe", pipe_setup, kids_check, NULL},
    {"cross_socketpair", socketpair_setup, kids_check, NULL},
    {"made_socketpair", socketpair_one_setup, kids_check, NULL},
    {"keepalive_given", keepalive_setup, keepalive_check, NULL},
    {"keepalive_own", keepalive_own_setup, keepalive_own_check, NULL},
    {"outside_pipe", outside_setup, outside_check, NULL},
    {"deleted_two_members", deleted_two_setup, own_desc_check, NULL},
    {"memfd_two_members", memfd_two_setup, own_desc_check, NULL},
    {"deleted_given_on", given_on_setup, own_desc_check, NULL},
    {"deleted_twice_kid", deleted_twice_kid_setup, deleted_twice_kid_check, NULL},
    {"deleted_dir_offset", deleted_dir_offset_setup, deleted_dir_offset_check, NULL},
    {"deleted_dir_offset_nofollow", deleted_dir_offset_nofollow_setup, deleted_dir_offset_check,
     NULL},
    {"deleted_dir_giver_nofollow", deleted_dir_giver_nofollow_setup, deleted_dir_offset_check,
     NULL},
    {"fifo_reader_first", fifo_reader_first_setup, kids_check, NULL},
    {"fifo_writer_first", fifo_writer_first_setup, kids_check, NULL},
    {"fifo_outside", fifo_outside_setup, outside_check, NULL},
    {"pidfd_kids", pidfd_kids_setup, pidfd_kids_check, NULL},
    {"pidfd_sibling", pidfd_sibling_setup, kids_check, NULL},
    {"pidfd_grandchild", pidfd_grandchild_setup, pidfd_grandchild_check, NULL},
    {"pidfd_zombie_sibling", pidfd_zombie_sibling_setup, pidfd_zombie_sibling_check, NULL},
};

PROBE_MAIN(kVariants)
