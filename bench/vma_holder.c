/* The task of bench/mount_vma_bench.py: N adjacent one-page private
 * anonymous areas with alternating protections (read-write, read-only: the
 * kernel cannot merge them), 64 non-zero bytes in each. Writes the time its
 * own setup took (one mmap, N first touches, N/2 mprotect: the kernel's cost
 * of building the areas) in ns to READY (renamed into place), then pauses.
 * SIGUSR1 wakes it for one run and nothing more (the bench's let_run).
 *
 *   vma_holder N READY */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static void woken(int sig) { (void)sig; }

static unsigned long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

int main(int argc, char** argv) {
    if (argc != 3) return 2;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = woken;
    if (sigaction(SIGUSR1, &sa, NULL) != 0) return 6;
    size_t n = strtoul(argv[1], NULL, 10);
    unsigned long long t0 = now_ns();
    char* base = mmap(NULL, n * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return 3;
    for (size_t i = 0; i < n; ++i) {
        char* p = base + i * 4096;
        memset(p, (int)(i % 251) + 1, 64);
        if (i % 2 && mprotect(p, 4096, PROT_READ) != 0) return 4;
    }
    unsigned long long took = now_ns() - t0;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", argv[2]);
    FILE* f = fopen(tmp, "w");
    if (!f || fprintf(f, "%llu\n", took) < 0 || fclose(f) != 0 || rename(tmp, argv[2]) != 0)
        return 5;
    for (;;) pause();
}
