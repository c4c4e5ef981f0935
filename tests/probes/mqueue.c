/* POSIX message queue probes of issue 11 (state/mqueue.cc): a queue held by an
 * fd, by its name or unlinked, with its attributes (mq_maxmsg, mq_msgsize,
 * O_NONBLOCK), owner and mode, and its queued messages with their priorities
 * in order, and an unlinked queue held by two open file descriptions (one
 * queue, its messages once). Refused: a queue with an mq_notify registration. */
#include "probe.h" /* first: it defines _GNU_SOURCE */

#include <linux/kcmp.h>
#include <mqueue.h>
#include <sys/stat.h>
#include <sys/syscall.h>

static mqd_t g_q = (mqd_t)-1;
static char g_name[128];

struct msg {
    const char* text;
    unsigned prio;
};
/* Sent in this order; received highest priority first, FIFO within one. */
static const struct msg kSent[] = {{"one", 2}, {"two", 5}, {"three", 2}, {"", 0}, {"five", 9}};
static const struct msg kOrder[] = {{"five", 9}, {"two", 5}, {"one", 2}, {"three", 2}, {"", 0}};
#define NMSG (sizeof kSent / sizeof kSent[0])

/* "/crfs-probe-mq-PID-DIR": unique on the host (queues are not per pid namespace). */
static void set_name(void) {
    const char* base = strrchr(g_dir, '/');
    snprintf(g_name, sizeof g_name, "/crfs-probe-mq-%d-%.40s", (int)getpid(),
             base ? base + 1 : g_dir);
}

/* The queue with kSent in it, reopened with `flags` unless they are -1. */
static mqd_t make(int flags, long maxmsg, long msgsize) {
    set_name();
    struct mq_attr a;
    memset(&a, 0, sizeof a);
    a.mq_maxmsg = maxmsg;
    a.mq_msgsize = msgsize;
    mq_unlink(g_name);
    mqd_t q = mq_open(g_name, O_RDWR | O_CREAT | O_EXCL, 0640, &a);
    if (q == (mqd_t)-1) die("mq_open");
    for (size_t i = 0; i < NMSG; ++i)
        if (mq_send(q, kSent[i].text, strlen(kSent[i].text), kSent[i].prio) != 0) die("mq_send");
    if (flags != -1) {
        mqd_t o = mq_open(g_name, flags);
        if (o == (mqd_t)-1) die("mq_open again");
        mq_close(q);
        q = o;
    }
    return q;
}

static void check_link(mqd_t q, int deleted) {
    char path[64], link[192], want[192];
    snprintf(path, sizeof path, "/proc/self/fd/%d", (int)q);
    ssize_t n = readlink(path, link, sizeof link - 1);
    link[n < 0 ? 0 : n] = 0;
    snprintf(want, sizeof want, "%s%s", g_name, deleted ? " (deleted)" : "");
    if (strcmp(link, want) != 0) fail("fd names '%s', want '%s'", link, want);
    struct stat st;
    if (fstat(q, &st) != 0 || (st.st_mode & 07777) != 0640 || st.st_uid != geteuid() ||
        st.st_gid != getegid())
        fail("queue mode 0%o owner %d:%d", st.st_mode & 07777, (int)st.st_uid, (int)st.st_gid);
}

/* Receives every message through `r` (nonblocking), in order, then EAGAIN. */
static void check_messages(mqd_t r, long maxmsg, long msgsize) {
    struct mq_attr a;
    if (mq_getattr(r, &a) != 0 || a.mq_maxmsg != maxmsg || a.mq_msgsize != msgsize ||
        a.mq_curmsgs != (long)NMSG)
        fail("attributes %ld %ld %ld, want %ld %ld %zu", a.mq_maxmsg, a.mq_msgsize, a.mq_curmsgs,
             maxmsg, msgsize, NMSG);
    char buf[8192];
    for (size_t i = 0; i < NMSG; ++i) {
        unsigned prio = 99;
        struct timespec now = {0, 0};
        ssize_t n = mq_timedreceive(r, buf, sizeof buf, &prio, &now);
        if (n < 0) {
            fail("message %zu: %s", i, strerror(errno));
            return;
        }
        if ((size_t)n != strlen(kOrder[i].text) || memcmp(buf, kOrder[i].text, (size_t)n) != 0 ||
            prio != kOrder[i].prio)
            fail("message %zu: '%.*s' priority %u, want '%s' %u", i, (int)n, buf, prio,
                 kOrder[i].text, kOrder[i].prio);
    }
    struct timespec now = {0, 0};
    if (mq_timedreceive(r, buf, sizeof buf, NULL, &now) >= 0 || errno != ETIMEDOUT)
        fail("a message more than sent");
}

static void check_flags(mqd_t q, int want) {
    int fl = fcntl(q, F_GETFL) & (O_ACCMODE | O_NONBLOCK);
    if (fl != want) fail("open flags 0%o, want 0%o", fl, want);
}

/* mq_named: a named queue, read-write, with messages of several priorities. */
static void named_setup(void) {
    g_q = make(-1, 7, 64);
}
static void named_check(void) {
    check_link(g_q, 0);
    check_flags(g_q, O_RDWR);
    check_messages(g_q, 7, 64);
    mq_unlink(g_name);
}

