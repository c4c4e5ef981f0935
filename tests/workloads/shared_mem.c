/* One memfd behind an fd, a shared and a private mapping, and a page of
 * shared anonymous memory (issue 11, state/memfd.cc). On each SIGUSR1 it
 * writes through one of them and reads through the others:
 *
 *   - a write through the fd shows in the shared mapping and in the private
 *     mapping's page it never wrote, not in the page it copied;
 *   - a write through the shared mapping shows through the fd;
 *   - the shared anonymous page holds the count of rounds.
 *
 *   shared_mem DIR   writes DIR/ready once set up, DIR/usr1.N after the Nth
 *                    SIGUSR1 ("ok" or what differed), DIR/result "PASS" or
 *                    "FAIL: ..." on SIGTERM */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "wl_files.h"

#define PAGE 4096
static const char* g_dir;
static char g_fail[1024];

/* DIR/name holding `text`, whole or not at all (written aside, renamed). */
static void put(const char* name, const char* text) {
    wl_put(g_dir, name, text);
}

int main(int argc, char** argv) {
    if (argc != 2) return 2;
    g_dir = argv[1];
    sigset_t m, old;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR1);
    sigaddset(&m, SIGTERM);
    sigprocmask(SIG_BLOCK, &m, &old);
    int fd = memfd_create("shared-mem", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, 2 * PAGE) != 0) return 2;
    char* shared = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    char* priv = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    unsigned* anon = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED || priv == MAP_FAILED || anon == (void*)MAP_FAILED) return 2;
    strcpy(priv + PAGE, "mine");
    put("ready", "ready\n");
    for (unsigned round = 1;; ++round) {
        int sig = 0;
        if (sigwait(&m, &sig) != 0) return 2;
        if (sig == SIGTERM) break;
        char want[32], got[32] = {0}, fail[256] = "";
        snprintf(want, sizeof want, "fd-%u", round);
        if (pwrite(fd, want, strlen(want) + 1, 0) < 0) return 2;
        if (strcmp(shared, want) || strcmp(priv, want))
            snprintf(fail, sizeof fail, "fd write '%s' seen as '%s' / '%s'", want, shared, priv);
        snprintf(want, sizeof want, "map-%u", round);
        strcpy(shared + PAGE, want);
        if (pread(fd, got, sizeof got - 1, PAGE) < 0 || strcmp(got, want))
            snprintf(fail, sizeof fail, "mapping write '%s' read as '%s'", want, got);
        if (strcmp(priv + PAGE, "mine"))
            snprintf(fail, sizeof fail, "private copy is '%s'", priv + PAGE);
        if (++*anon != round) snprintf(fail, sizeof fail, "shared count %u", *anon);
        if (fail[0]) snprintf(g_fail, sizeof g_fail, "round %u: %s", round, fail);
        char name[32];
        snprintf(name, sizeof name, "usr1.%u", round);
        put(name, fail[0] ? fail : "ok");
    }
    char out[1100];
    snprintf(out, sizeof out, "%s%s\n", g_fail[0] ? "FAIL: " : "PASS", g_fail);
    put("result", out);
    return 0;
}
