/* Process trees (docs/trees.md): what members share that is not restored yet,
 * and descendants holding something unsupported, are reasons of the root
 * naming the descendant (and the other member). Each variant forks children
 * that live until the probe's check, which kills and reaps them. */
#include "outsider.h"
#include "probe.h"
#include "tree_spawn.h"

#include <mqueue.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static pid_t g_kids[2];

static pid_t spawn(void (*body)(void)) {
    return spawn_child(NULL, body);
}

/* Each child gets fresh standard fds, so the parent's (inherited from the
 * harness) are not shared with it. */
static void own_stdio(void) {
    int fd = open("/dev/null", O_RDWR);
    if (fd < 0) die("open /dev/null");
    for (int i = 0; i < 3; ++i)
        if (dup2(fd, i) < 0) die("dup2");
    if (fd > 2) close(fd);
}

static void kids_gone(void) {
    for (int i = 0; i < 2; ++i) {
        if (g_kids[i] <= 0) continue;
        kill(g_kids[i], SIGKILL);
        if (waitpid(g_kids[i], NULL, 0) != g_kids[i]) fail("child %d is not ours", g_kids[i]);
    }
}

/* The parent's log file, inherited by the child: one description, two members. */
static void shared_file_setup(void) {
    int fd = open(at("log"), O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd != 3) die("open log");
    g_kids[0] = spawn(own_stdio);
}

/* A pipe whose read end is in the child, write end in the parent. */
static void pipe_setup(void) {
    int p[2];
    if (pipe(p) != 0 || p[0] != 3) die("pipe");
    g_kids[0] = spawn(own_stdio);
    close(p[0]);
}

/* A grandchild holding a POSIX message queue with an mq_notify registration
 * (a reason): the root's reason names the grandchild. */
static void mq_body(void) {
    own_stdio();
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* goes with its parent (killed by the check) */
    char name[64];
    snprintf(name, sizeof name, "/crfs-treeprobe-%d", (int)getpid());
    struct mq_attr attr = {.mq_maxmsg = 1, .mq_msgsize = 8};
    if (mq_open(name, O_RDWR | O_CREAT | O_EXCL, 0600, &attr) != 3) die("mq_open");
    mq_unlink(name);
    struct sigevent ev = {.sigev_notify = SIGEV_NONE};
    if (mq_notify(3, &ev) != 0) die("mq_notify");
}
static void grandchild_body(void) {
    own_stdio();
    g_kids[1] = spawn(mq_body);
}
static void grandchild_setup(void) {
    g_kids[0] = spawn(grandchild_body);
}

static void own_stdio_no_log(void) {
    own_stdio();
    close(3); /* the log stays the parent's alone in the tree */
}

/* The log's description is also held by a process that left the tree (its
 * parent exited: it is reparented away), and the tree has a child. */
static pid_t g_outside;
static void outside_setup(void) {
    int fd = open(at("log"), O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd != 3) die("open log");
    g_outside = spawn_outsider();
    g_kids[0] = spawn(own_stdio_no_log);
}
static void outside_check(void) {
    kill(g_outside, SIGKILL);
    kids_gone();
}

static const struct variant kVariants[] = {
    {"shared_file", shared_file_setup, kids_gone, NULL},
    {"pipe", pipe_setup, kids_gone, NULL},
    {"grandchild", grandchild_setup, kids_gone, NULL},
    {"outside", outside_setup, outside_check, NULL},
};

PROBE_MAIN(kVariants)
