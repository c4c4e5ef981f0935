/* The tree of bench/mount_tree_bench.py: a root and N-1 children, each
 * holding MIB MiB of non-zero private memory of its own (the children are
 * forked before the root touches its memory, so nothing is shared
 * copy-on-write), each with stdio of its own on /dev/null (a description
 * shared between members would be a reason). Each writes DIR/ready.<i>
 * (renamed into place) once its memory is touched, then pauses.
 * SHARED_KIB: the root maps that much shared anonymous memory, touched,
 * before the forks, so every member maps one shmem object (a pre-fork
 * server's scoreboard; restored shared: state/tree_shmem.h).
 * MEMFD_KIB: the root makes a memfd of that size, maps it shared, touched,
 * and keeps its fd (3) before the forks, so every member holds and maps one
 * memfd (each member's memfd check asks who else holds it: state/memfd.cc).
 *
 *   tree_holder N MIB DIR [SHARED_KIB [MEMFD_KIB]] */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static int hold(int i, size_t bytes, const char* dir) {
    char* p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 3;
    for (size_t off = 0; off < bytes; off += 8)
        *(unsigned long long*)(p + off) = off * 2654435761u + (unsigned)i + 1;
    char tmp[4096], ready[4096];
    snprintf(tmp, sizeof tmp, "%s/ready.%d.tmp", dir, i);
    snprintf(ready, sizeof ready, "%s/ready.%d", dir, i);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || close(fd) != 0 || rename(tmp, ready) != 0) return 5;
    for (;;) pause();
}

int main(int argc, char** argv) {
    if (argc < 4 || argc > 6) return 2;
    int n = atoi(argv[1]);
    size_t bytes = strtoul(argv[2], NULL, 10) << 20;
    size_t shared = argc >= 5 ? strtoul(argv[4], NULL, 10) << 10 : 0;
    size_t memfd = argc == 6 ? strtoul(argv[5], NULL, 10) << 10 : 0;
    if (memfd) {
        int fd = memfd_create("bench", 0);
        if (fd < 0 || ftruncate(fd, (off_t)memfd) != 0) return 7;
        char* p = mmap(NULL, memfd, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) return 7;
        for (size_t off = 0; off < memfd; off += 4096) p[off] = 1;
    }
    if (shared) {
        char* p = mmap(NULL, shared, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return 3;
        for (size_t off = 0; off < shared; off += 4096) p[off] = 1;
    }
    for (int i = 1; i < n; ++i) {
        pid_t pid = fork();
        if (pid < 0) return 4;
        if (pid == 0) {
            for (int fd = 0; fd < 3; ++fd) {
                int null = open("/dev/null", O_RDWR);
                if (null < 0 || dup2(null, fd) < 0 || close(null) != 0) return 6;
            }
            return hold(i, bytes, argv[3]);
        }
    }
    return hold(0, bytes, argv[3]);
}
