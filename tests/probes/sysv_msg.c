/* sem (issue 11): System V message queues the task used. A queue outlives
 * its task, so the exact cases (key, id, qbytes, messages in order) are
 * tests/fs/sysv_msg_mount_test.py's, which removes the original between the
 * kill and the restore; as are the queue the caller cannot read and the
 * hostile images. The refused variant here: a tree image. */
#include "probe.h"

#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/prctl.h>
#include <sys/wait.h>

static int g_id = -1;
static pid_t g_child;

/* Refused: a child (which does not use the queue): a tree image. */
static void tree_setup(void) {
    g_child = fork();
    if (g_child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (;;) pause();
    }
    g_id = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
    if (g_id < 0) die("msgget");
    struct {
        long type;
        char text[8];
    } m = {3, "queued"};
    if (msgsnd(g_id, &m, sizeof m.text, 0) != 0) die("msgsnd");
}
static void tree_check(void) {
    struct msqid_ds ds;
    if (msgctl(g_id, IPC_STAT, &ds) != 0 || ds.msg_qnum != 1) fail("queue differs");
    msgctl(g_id, IPC_RMID, NULL);
    kill(g_child, SIGKILL);
    waitpid(g_child, NULL, 0);
}

static const struct variant kVariants[] = {
    {"msg_tree", tree_setup, tree_check, NULL},
};
PROBE_MAIN(kVariants)
