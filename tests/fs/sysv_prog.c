/* sysv_mount_test.py's program: a System V shared memory segment of `key`
 * (left on the host, not removed) that it writes to and checks.
 *   sysv_prog DIR KEY
 * Writes DIR/ready with the segment's id, then counts in the segment until
 * SIGTERM; then checks the segment (content, id, key, size, mode, creator, one
 * attach) and writes DIR/result: "PASS" or "FAIL: what differs". */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <unistd.h>

#include "sysv_prog.h"

#define SIZE (5 * 4096 + 123)

int main(int argc, char** argv) {
    if (argc != 3) return 2;
    key_t key = (key_t)strtol(argv[2], NULL, 0);
    signal(SIGTERM, on_term);
    int id;
    volatile char* p = new_segment(key, SIZE, "sysv segment", &id);
    volatile unsigned long* count = (volatile unsigned long*)(p + 3 * 4096);
    char text[64];
    snprintf(text, sizeof text, "%d\n", id);
    put(argv[1], "ready", text);
    unsigned long mine = 0;
    while (!g_term) {
        ++*count;
        ++mine;
        if (*count != mine) break; /* nothing else writes it */
        usleep(1000);
    }
    char why[512] = "";
    struct shmid_ds ds;
    if (*count != mine)
        snprintf(why, sizeof why, "count %lu, not %lu", *count, mine);
    else if (strcmp((const char*)p, "sysv segment") != 0 || p[SIZE - 1] != 'z')
        snprintf(why, sizeof why, "content differs");
    else if (shmctl(id, IPC_STAT, &ds) != 0)
        snprintf(why, sizeof why, "segment %d: IPC_STAT failed", id);
    else if (ds.shm_perm.__key != key || ds.shm_segsz != SIZE ||
             (ds.shm_perm.mode & 0777) != 0640 || ds.shm_perm.cuid != getuid() ||
             ds.shm_nattch != 1)
        snprintf(why, sizeof why, "key %#x size %zu mode %o cuid %u nattch %lu", ds.shm_perm.__key,
                 (size_t)ds.shm_segsz, ds.shm_perm.mode, ds.shm_perm.cuid,
                 (unsigned long)ds.shm_nattch);
    char out[600];
    snprintf(out, sizeof out, "%s%s\n", why[0] ? "FAIL: " : "PASS", why);
    put(argv[1], "result", out);
    return 0;
}
