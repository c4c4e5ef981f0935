/* The blob's own syscall wrappers: no libc, raw `syscall`, -errno on failure. */
#ifndef CRFS_BLOB_SYSCALL_H
#define CRFS_BLOB_SYSCALL_H

#include <stdint.h>

static inline long sys6(long n, long a, long b, long c, long d, long e, long f) {
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#define sys0(n) sys6(n, 0, 0, 0, 0, 0, 0)
#define sys1(n, a) sys6(n, (long)(a), 0, 0, 0, 0, 0)
#define sys2(n, a, b) sys6(n, (long)(a), (long)(b), 0, 0, 0, 0)
#define sys3(n, a, b, c) sys6(n, (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define sys4(n, a, b, c, d) sys6(n, (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define sys5(n, a, b, c, d, e) sys6(n, (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), 0)

/* x86-64 syscall numbers used by the blob. */
enum {
    NR_read = 0, /* trees */
    NR_write = 1,
    NR_open = 2,
    NR_close = 3,
    NR_fstat = 5,
    NR_mmap = 9,
    NR_mprotect = 10,
    NR_munmap = 11,
    NR_rt_sigaction = 13,
    NR_rt_sigprocmask = 14,
    NR_rt_sigreturn = 15,
    NR_pread64 = 17,
    NR_ioctl = 16,        /* restore: userfaultfd */
    NR_userfaultfd = 323, /* restore */
    NR_mremap = 25,
    NR_madvise = 28,
    NR_shmat = 30,  /* sysv */
    NR_shmctl = 31, /* sysv */
    NR_setitimer = 38,
    NR_getpid = 39,
    NR_exit = 60,
    NR_setresuid = 117,
    NR_setresgid = 119,
    NR_setfsuid = 122,
    NR_setfsgid = 123,
    NR_capget = 125,
    NR_capset = 126,
    NR_rt_sigqueueinfo = 129,
    NR_prctl = 157,
    NR_arch_prctl = 158,
    NR_setgroups = 116,
    NR_gettid = 186,
    NR_exit_group = 231,
    NR_preadv = 295,
    NR_rt_tgsigqueueinfo = 297,
    NR_mlock2 = 325,   /* fidelity */
    NR_mlockall = 151, /* fid */
    NR_rseq = 334,
    NR_futex = 202,
    NR_set_tid_address = 218,
    NR_set_robust_list = 273,
    NR_clone3 = 435,
    NR_close_range = 436, /* failclean */
    NR_pause = 34,        /* failclean */
    NR_fcntl = 72,        /* kobj: F_ADD_SEALS of memfds */
    NR_ioprio_set = 251,
    NR_nanosleep = 35, /* a thread's tid still being freed */
    /* timer */
    NR_timer_create = 222,
    NR_timer_settime = 223,
    /* thpidfd */
    NR_pidfd_open = 434,
    NR_dup3 = 292,
    /* thpidfd2 */
    NR_epoll_ctl = 233,
    NR_sendmsg = 46,
    NR_recvmsg = 47,
};

#endif
