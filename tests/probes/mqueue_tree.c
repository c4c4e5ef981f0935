/* POSIX message queues shared between the processes of a tree (issue 11,
 * state/mqueue.cc, docs/trees.md "POSIX message queues between members"):
 * one description that a child inherited from mq_open before its fork, the
 * queue named or unlinked, is made once and held by both again; an unlinked
 * queue opened separately by two members comes back as two descriptions of
 * one queue (mqtree); one held by a process outside the tree is a reason.
 * The child verifies on SIGUSR1 (tree_kids.h). */
#include "outsider.h"
#include "probe.h"
#include "tree_kids.h"

#include <linux/kcmp.h>
#include <mqueue.h>
#include <sys/stat.h>
#include <sys/syscall.h>

static mqd_t g_q = (mqd_t)-1;
static char g_name[128];
static int g_unlinked;

/* Sent by the parent before the fork; "last", priority 20, after the restore. */
static const char* const kQueued[] = {"alpha", "beta", "gamma"};
static const unsigned kPrio[] = {1, 7, 1};
#define NQUEUED 3

/* "/crfs-probe-mqt-PID-DIR": unique on the host (queues are not per pid namespace). */
static void make_queue(void) {
    const char* base = strrchr(g_dir, '/');
    snprintf(g_name, sizeof g_name, "/crfs-probe-mqt-%d-%.40s", (int)getpid(),
             base ? base + 1 : g_dir);
    struct mq_attr a;
    memset(&a, 0, sizeof a);
    a.mq_maxmsg = 6;
    a.mq_msgsize = 24;
    mq_unlink(g_name);
    g_q = mq_open(g_name, O_RDWR | O_CREAT | O_EXCL | O_NONBLOCK, 0600, &a);
    if (g_q == (mqd_t)-1) die("mq_open");
    for (int i = 0; i < NQUEUED; ++i)
        if (mq_send(g_q, kQueued[i], strlen(kQueued[i]), kPrio[i]) != 0) die("mq_send");
}

/* The child: "last" (the parent's, sent after the restore) first, then beta,
 * alpha, gamma, then nothing; its fd names the queue as it was. */
static int child_verify(void) {
    char link[192], want[192], path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", (int)g_q);
    ssize_t n = readlink(path, link, sizeof link - 1);
    link[n < 0 ? 0 : n] = 0;
    snprintf(want, sizeof want, "%s%s", g_name, g_unlinked ? " (deleted)" : "");
    if (strcmp(link, want) != 0) return 2;
    static const char* const order[] = {"last", "beta", "alpha", "gamma"};
    static const unsigned prio[] = {20, 7, 1, 1};
    char buf[64];
    for (int i = 0; i < 4; ++i) {
        unsigned p = 0;
        n = mq_receive(g_q, buf, sizeof buf, &p);
        if (n != (ssize_t)strlen(order[i]) || memcmp(buf, order[i], (size_t)n) != 0 || p != prio[i])
            return 3 + i;
    }
    return mq_receive(g_q, buf, sizeof buf, NULL) < 0 && errno == EAGAIN ? 0 : 8;
}

static void inherited_setup(void) {
    make_queue();
    g_kids[0] = spawn(NULL, child_verify);
}
static void inherited_unlinked_setup(void) {
    g_unlinked = 1; /* the child's too: it checks its link after the unlink */
    inherited_setup();
    if (mq_unlink(g_name) != 0) die("mq_unlink");
}
/* Both hold one description: what the parent sends, the child receives. */
static void inherited_check(void) {
    long same = syscall(SYS_kcmp, getpid(), g_kids[0], KCMP_FILE, g_q, g_q);
    if (same != 0) fail("kcmp of the queue's fds: %ld", same);
    mqd_t again = mq_open(g_name, O_RDONLY);
    if (g_unlinked && again != (mqd_t)-1) fail("the unlinked queue has its name again");
    if (!g_unlinked && again == (mqd_t)-1) fail("mq_open by name: %s", strerror(errno));
    if (mq_send(g_q, "last", 4, 20) != 0) fail("mq_send: %s", strerror(errno));
    kids_check();
    if (!g_unlinked) mq_unlink(g_name);
}

/* An unlinked queue the child opened itself (read-only) before the unlink:
 * two descriptions in two members (mqtree: the parent opens it again through
 * /proc/self/fd with the child's flags and hands that over). */
static void reopen_body(void) {
    mq_close(g_q);
    g_q = mq_open(g_name, O_RDONLY | O_NONBLOCK); /* the lowest free fd: the parent's number */
    if (g_q == (mqd_t)-1) _exit(3);
}
static int two_verify(void) {
    if ((fcntl(g_q, F_GETFL) & (O_ACCMODE | O_NONBLOCK)) != (O_RDONLY | O_NONBLOCK)) return 9;
    return child_verify();
}
static void two_setup(void) {
    g_unlinked = 1;
    make_queue();
    g_kids[0] = spawn(reopen_body, two_verify);
    if (mq_unlink(g_name) != 0) die("mq_unlink");
}
/* Two descriptions (kcmp), one queue: what the parent sends, the child receives. */
static void two_check(void) {
    char path[64];
    struct stat mine, theirs;
    snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)g_kids[0], (int)g_q);
    if (fstat(g_q, &mine) != 0 || stat(path, &theirs) != 0 || mine.st_ino != theirs.st_ino)
        fail("the child's fd %d is not the parent's queue", (int)g_q);
    long same = syscall(SYS_kcmp, getpid(), g_kids[0], KCMP_FILE, g_q, g_q);
    if (same <= 0) fail("kcmp of the queue's fds: %ld (one description, or unknown)", same);
    if (mq_send(g_q, "last", 4, 20) != 0) fail("mq_send: %s", strerror(errno));
    kids_check();
}

/* An unlinked queue a process outside the tree holds too (a reason). */
static pid_t g_outside;
static void outside_setup(void) {
    make_queue();
    g_outside = spawn_outsider();
    if (mq_unlink(g_name) != 0) die("mq_unlink");
}
static void outside_check(void) {
    kill(g_outside, SIGKILL);
}

static const struct variant kVariants[] = {
    {"inherited", inherited_setup, inherited_check, NULL},
    {"inherited_unlinked", inherited_unlinked_setup, inherited_check, NULL},
    {"unlinked_two_members", two_setup, two_check, NULL},
    {"unlinked_outside", outside_setup, outside_check, NULL},
};

PROBE_MAIN(kVariants)
