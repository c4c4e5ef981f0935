/* sysv_ipc_mount_test.py's tree (sysvtree): a parent makes a System V message
 * queue and a semaphore set of `key` (left on the host) and forks a child;
 * the child sends three messages (types 1, 2, 3) and raises semaphore 1 by
 * 5, the parent takes message 1 and raises semaphore 0 by 2 (lspid: the
 * child, lrpid and one sempid: the parent).
 *   sysv_ipc_tree_prog DIR KEY
 * Writes DIR/ready ("MSQID SEMID PID CHILD"); waits for SIGTERM; then the
 * child takes message 2 and lowers semaphore 1 by 5 (IPC_NOWAIT: both must
 * be there) and writes DIR/result-1; the parent waits for it, takes message
 * 3 (the last), checks key, mode, creator and the values 2 0 and writes
 * DIR/result-0: "PASS" or "FAIL: what differs". */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/prctl.h>
#include <sys/sem.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sysv_prog.h"

struct msg {
    long type;
    char text[16];
};

static void verdict(const char* dir, const char* name, const char* why) {
    char out[600];
    snprintf(out, sizeof out, "%s%s\n", why[0] ? "FAIL: " : "PASS", why);
    put(dir, name, out);
}

/* Takes the next message (IPC_NOWAIT): it must be `type` with `text`. */
static int take(int id, long type, const char* text, char* why, size_t n) {
    struct msg m;
    ssize_t got = msgrcv(id, &m, sizeof m.text, 0, IPC_NOWAIT);
    if (got != (ssize_t)strlen(text) + 1 || m.type != type || strcmp(m.text, text) != 0) {
        snprintf(why, n, "queue %d: message type %ld (%zd bytes), not %ld", id,
                 got < 0 ? 0 : m.type, got, type);
        return -1;
    }
    return 0;
}

static void child(const char* dir, int qid, int sid) {
    static const char* texts[] = {"one", "two", "three"};
    for (int i = 0; i < 3; ++i) {
        struct msg m = {i + 1, ""};
        strcpy(m.text, texts[i]);
        if (msgsnd(qid, &m, strlen(texts[i]) + 1, IPC_NOWAIT) != 0) _exit(1);
    }
    struct sembuf up = {1, 5, 0};
    if (semop(sid, &up, 1) != 0) _exit(1);
    while (!g_term) usleep(1000); /* not pause(): a restored pause() runs again after the handler */
    char why[256] = "";
    struct sembuf down = {1, -5, IPC_NOWAIT};
    if (take(qid, 2, "two", why, sizeof why) == 0 && semop(sid, &down, 1) != 0)
        snprintf(why, sizeof why, "set %d: semaphore 1 is not 5", sid);
    verdict(dir, "result-1", why);
    _exit(0);
}

int main(int argc, char** argv) {
    if (argc != 3) return 2;
    key_t key = (key_t)strtol(argv[2], NULL, 0);
    signal(SIGTERM, on_term);
    int qid = msgget(key, IPC_CREAT | IPC_EXCL | 0640);
    int sid = semget(key, 2, IPC_CREAT | IPC_EXCL | 0640);
    if (qid < 0 || sid < 0) {
        perror("msgget/semget");
        return 1;
    }
    pid_t kid = fork();
    if (kid < 0) return 1;
    if (kid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        child(argv[1], qid, sid);
    }
    struct msg m;
    if (msgrcv(qid, &m, sizeof m.text, 1, 0) < 0) return 1; /* waits for the child's */
    while (semctl(sid, 1, GETVAL) != 5) usleep(1000);
    struct sembuf up = {0, 2, 0};
    if (semop(sid, &up, 1) != 0) return 1;
    char text[96];
    snprintf(text, sizeof text, "%d %d %d %d\n", qid, sid, getpid(), kid);
    put(argv[1], "ready", text);
    while (!g_term) usleep(1000); /* not pause(): a restored pause() runs again after the handler */
    waitpid(kid, NULL, 0);        /* the child took its message first */
    char why[256] = "";
    struct msqid_ds qs;
    struct semid_ds ss;
    if (take(qid, 3, "three", why, sizeof why) != 0) {
    } else if (msgrcv(qid, &m, sizeof m.text, 0, IPC_NOWAIT) >= 0) {
        snprintf(why, sizeof why, "a message too many");
    } else if (msgctl(qid, IPC_STAT, &qs) != 0 || qs.msg_perm.__key != key ||
               (qs.msg_perm.mode & 0777) != 0640 || qs.msg_perm.cuid != getuid()) {
        snprintf(why, sizeof why, "queue %d: key, mode or creator differ", qid);
    } else if (semctl(sid, 0, IPC_STAT, &ss) != 0 || ss.sem_perm.__key != key ||
               (ss.sem_perm.mode & 0777) != 0640 || ss.sem_nsems != 2) {
        snprintf(why, sizeof why, "set %d: key, mode or nsems differ", sid);
    } else if (semctl(sid, 0, GETVAL) != 2 || semctl(sid, 1, GETVAL) != 0) {
        snprintf(why, sizeof why, "set %d: values %d %d, not 2 0", sid, semctl(sid, 0, GETVAL),
                 semctl(sid, 1, GETVAL));
    }
    verdict(argv[1], "result-0", why);
    return 0;
}
