/* What the System V test programs share (sysv_prog.c, sysv_ipc_prog.c and
 * their tree twins): SIGTERM ends their wait, their files (ready, result)
 * appear whole (written aside, then renamed), a segment is made alike. */
#ifndef CRFS_TESTS_FS_SYSV_PROG_H
#define CRFS_TESTS_FS_SYSV_PROG_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>

#include "../support/put_file.h"

static volatile sig_atomic_t g_term;
static void on_term(int sig) {
    (void)sig;
    g_term = 1;
}

/* DIR/name holds `text`. */
static void put(const char* dir, const char* name, const char* text) {
    if (put_file(dir, name, text) != 0) exit(2);
}

/* A segment of `key` and `size` (mode 0640, left on the host), made and
 * attached: `text` at its start, 'z' in its last byte, its id in *id.
 * Exits (1) when it cannot. */
static inline volatile char* new_segment(key_t key, size_t size, const char* text, int* id) {
    *id = shmget(key, size, IPC_CREAT | IPC_EXCL | 0640);
    if (*id < 0) {
        perror("shmget");
        exit(1);
    }
    volatile char* p = shmat(*id, NULL, 0);
    if (p == (void*)-1) exit(1);
    strcpy((char*)p, text);
    p[size - 1] = 'z';
    return p;
}

#endif
