/* Overhead of crfs.ko's hooks, measured inside one guest boot:
 *
 *     kmod_bench /path/to/crfs.ko [rounds]
 *
 * Alternates between the module unloaded, loaded with no marks, and loaded
 * while the benchmark itself carries a mark (so the hooks' lookups run),
 * and times, per round:
 *   futex_plain  FUTEX_WAKE with no waiter + FUTEX_WAIT that fails with
 *                EAGAIN (the syscalls of a contended plain mutex)
 *   futex_pi     FUTEX_LOCK_PI + FUTEX_UNLOCK_PI, uncontended
 *   exit         fork + _exit + waitpid
 * Prints the best round of each (ns per op) and, for each mode, the median
 * over rounds of its ratio to the "off" run of the same round: modes of one
 * round run back to back, so a change in host load (qemu TCG shares the
 * host's cores) hits both sides of a ratio alike.
 * Informative only: the exit status says whether it could run. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crfs_kdev.h"

enum { OFF, ON, MARKED, NR_MODES };
enum { FUTEX_PLAIN, FUTEX_PI, EXIT, NR_BENCH };

static const char* mode_name[NR_MODES] = {"off", "on", "on+marked"};
static const char* bench_name[NR_BENCH] = {"futex_plain", "futex_pi", "exit"};
static const long iters[NR_BENCH] = {20000, 10000, 300};

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static long futex(uint32_t* uaddr, int op, uint32_t val) {
    return syscall(SYS_futex, uaddr, op, val, NULL, NULL, 0);
}

#define MAX_ROUNDS 31

static int cmp_double(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return x < y ? -1 : x > y;
}

static double median(double* v, int n) {
    qsort(v, (size_t)n, sizeof v[0], cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double run_n(int bench, long n) {
    static uint32_t f;
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        switch (bench) {
            case FUTEX_PLAIN:
                futex(&f, FUTEX_WAKE_PRIVATE, 1);
                futex(&f, FUTEX_WAIT_PRIVATE, 1); /* f is 0: EAGAIN */
                break;
            case FUTEX_PI:
                if (futex(&f, FUTEX_LOCK_PI_PRIVATE, 0) || futex(&f, FUTEX_UNLOCK_PI_PRIVATE, 0)) {
                    perror("pi futex");
                    exit(1);
                }
                break;
            case EXIT: {
                pid_t p = fork();
                if (p == 0) _exit(0);
                if (p < 0 || waitpid(p, NULL, 0) != p) {
                    perror("fork");
                    exit(1);
                }
                break;
            }
        }
    }
    return (now_ns() - t0) / n;
}

static double run(int bench) {
    return run_n(bench, iters[bench]);
}

static int load(const char* ko) {
    int fd = open(ko, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || syscall(SYS_finit_module, fd, "", 0) != 0) {
        fprintf(stderr, "load %s: %s\n", ko, strerror(errno));
        return -1;
    }
    close(fd);
    return 0;
}

static int unload(void) {
    for (int i = 0; i < 100; i++) {
        if (syscall(SYS_delete_module, "crfs", O_NONBLOCK) == 0) return 0;
        if (errno != EAGAIN && errno != EBUSY) break;
        usleep(10000);
    }
    fprintf(stderr, "unload crfs: %s\n", strerror(errno));
    return -1;
}

int main(int argc, char** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: kmod_bench crfs.ko [rounds]\n");
        return 2;
    }
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    if (rounds < 1 || rounds > MAX_ROUNDS) rounds = 5;
    static double times[MAX_ROUNDS][NR_MODES][NR_BENCH];
    double best[NR_MODES][NR_BENCH];
    for (int m = 0; m < NR_MODES; m++)
        for (int b = 0; b < NR_BENCH; b++) best[m][b] = 1e300;
    syscall(SYS_delete_module, "crfs", O_NONBLOCK); /* start unloaded */
    for (int r = 0; r < rounds; r++) {
        for (int m = 0; m < NR_MODES; m++) {
            int fd = -1;
            if (m != OFF && load(argv[1])) return 1;
            if (m == MARKED) {
                fd = crfs_kdev_open();
                if (fd < 0 || crfs_kdev_set(fd, 0, "CR: benchmark") < 0) {
                    fprintf(stderr, "mark self failed\n");
                    return 1;
                }
            }
            /* Warm up: loading patches kernel text, and TCG retranslates. */
            for (int b = 0; b < NR_BENCH; b++) run_n(b, iters[b] / 4);
            for (int b = 0; b < NR_BENCH; b++) {
                double t = run(b);
                times[r][m][b] = t;
                if (t < best[m][b]) best[m][b] = t;
            }
            if (fd >= 0) {
                crfs_kdev_clear(fd, 0);
                close(fd);
            }
            if (m != OFF && unload()) return 1;
        }
    }
    for (int b = 0; b < NR_BENCH; b++)
        for (int m = 0; m < NR_MODES; m++)
            printf("BENCH %-11s %-9s %10.0f ns/op\n", bench_name[b], mode_name[m], best[m][b]);
    for (int b = 0; b < NR_BENCH; b++) {
        for (int m = ON; m < NR_MODES; m++) {
            double ratio[MAX_ROUNDS];
            for (int r = 0; r < rounds; r++) ratio[r] = times[r][m][b] / times[r][OFF][b];
            double lo = ratio[0], hi = ratio[0];
            for (int r = 1; r < rounds; r++) {
                if (ratio[r] < lo) lo = ratio[r];
                if (ratio[r] > hi) hi = ratio[r];
            }
            printf("BENCH ratio %-11s %-9s/off median %.3f (best-of %.3f, rounds %.3f..%.3f)\n",
                   bench_name[b], mode_name[m], median(ratio, rounds), best[m][b] / best[OFF][b],
                   lo, hi);
        }
    }
    return 0;
}