/* mq_writer: the task holds it write-only and nonblocking; it reads it by name. */
static void writer_setup(void) {
    g_q = make(O_WRONLY | O_NONBLOCK, 5, 100);
}
static void writer_check(void) {
    check_link(g_q, 0);
    check_flags(g_q, O_WRONLY | O_NONBLOCK);
    mqd_t r = mq_open(g_name, O_RDONLY);
    if (r == (mqd_t)-1) {
        fail("mq_open by name: %s", strerror(errno));
    } else {
        check_messages(r, 5, 100);
        if (mq_send(g_q, "x", 1, 1) != 0) fail("mq_send on the restored fd: %s", strerror(errno));
    }
    mq_unlink(g_name);
}

/* mq_unlinked: the queue's name is gone; the fd keeps it (read-only). */
static void unlinked_setup(void) {
    g_q = make(O_RDONLY, 8, 32);
    mq_unlink(g_name);
}
static void unlinked_check(void) {
    check_link(g_q, 1);
    check_flags(g_q, O_RDONLY);
    check_messages(g_q, 8, 32);
    mqd_t again = mq_open(g_name, O_RDONLY);
    if (again != (mqd_t)-1) fail("the unlinked queue has its name again");
}

/* mq_empty_dup: an empty queue, dup'd (one description). */
static mqd_t g_dup = (mqd_t)-1;
static void empty_setup(void) {
    set_name();
    mq_unlink(g_name);
    g_q = mq_open(g_name, O_RDWR | O_CREAT | O_EXCL | O_NONBLOCK, 0640, NULL);
    if (g_q == (mqd_t)-1) die("mq_open");
    g_dup = dup(g_q);
}
static void empty_check(void) {
    check_link(g_q, 0);
    struct mq_attr a;
    if (mq_getattr(g_q, &a) != 0 || a.mq_curmsgs != 0) fail("the empty queue has messages");
    if (mq_send(g_dup, "d", 1, 0) != 0) fail("mq_send on the dup: %s", strerror(errno));
    if (mq_getattr(g_q, &a) != 0 || a.mq_curmsgs != 1) fail("the dup is another queue");
    mq_unlink(g_name);
}

/* mq_unlinked_two: an unlinked queue held by two descriptions (two mq_opens
 * before the unlink, each with its own flags) and a dup of the second: one
 * queue (one inode, its messages once), two descriptions (kcmp), a message
 * sent through one received through the other (state/mqueue_second.cc). */
static mqd_t g_two = (mqd_t)-1, g_two_dup = (mqd_t)-1;
static void unlinked_two_setup(void) {
    g_q = make(O_RDONLY, 8, 32);
    mqd_t two = mq_open(g_name, O_WRONLY | O_NONBLOCK);
    if (two == (mqd_t)-1) die("mq_open again");
    /* Above the first (fd 10, its dup 11): the image's first is g_q. */
    g_two = fcntl(two, F_DUPFD, 10);
    g_two_dup = fcntl(two, F_DUPFD, 11);
    if (g_two != 10 || g_two_dup != 11) die("dup");
    close(two);
    mq_unlink(g_name);
}
static long kcmp_file(int a, int b) {
    return syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, a, b);
}
static void unlinked_two_check(void) {
    check_link(g_q, 1);
    check_link(g_two, 1);
    check_flags(g_q, O_RDONLY);
    check_flags(g_two, O_WRONLY | O_NONBLOCK);
    check_flags(g_two_dup, O_WRONLY | O_NONBLOCK);
    struct stat a, b;
    if (fstat(g_q, &a) != 0 || fstat(g_two, &b) != 0 || a.st_ino != b.st_ino ||
        a.st_dev != b.st_dev)
        fail("the two descriptions are of two queues");
    long k = kcmp_file(g_q, g_two);
    if (k <= 0) fail("kcmp of the two descriptions: %ld (%s), want two", k, strerror(errno));
    if (kcmp_file(g_two, g_two_dup) != 0) fail("the dup is another description");
    check_messages(g_q, 8, 32); /* the messages once */
    char buf[64];
    unsigned prio = 0;
    if (mq_send(g_two_dup, "x", 1, 3) != 0) fail("mq_send: %s", strerror(errno));
    struct timespec now = {0, 0};
    ssize_t n = mq_timedreceive(g_q, buf, sizeof buf, &prio, &now);
    if (n != 1 || buf[0] != 'x' || prio != 3)
        fail("received %zd bytes priority %u through the first, want 'x' 3", n, prio);
    if (mq_open(g_name, O_RDONLY) != (mqd_t)-1) fail("the unlinked queue has its name again");
}

/* mq_notify: a registration crfs does not restore (a reason). */
static void notify_setup(void) {
    g_q = make(-1, 8, 16);
    mqd_t r = mq_open(g_name, O_RDONLY | O_NONBLOCK);
    char buf[16];
    while (mq_receive(r, buf, sizeof buf, NULL) >= 0) {
    }
    mq_close(r);
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGUSR1;
    signal(SIGUSR1, SIG_IGN);
    if (mq_notify(g_q, &ev) != 0) die("mq_notify");
}
static void notify_check(void) {
    mq_unlink(g_name);
}

static const struct variant kVariants[] = {
    {"mq_named", named_setup, named_check, NULL},
    {"mq_writer", writer_setup, writer_check, NULL},
    {"mq_unlinked", unlinked_setup, unlinked_check, NULL},
    {"mq_empty_dup", empty_setup, empty_check, NULL},
    {"mq_notify", notify_setup, notify_check, NULL},
    {"mq_unlinked_two", unlinked_two_setup, unlinked_two_check, NULL},
};
PROBE_MAIN(kVariants)
