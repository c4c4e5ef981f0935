/* sem (issue 11): System V message queues and semaphore sets the task used.
 * Both outlive their task, so the single-process exact cases (key, id,
 * qbytes, messages in order; nsems, values) are
 * tests/fs/sysv_ipc_mount_test.py's, which removes the originals between the
 * kill and the restore; as are the queue the caller cannot read and the
 * hostile images. sysvtree: a queue, a set used by a parent and its child
 * (exact): DIR/ipcrm names the object for the contract runner, which removes
 * it after the kill as a user would (`ipcrm`). */
#include "probe.h"

#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/prctl.h>
#include <sys/sem.h>
#include <sys/wait.h>
#include <time.h>

static int g_id = -1;
static pid_t g_child;

struct msg {
    long type;
    char text[8];
};

/* Forks the child, which runs `work` and waits to be killed. */
static void child(void (*work)(void)) {
    g_child = fork();
    if (g_child < 0) die("fork");
    if (g_child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        work();
        for (;;) pause();
    }
}

/* Waits (bounded: 60 s) for `done`. */
static void wait_state(int (*done)(void), const char* what) {
    for (int i = 0; i < 60000 && !done(); ++i) usleep(1000);
    if (!done()) die(what);
}

static void name_for_ipcrm(const char* opt) {
    char text[64];
    snprintf(text, sizeof text, "%s %d\n", opt, g_id);
    write_file(at("ipcrm"), text);
}

/* A queue the parent sent two messages on, the child received the first of
 * (lspid: the parent, lrpid: the child). */
static void msg_child(void) {
    struct msg m;
    if (msgrcv(g_id, &m, sizeof m.text, 0, 0) < 0) _exit(1);
}
static int msg_one_left(void) {
    struct msqid_ds ds;
    return msgctl(g_id, IPC_STAT, &ds) == 0 && ds.msg_qnum == 1 && ds.msg_lrpid == g_child;
}
static void msg_setup(void) {
    g_id = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
    if (g_id < 0) die("msgget");
    name_for_ipcrm("-q");
    struct msg a = {3, "first"}, b = {4, "second"};
    if (msgsnd(g_id, &a, sizeof a.text, 0) != 0 || msgsnd(g_id, &b, sizeof b.text, 0) != 0)
        die("msgsnd");
    child(msg_child);
    wait_state(msg_one_left, "the child's msgrcv");
}
static void msg_check(void) {
    struct msqid_ds ds;
    struct msg m;
    if (msgctl(g_id, IPC_STAT, &ds) != 0 || ds.msg_qnum != 1)
        fail("queue %d differs", g_id);
    else if (msgrcv(g_id, &m, sizeof m.text, 0, IPC_NOWAIT) < 0 || m.type != 4 ||
             strcmp(m.text, "second") != 0)
        fail("queue %d: not the second message", g_id);
    msgctl(g_id, IPC_RMID, NULL);
    kill(g_child, SIGKILL);
    waitpid(g_child, NULL, 0);
}

/* A set of two: the parent raised semaphore 0, the child semaphore 1. */
static void sem_child(void) {
    struct sembuf op = {1, 3, 0};
    if (semop(g_id, &op, 1) != 0) _exit(1);
}
static int sem_raised(void) {
    return semctl(g_id, 1, GETVAL) == 3;
}
static void sem_setup(void) {
    g_id = semget(IPC_PRIVATE, 2, IPC_CREAT | 0600);
    if (g_id < 0) die("semget");
    name_for_ipcrm("-s");
    struct sembuf op = {0, 1, 0};
    if (semop(g_id, &op, 1) != 0) die("semop");
    child(sem_child);
    wait_state(sem_raised, "the child's semop");
}
static void sem_check(void) {
    if (semctl(g_id, 0, GETVAL) != 1 || semctl(g_id, 1, GETVAL) != 3)
        fail("set %d: values %d %d, not 1 3", g_id, semctl(g_id, 0, GETVAL),
             semctl(g_id, 1, GETVAL));
    semctl(g_id, 0, IPC_RMID);
    kill(g_child, SIGKILL);
    waitpid(g_child, NULL, 0);
}

static const struct variant kVariants[] = {
    {"msg_tree", msg_setup, msg_check, NULL},
    {"sem_tree", sem_setup, sem_check, NULL},
};
PROBE_MAIN(kVariants)
