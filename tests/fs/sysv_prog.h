/* What the System V test programs share (sysv_prog.c, sysv_ipc_prog.c and
 * their tree twins): SIGTERM ends their wait, and their files (ready,
 * result) appear whole (written aside, then renamed). */
#ifndef CRFS_TESTS_FS_SYSV_PROG_H
#define CRFS_TESTS_FS_SYSV_PROG_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

static volatile sig_atomic_t g_term;
static void on_term(int sig) {
    (void)sig;
    g_term = 1;
}

/* DIR/name holds `text`. */
static void put(const char* dir, const char* name, const char* text) {
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE* f = fopen(tmp, "w");
    if (!f) exit(2);
    fputs(text, f);
    fclose(f);
    rename(tmp, path);
}

#endif
