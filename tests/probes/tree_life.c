/* Process groups and sessions of a tree (docs/trees.md, "Sessions and
 * groups"): a group led by a sibling and a group whose leader exited come
 * back with the same numbers; a group or session the restore cannot make
 * again (led from outside the tree, held by a process outside it, a session
 * left after the fork) is a reason. Children die with the probe
 * (PR_SET_PDEATHSIG) and are killed and reaped by its check. */
#include "probe.h"
#include "tree_spawn.h"

#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

enum { kKids = 3 };
static pid_t g_kids[kKids];
static pid_t g_pgid[kKids], g_sid[kKids]; /* as set up */
static int g_want[kKids];                 /* a zombie's wait status; 0: a live child */
static pid_t g_outside, g_gone;

/* Each child has its own standard fds and dies with the probe. */
static void child_first(void) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = open("/dev/null", O_RDWR);
    for (int i = 0; i < 3; ++i) dup2(fd, i);
    if (fd > 2) close(fd);
}
static pid_t spawn(void (*body)(void)) {
    return spawn_child(child_first, body);
}

static void remember(void) {
    for (int i = 0; i < kKids; ++i)
        if (g_kids[i] > 0) g_pgid[i] = getpgid(g_kids[i]), g_sid[i] = getsid(g_kids[i]);
}

static void nothing(void) {}
static void own_group(void) {
    if (setpgid(0, 0) != 0) die("setpgid");
}
static pid_t g_join;
static void join_group(void) {
    if (setpgid(0, g_join) != 0) die("setpgid join");
}

/* Kills and reaps the children; each must be ours, with its group and session. */
static void kids_check(void) {
    for (int i = 0; i < kKids; ++i) {
        if (g_kids[i] <= 0) continue;
        if (getpgid(g_kids[i]) != g_pgid[i])
            fail("child %d: process group %d, not %d", g_kids[i], getpgid(g_kids[i]), g_pgid[i]);
        if (getsid(g_kids[i]) != g_sid[i])
            fail("child %d: session %d, not %d", g_kids[i], getsid(g_kids[i]), g_sid[i]);
        if (g_want[i]) {
            char path[64], text[512] = "";
            snprintf(path, sizeof path, "/proc/%d/stat", (int)g_kids[i]);
            int fd = open(path, O_RDONLY);
            if (fd >= 0) (void)!read(fd, text, sizeof text - 1), close(fd);
            char* end = strrchr(text, ')');
            if (!end || end[2] != 'Z') fail("child %d is not a zombie: %s", g_kids[i], text);
        } else {
            kill(g_kids[i], SIGKILL);
        }
        int st = 0;
        if (waitpid(g_kids[i], &st, 0) != g_kids[i])
            fail("child %d is not ours", g_kids[i]);
        else if (g_want[i] && st != g_want[i])
            fail("zombie %d: wait status 0x%x, not 0x%x", g_kids[i], st, g_want[i]);
    }
    if (waitpid(-1, NULL, WNOHANG | __WALL) != -1 || errno != ECHILD)
        fail("a child that is none of the probe's");
    if (g_gone > 0 && (kill(g_gone, 0) == 0 || errno != ESRCH))
        fail("pid %d (the group's leader, gone) exists", g_gone);
    if (g_outside > 0) kill(g_outside, SIGKILL);
}

/* Child 0 leads a group, child 1 joins it: a group led by a sibling. */
static void sibling_setup(void) {
    g_kids[0] = spawn(own_group);
    g_join = g_kids[0];
    g_kids[1] = spawn(join_group);
    remember();
}

/* As above, then the leader exits and is reaped: child 1 is alone in a group
 * whose leader is gone (an orphaned process group); child 2 leads its own. */
static void orphan_setup(void) {
    sibling_setup();
    g_kids[2] = spawn(own_group);
    kill(g_kids[0], SIGKILL);
    if (waitpid(g_kids[0], NULL, 0) != g_kids[0]) die("waitpid");
    g_gone = g_kids[0];
    g_kids[0] = 0;
    remember();
}

/* A process that leaves the tree (its parent exits) and lives until the
 * probe (`root`) goes; `body` runs in it first. Returns its pid. */
