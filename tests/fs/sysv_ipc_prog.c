/* sysv_ipc_mount_test.py's program: a System V message queue and semaphore
 * set of `key` (left on the host, not removed): messages it sent and one it
 * took, values it set and changed.
 *   sysv_ipc_prog DIR KEY [QUEUE_ID]
 * Without QUEUE_ID: makes the queue (mode 0640, qbytes 8000), sends five
 * messages (types 1, 5, 2, 7, 3; one empty), receives the first again (so the
 * task is lspid and lrpid); makes the set (3 semaphores, mode 0640), SETALL
 * 4 0 9, semop +7 on the second; writes DIR/ready with "MSQID SEMID". With
 * QUEUE_ID: only sends one message of type 9 to that queue (someone else's)
 * and writes DIR/ready with its id. Waits for SIGTERM; then checks the queue
 * (key, mode, creator, qbytes, the messages in order, taken without loss) and
 * the set (key, mode, creator, nsems, values 4 7 9, a semop that works) and
 * writes DIR/result: "PASS" or "FAIL: what differs". */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <unistd.h>

#include "sysv_prog.h"

struct msg {
    long type;
    char text[256];
};

static const struct {
    long type;
    const char* text;
} kMsgs[] = {{1, "taken"}, {5, "first kept"}, {2, ""}, {7, "third\0with a NUL"}, {3, "last"}};
static const size_t kLens[] = {5, 10, 0, 16, 4};

int main(int argc, char** argv) {
    if (argc != 3 && argc != 4) return 2;
    key_t key = (key_t)strtol(argv[2], NULL, 0);
    signal(SIGTERM, on_term);
    char text[64], why[512] = "";
    struct msg m;
    if (argc == 4) { /* someone else's queue: only sends to it */
        int id = atoi(argv[3]);
        m.type = 9;
        if (msgsnd(id, &m, 0, IPC_NOWAIT) != 0) {
            perror("msgsnd");
            return 1;
        }
        snprintf(text, sizeof text, "%d\n", id);
        put(argv[1], "ready", text);
        while (!g_term) pause();
        put(argv[1], "result", "PASS\n");
        return 0;
    }
    int id = msgget(key, IPC_CREAT | IPC_EXCL | 0640);
    if (id < 0) {
        perror("msgget");
        return 1;
    }
    struct msqid_ds ds;
    if (msgctl(id, IPC_STAT, &ds) != 0) return 1;
    ds.msg_qbytes = 8000;
    if (msgctl(id, IPC_SET, &ds) != 0) return 1;
    for (size_t i = 0; i < sizeof kMsgs / sizeof kMsgs[0]; ++i) {
        m.type = kMsgs[i].type;
        memcpy(m.text, kMsgs[i].text, kLens[i]);
        if (msgsnd(id, &m, kLens[i], IPC_NOWAIT) != 0) return 1;
    }
    if (msgrcv(id, &m, sizeof m.text, 1, IPC_NOWAIT) != 5) return 1;
    int sid = semget(key, 3, IPC_CREAT | IPC_EXCL | 0640);
    if (sid < 0) {
        perror("semget");
        return 1;
    }
    unsigned short vals[3] = {4, 0, 9};
    if (semctl(sid, 0, SETALL, vals) != 0) return 1;
    struct sembuf op = {1, 7, 0};
    if (semop(sid, &op, 1) != 0) return 1;
    snprintf(text, sizeof text, "%d %d\n", id, sid);
    put(argv[1], "ready", text);
    while (!g_term) pause();
    if (msgctl(id, IPC_STAT, &ds) != 0)
        snprintf(why, sizeof why, "queue %d: IPC_STAT failed", id);
    else if (ds.msg_perm.__key != key || (ds.msg_perm.mode & 0777) != 0640 ||
             ds.msg_perm.cuid != getuid() || ds.msg_perm.uid != getuid() || ds.msg_qbytes != 8000 ||
             ds.msg_qnum != 4)
        snprintf(why, sizeof why, "key %#x mode %o cuid %u uid %u qbytes %lu qnum %lu",
                 ds.msg_perm.__key, ds.msg_perm.mode, ds.msg_perm.cuid, ds.msg_perm.uid,
                 (unsigned long)ds.msg_qbytes, (unsigned long)ds.msg_qnum);
    for (size_t i = 1; !why[0] && i < sizeof kMsgs / sizeof kMsgs[0]; ++i) {
        ssize_t n = msgrcv(id, &m, sizeof m.text, 0, IPC_NOWAIT);
        if (n != (ssize_t)kLens[i] || m.type != kMsgs[i].type ||
            memcmp(m.text, kMsgs[i].text, kLens[i]) != 0)
            snprintf(why, sizeof why, "message %zu: type %ld, %zd bytes", i, m.type, n);
    }
    if (!why[0] && msgrcv(id, &m, sizeof m.text, 0, IPC_NOWAIT) >= 0)
        snprintf(why, sizeof why, "a message too many");
    struct semid_ds sds;
    unsigned short got[3] = {0, 0, 0};
    struct sembuf take = {0, -4, IPC_NOWAIT};
    if (why[0]) {
    } else if (semctl(sid, 0, IPC_STAT, &sds) != 0) {
        snprintf(why, sizeof why, "set %d: IPC_STAT failed", sid);
    } else if (sds.sem_perm.__key != key || (sds.sem_perm.mode & 0777) != 0640 ||
               sds.sem_perm.cuid != getuid() || sds.sem_perm.uid != getuid() ||
               sds.sem_nsems != 3) {
        snprintf(why, sizeof why, "set: key %#x mode %o cuid %u uid %u nsems %lu",
                 sds.sem_perm.__key, sds.sem_perm.mode, sds.sem_perm.cuid, sds.sem_perm.uid,
                 (unsigned long)sds.sem_nsems);
    } else if (semctl(sid, 0, GETALL, got) != 0 || got[0] != 4 || got[1] != 7 || got[2] != 9) {
        snprintf(why, sizeof why, "values %u %u %u", got[0], got[1], got[2]);
    } else if (semop(sid, &take, 1) != 0 || semctl(sid, 0, GETVAL) != 0) {
        snprintf(why, sizeof why, "semop -4 on 4 failed");
    }
    char out[600];
    snprintf(out, sizeof out, "%s%s\n", why[0] ? "FAIL: " : "PASS", why);
    put(argv[1], "result", out);
    return 0;
}
