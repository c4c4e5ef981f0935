// The attacker's own task for the restore attack tests: it holds one of each
// thing an edited image can retarget, and reports what it got after restore.
//
//   victim DIR
//
// fd 3: DIR/data (regular, read-only)     fd 4: /dev/null (character device)
// fd 5: DIR/del, unlinked (deleted file)  a private mapping of DIR/mapme
// a shared writable mapping of DIR/shared
// Writes DIR/ready, then idles. On SIGUSR1 it writes DIR/report ("uid",
// "keyring <id> <description>", "dumpable"), DIR/fd3.out (fd 3 read from 0),
// DIR/map.out (the private mapping's first page), and writes "PWNED" at the
// start of the shared mapping. SIGTERM ends it.
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/victim_loop.h"

static void make(const char* dir, const char* name, char fill, char* path, size_t cap) {
    snprintf(path, cap, "%s/%s", dir, name);
    char page[4096];
    memset(page, fill, sizeof page);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, page, sizeof page) != (ssize_t)sizeof page) exit(2);
    close(fd);
}

static char *g_priv, *g_shared;

static void report(const char* dir) {
    static char buf[1 << 20];
    ssize_t n = pread(3, buf, sizeof buf, 0);
    put_file(dir, "fd3.out", buf, n > 0 ? (size_t)n : 0);
    put_file(dir, "map.out", g_priv, 4096);
    memcpy(g_shared, "PWNED", 5);
    msync(g_shared, 4096, MS_SYNC);
    long key = syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 0);
    char desc[256] = "";
    syscall(SYS_keyctl, 6 /* KEYCTL_DESCRIBE */, key, desc, sizeof desc - 1);
    char rep[1024];
    int len = snprintf(rep, sizeof rep, "uid %d\nkeyring %ld %s\ndumpable %d\n", (int)getuid(), key,
                       desc, prctl(PR_GET_DUMPABLE));
    put_file(dir, "report", rep, (size_t)len);
}

int main(int argc, char** argv) {
    if (argc != 2) return 2;
    const char* dir = argv[1];
    char p[4096];
    make(dir, "data", 'D', p, sizeof p);
    if (dup2(open(p, O_RDONLY), 3) != 3) return 2;
    if (dup2(open("/dev/null", O_RDONLY), 4) != 4) return 2;
    make(dir, "del", 'X', p, sizeof p);
    if (dup2(open(p, O_RDWR), 5) != 5) return 2;
    unlink(p);
    make(dir, "mapme", 'M', p, sizeof p);
    int fd = open(p, O_RDONLY);
    char* priv = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    make(dir, "shared", 'S', p, sizeof p);
    fd = open(p, O_RDWR);
    char* shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (priv == MAP_FAILED || shared == MAP_FAILED) return 2;
    g_priv = priv, g_shared = shared;
    return victim_loop(dir, report);
}
