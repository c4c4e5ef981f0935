/* sysv_mount_test.py's tree (sysvtree): a parent makes a System V segment of
 * `key` (left on the host), attaches it and forks two children that inherit
 * the attach; the three coordinate through it, postgres-style.
 *   sysv_tree_prog DIR KEY
 * Writes DIR/ready ("ID PID0 PID1 PID2") once all three run; each counts in
 * its own slot of the segment until SIGTERM. Then each checks the segment
 * (its own count, the parent's content, key, size, mode) and meets the
 * others in it: each marks its arrival, waits (bounded) for the others'
 * marks (their writes after the restore, seen through one segment), checks
 * nattch 3 and its id, and writes DIR/result-<i>: "PASS" or "FAIL: what". */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sysv_prog.h"

#define SIZE (6 * 4096 + 77)
#define MEMBERS 3
#define WAIT_MS 60000

struct shared {
    char header[32];
    _Atomic unsigned long count[MEMBERS];
    _Atomic int arrived; /* after SIGTERM: members that checked their own part */
    _Atomic int checked; /* members past the nattch check */
    _Atomic int pid[MEMBERS];
};

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Waits (bounded) for *n to reach `want`. */
static int wait_for(_Atomic int* n, int want) {
    long until = now_ms() + WAIT_MS;
    while (atomic_load(n) < want)
        if (now_ms() > until)
            return -1;
        else
            usleep(1000);
    return 0;
}

static void member(const char* dir, int i, int id, key_t key, volatile char* p) {
    struct shared* s = (struct shared*)p;
    unsigned long mine = 0;
    while (!g_term) {
        atomic_fetch_add(&s->count[i], 1);
        ++mine;
        if (atomic_load(&s->count[i]) != mine) break; /* nothing else writes it */
        usleep(1000);
    }
    char why[512] = "";
    struct shmid_ds ds;
    if (atomic_load(&s->count[i]) != mine)
        snprintf(why, sizeof why, "count %lu, not %lu", atomic_load(&s->count[i]), mine);
    else if (strcmp(s->header, "sysv tree") != 0 || p[SIZE - 1] != 'z')
        snprintf(why, sizeof why, "content differs");
    atomic_fetch_add(&s->arrived, 1);
    if (!why[0] && wait_for(&s->arrived, MEMBERS) != 0)
        snprintf(why, sizeof why, "%d of %d members arrived in the segment: not one segment?",
                 atomic_load(&s->arrived), MEMBERS);
    for (int k = 0; !why[0] && k < MEMBERS; ++k)
        if (atomic_load(&s->count[k]) == 0 || atomic_load(&s->pid[k]) == 0)
            snprintf(why, sizeof why, "member %d's writes are not seen", k);
    if (!why[0] && shmctl(id, IPC_STAT, &ds) != 0)
        snprintf(why, sizeof why, "segment %d: IPC_STAT failed", id);
    else if (!why[0] && (ds.shm_perm.__key != key || ds.shm_segsz != SIZE ||
                         (ds.shm_perm.mode & 0777) != 0640 || ds.shm_perm.cuid != getuid() ||
                         ds.shm_nattch != MEMBERS))
        snprintf(why, sizeof why, "key %#x size %zu mode %o cuid %u nattch %lu", ds.shm_perm.__key,
                 (size_t)ds.shm_segsz, ds.shm_perm.mode, ds.shm_perm.cuid,
                 (unsigned long)ds.shm_nattch);
    atomic_fetch_add(&s->checked, 1);
    wait_for(&s->checked, MEMBERS); /* nobody detaches before everyone counted nattch */
    char out[600], name[32];
    snprintf(out, sizeof out, "%s%s\n", why[0] ? "FAIL: " : "PASS", why);
    snprintf(name, sizeof name, "result-%d", i);
    put(dir, name, out);
}

int main(int argc, char** argv) {
    if (argc != 3) return 2;
    key_t key = (key_t)strtol(argv[2], NULL, 0);
    signal(SIGTERM, on_term);
    int id;
    volatile char* p = new_segment(key, SIZE, "sysv tree", &id);
    struct shared* s = (struct shared*)p;
    atomic_store(&s->pid[0], getpid());
    pid_t kids[MEMBERS - 1];
    for (int i = 1; i < MEMBERS; ++i) {
        kids[i - 1] = fork();
        if (kids[i - 1] < 0) return 1;
        if (kids[i - 1] == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            atomic_store(&s->pid[i], getpid());
            member(argv[1], i, id, key, p);
            return 0;
        }
    }
    for (int i = 1; i < MEMBERS; ++i)
        while (atomic_load(&s->pid[i]) == 0) usleep(1000);
    char text[96];
    snprintf(text, sizeof text, "%d %d %d %d\n", id, getpid(), kids[0], kids[1]);
    put(argv[1], "ready", text);
    member(argv[1], 0, id, key, p);
    for (int i = 0; i < MEMBERS - 1; ++i) waitpid(kids[i], NULL, 0);
    return 0;
}
