#include "fs/single_loop.h"

#define FUSE_USE_VERSION 314  // as fs/ops.h
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <time.h>

#include <cerrno>
#include <cstring>

#include "common/log.h"

namespace crfs::fs {
namespace {

struct Loop {
    fuse_session* se;
    sem_t done;
    int rc = 0;
};

void* run_loop(void* arg) {
    auto* loop = static_cast<Loop*>(arg);
    loop->rc = fuse_session_loop(loop->se);
    sem_post(&loop->done);
    return nullptr;
}

// Interrupts the loop thread's read of /dev/fuse until the loop has returned:
// a signal that lands between its check of the exit flag and its read is
// lost, so it is sent again after a while.
void stop_loop(Loop& loop, pthread_t thread) {
    for (;;) {
        pthread_kill(thread, SIGTERM);  // libfuse's handler: exit flag, read gets EINTR
        timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 50'000'000;
        if (until.tv_nsec >= 1'000'000'000) {
            until.tv_sec += 1;
            until.tv_nsec -= 1'000'000'000;
        }
        if (sem_timedwait(&loop.done, &until) == 0) return;
    }
}

}  // namespace

int session_loop_on_fixed_stack(fuse_session* se) {
    Loop loop{se, {}, 0};
    sem_init(&loop.done, 0, 0);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    int err = pthread_attr_setstacksize(&attr, kLoopStackBytes);
    pthread_t thread;
    if (err == 0) err = pthread_create(&thread, &attr, run_loop, &loop);
    pthread_attr_destroy(&attr);
    if (err != 0) {
        log_error("crfsd -s: cannot start the loop thread (%lu KiB stack): %s",
                  kLoopStackBytes >> 10, std::strerror(err));
        sem_destroy(&loop.done);
        return 1;
    }
    // A process-directed signal comes to this thread (the kernel offers it
    // to the main thread first); its handler has set the exit flag.
    while (sem_wait(&loop.done) != 0) {
        if (errno == EINTR && fuse_session_exited(se)) {
            stop_loop(loop, thread);
            break;
        }
    }
    pthread_join(thread, nullptr);
    sem_destroy(&loop.done);
    return loop.rc;
}

}  // namespace crfs::fs