static pid_t outside(void (*body)(void), pid_t root) {
    int p[2];
    if (pipe(p) != 0) die("pipe");
    pid_t mid = fork();
    if (mid < 0) die("fork");
    if (mid == 0) {
        pid_t away = fork();
        if (away == 0) {
            body();
            (void)!write(p[1], "x", 1);
            syscall(SYS_close_range, 3, ~0u, 0);
            int fd = open("/dev/null", O_RDWR); /* nothing of the tree's */
            for (int i = 0; i < 3; ++i) dup2(fd, i);
            if (fd > 2) close(fd);
            int pfd = (int)syscall(SYS_pidfd_open, root, 0);
            struct pollfd w = {.fd = pfd, .events = POLLIN};
            if (pfd >= 0) (void)poll(&w, 1, -1);
            _exit(0);
        }
        char x;
        (void)!read(p[0], &x, 1);
        (void)!write(p[1], &away, sizeof away);
        _exit(0);
    }
    pid_t away = 0;
    waitpid(mid, NULL, 0);
    if (read(p[0], &away, sizeof away) != sizeof away) die("read");
    close(p[0]);
    close(p[1]);
    return away;
}

/* A child joins a group led by a process outside the tree. */
static void outside_leader_setup(void) {
    g_outside = outside(own_group, getpid());
    g_join = g_outside;
    g_kids[0] = spawn(join_group);
    remember();
}

/* A group whose leader exited, with a member outside the tree. */
static pid_t g_member_out;
static void leader_of_outside(void) {
    if (setpgid(0, 0) != 0) die("setpgid");
    g_member_out = outside(nothing, getppid()); /* in our group; we exit below */
    g_join = getpid();
}
static void leaderless_outside_setup(void) {
    int p[2];
    if (pipe(p) != 0) die("pipe");
    pid_t l = fork();
    if (l == 0) {
        leader_of_outside();
        (void)!write(p[1], &g_member_out, sizeof g_member_out);
        _exit(0);
    }
    if (read(p[0], &g_outside, sizeof g_outside) != sizeof g_outside) die("read");
    waitpid(l, NULL, 0);
    close(p[0]);
    close(p[1]);
    g_join = l;
    g_kids[0] = spawn(join_group);
    remember();
}

/* Zombies: a child that exited with 3, one killed by SIGUSR1, neither reaped;
 * the parent's waitpid after the restore gets exactly their status. */
static void exit3(void) {
    _exit(3);
}
static void usr1(void) {
    signal(SIGUSR1, SIG_DFL);
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    sigprocmask(SIG_UNBLOCK, &s, NULL);
    raise(SIGUSR1);
}
static void zombie_of(int i, void (*body)(void), int want) {
    g_kids[i] = spawn(body);
    g_want[i] = want;
    siginfo_t si;
    if (waitid(P_PID, (id_t)g_kids[i], &si, WEXITED | WNOWAIT) != 0) die("waitid");
}
static void zombies_setup(void) {
    zombie_of(0, exit3, 3 << 8);
    zombie_of(1, usr1, SIGUSR1);
    remember();
}

/* A zombie leads a group a live sibling is in. */
static void zombie_leader_setup(void) {
    g_kids[0] = spawn(own_group);
    g_join = g_kids[0];
    g_kids[1] = spawn(join_group);
    kill(g_kids[0], SIGKILL);
    g_want[0] = SIGKILL;
    siginfo_t si;
    if (waitid(P_PID, (id_t)g_kids[0], &si, WEXITED | WNOWAIT) != 0) die("waitid");
    remember();
}

/* The root leaves its session after the fork: the child's session is
 * neither its own nor its parent's. */
static void session_left_setup(void) {
    g_kids[0] = spawn(nothing);
    if (setsid() < 0) die("setsid");
    remember();
}

static const struct variant kVariants[] = {
    {"sibling_group", sibling_setup, kids_check, NULL},
    {"orphan_group", orphan_setup, kids_check, NULL},
    {"outside_leader", outside_leader_setup, kids_check, NULL},
    {"leaderless_outside", leaderless_outside_setup, kids_check, NULL},
    {"session_left", session_left_setup, kids_check, NULL},
    {"zombies", zombies_setup, kids_check, NULL},
    {"zombie_leader", zombie_leader_setup, kids_check, NULL},
};

PROBE_MAIN(kVariants)
