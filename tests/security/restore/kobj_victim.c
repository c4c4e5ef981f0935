/* The attacker's own task for the kernel-object attack tests
 * (kobj_attacks_test.py): one fd of each kind an edited image can retarget.
 *
 *   kobj_victim DIR
 *
 * fd 3: eventfd (count 5)            fd 4: epoll watching fd 3 (data 0x77)
 * fd 5: O_PATH of DIR/w              fd 6: directory DIR
 * fd 7: timerfd (CLOCK_MONOTONIC, an hour ahead)
 * fd 8: signalfd (SIGUSR2)           fd 9: pidfd of itself
 * fd 10: inotify watching DIR/w (IN_CREATE)
 * Writes DIR/ready, then idles. On SIGUSR1 it writes DIR/report: what each fd
 * gives ("eventfd 5", "epoll 1 0x77", the directory's entries, ...).
 * SIGTERM ends it. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/victim_loop.h"

static void at(int want, int fd) {
    if (fd < 0 || dup2(fd, want) != want) exit(2);
    if (fd != want) close(fd);
}

static void report(const char* dir) {
    char rep[8192];
    size_t k = 0;
    struct epoll_event got = {0, {0}};
    int n = epoll_wait(4, &got, 1, 0);
    k += (size_t)snprintf(rep + k, sizeof rep - k, "epoll %d 0x%llx\n", n,
                          (unsigned long long)got.data.u64);
    uint64_t v = 0;
    if (read(3, &v, 8) != 8) v = 0;
    k += (size_t)snprintf(rep + k, sizeof rep - k, "eventfd %llu\n", (unsigned long long)v);
    struct itimerspec cur;
    timerfd_gettime(7, &cur);
    k += (size_t)snprintf(rep + k, sizeof rep - k, "timer %s\n",
                          cur.it_value.tv_sec ? "armed" : "off");
    char path[4096];
    snprintf(path, sizeof path, "%s/w/poke", dir);
    close(open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    char ev[4096];
    ssize_t got_ev = read(10, ev, sizeof ev);
    k += (size_t)snprintf(rep + k, sizeof rep - k, "inotify %s\n",
                          got_ev > 0 ? ((struct inotify_event*)ev)->name : "-");
    lseek(6, 0, SEEK_SET);
    DIR* d = fdopendir(dup(6));
    struct dirent* e;
    while (d && (e = readdir(d)) != NULL && k < sizeof rep - 300)
        k += (size_t)snprintf(rep + k, sizeof rep - k, "entry %s\n", e->d_name);
    if (d) closedir(d);
    put_file(dir, "report", rep, k);
}

int main(int argc, char** argv) {
    if (argc != 2) return 2;
    const char* dir = argv[1];
    at(3, eventfd(5, EFD_NONBLOCK));
    at(4, epoll_create1(0));
    struct epoll_event ev = {EPOLLIN, {.u64 = 0x77}};
    if (epoll_ctl(4, EPOLL_CTL_ADD, 3, &ev) < 0) return 2;
    char w[4096];
    snprintf(w, sizeof w, "%s/w", dir);
    if (mkdir(w, 0755) < 0) return 2;
    at(5, open(w, O_PATH));
    at(6, open(dir, O_RDONLY | O_DIRECTORY));
    at(7, timerfd_create(CLOCK_MONOTONIC, 0));
    struct itimerspec t = {{0, 0}, {3600, 0}};
    if (timerfd_settime(7, 0, &t, NULL) < 0) return 2;
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR2);
    sigprocmask(SIG_BLOCK, &m, NULL);
    at(8, signalfd(-1, &m, SFD_NONBLOCK));
    at(9, (int)syscall(SYS_pidfd_open, getpid(), 0));
    at(10, inotify_init1(IN_NONBLOCK));
    if (inotify_add_watch(10, w, IN_CREATE) != 1) return 2;
    return victim_loop(dir, report);
}
