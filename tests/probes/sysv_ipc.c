/* sem (issue 11): System V message queues and semaphore sets the task used.
 * Both outlive their task, so the exact cases (key, id, qbytes, messages in
 * order; nsems, values) are tests/fs/sysv_ipc_mount_test.py's, which removes
 * the originals between the kill and the restore; as are the queue the caller
 * cannot read and the hostile images. The refused variants here: a tree
 * image with a queue, with a set. */
#include "probe.h"

#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/prctl.h>
#include <sys/sem.h>
#include <sys/wait.h>

static int g_id = -1;
static pid_t g_child;

static void child(void) {
    g_child = fork();
    if (g_child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (;;) pause();
    }
}

/* Refused: a child (which does not use the queue): a tree image. */
static void msg_setup(void) {
    child();
    g_id = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
    if (g_id < 0) die("msgget");
    struct {
        long type;
        char text[8];
    } m = {3, "queued"};
    if (msgsnd(g_id, &m, sizeof m.text, 0) != 0) die("msgsnd");
}
static void msg_check(void) {
    struct msqid_ds ds;
    if (msgctl(g_id, IPC_STAT, &ds) != 0 || ds.msg_qnum != 1) fail("queue differs");
    msgctl(g_id, IPC_RMID, NULL);
    kill(g_child, SIGKILL);
    waitpid(g_child, NULL, 0);
}

/* Refused: a set, and a child: a tree image. */
static void sem_setup(void) {
    child();
    g_id = semget(IPC_PRIVATE, 2, IPC_CREAT | 0600);
    if (g_id < 0) die("semget");
    struct sembuf op = {1, 3, 0};
    if (semop(g_id, &op, 1) != 0) die("semop");
}
static void sem_check(void) {
    if (semctl(g_id, 1, GETVAL) != 3) fail("semaphore value differs");
    semctl(g_id, 0, IPC_RMID);
    kill(g_child, SIGKILL);
    waitpid(g_child, NULL, 0);
}

static const struct variant kVariants[] = {
    {"msg_tree", msg_setup, msg_check, NULL},
    {"sem_tree", sem_setup, sem_check, NULL},
};
PROBE_MAIN(kVariants)
