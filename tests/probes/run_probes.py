#!/usr/bin/env python3
"""The contract test of issue 9: `reason` is empty exactly when a checkpoint
works, and a restored task is the same task.

For every probe variant (tests/probes/*.c) this starts the probe, waits for
its `ready` file and reads /crfs/PID/reason through a crfsd mounted on a
temporary directory:
  - a refused variant declares a substring its reason must contain; `cp` of
    `image` must then fail with EBUSY, and the probe, sent SIGTERM, must still
    PASS (its state was left alone);
  - a supported variant must have an empty reason; it first PASSes without
    any checkpoint, then: checkpoint -> kill -9 -> restore into the same pid
    -> SIGTERM -> PASS, and the same image restored under a fresh name ->
    SIGTERM -> PASS.
Every wait is for a file or a state, bounded by TIMEOUT (a guard, never a
verdict). crfsd is always unmounted and killed.

usage: run_probes.py BUILD_DIR [unittest args]
"""
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import unittest

# The mount harness of the mounted-tree tests (crfsd on a temporary directory,
# always unmounted; bounded waits for a state).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fs"))
import roundtrip_mount_test  # noqa: E402
from roundtrip_mount_test import TIMEOUT, Crfsd, alive, read, sh, wait_for  # noqa: E402
from roundtrip_mount_test import pid_free  # noqa: E402
from trees_mount_test import reap, tree_of  # noqa: E402
from roundtrip_mount_test import TIMEOUT, Crfsd, alive, descendants, pid_free, read, sh, wait_for  # noqa: E402,E501

BUILD = None

# Runs a probe as a normal user (the reason is read by root all the same).
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

# (probe, variant, expected reason substring or None for supported[, argv prefix])
PROBES = [
    ("memory", "plain", None),
    ("areas", "many", None),
    ("areas", "twenty_thousand", None),
    ("areas", "dense", None),
    ("memory", "mlock", None),
    ("memory", "dontfork", None),
    ("memory", "wipeonfork", None),
    ("memory", "hugepage", None),
    ("memory", "guard", "is guard regions (MADV_GUARD_INSTALL) not supported yet"),
    ("memory", "aio", "memory: AIO ring"),
    ("memory", "memfd_shared", None),
    ("memory", "sysv", None),  # sysv: restored exactly now (state/sysv_shm.h)
    # memory/shared_anon (shared with a child) is a tree restored now: tree_shmem/parent_kids.
    ("memory", "shared_deleted", "memory: shared mapping of a deleted file"),
    ("files", "regular", None),
    ("files", "shared", None),
    ("files", "nsfs", "fd 3: file without a path net:["),
    ("files", "procfs", "fd 3: file in /proc /proc/"),
    ("files", "ptmx", "fd 3: terminal /dev/ptmx (5:2: a pseudo-terminal master) not supported yet"),
    ("files", "fuse", "fd 3: character device /dev/fuse"),
    ("files", "pipe", None),
    ("files", "memfd", None),
    ("files", "deleted_sparse", "sparse deleted file"),
    ("files", "deleted_linked", "an unlinked name of a file with 1 other link(s)"),
    ("files", "deleted_huge", "is larger than 1073741824"),
    ("files", "tmpfile", None),
    ("files", "tmpfile_gone", "opened with O_TMPFILE: its directory "),
    ("files", "deleted", None),
    ("files", "memfd_twice", None),
    ("files", "deleted_twice", None),  # deltwice: state/file_reopen.cc
    ("files", "deleted_twice_modes", None),
    ("files", "deleted_twice_tmpfile", None),  # made by its later O_TMPFILE description
    ("files", "flock", None),
    ("files", "posix_lock", None),
    ("files", "deleted_owner", "owned by 65534:65534, not by the task's fsuid:fsgid"),
    ("files", "socketpair", None),
    ("signals", "handlers", None),
    ("signals", "sigsuspend", None),
    ("signals", "ppoll", None),
    ("timers", "itimer", None),
    ("timers", "posix", None),
    ("task", "rlimits", None),
    ("task", "cwd_umask", None),
    ("task", "deleted_cwd", None),  # delcwd: made again, removed (state/fs.cc)
    ("task", "deleted_cwd_fd", None),  # delcwd: cwd and fd 3 one directory again
    ("task", "deleted_cwd_opath", "is also fd 3, opened O_PATH; a removed directory held so"),
    ("task", "deleted_cwd_owner", "owned by 65534:65534, not by the task's fsuid:fsgid; such a directory"),
    ("task", "deleted_cwd_child", None),  # cwdtree: made once, the child's a dup (state/fs_tree.cc)
    ("task", "deleted_cwd_child_fd", None),  # cwdtree: the child's fd of it, kind 43
    ("task", "deleted_cwd_child_read", None),  # cwdoffset: at its offset, opened before the rmdir
    ("task", "deleted_cwd_child_nofollow", "'s cwd, and this open file description of it has open flags"),
    ("task", "deleted_fd_child_cwd", None),  # cwdtree: the child's cwd of the parent's fd 3
    ("task", "deleted_cwd_child_nofollow_read", None),  # fdshare: O_NOFOLLOW, opened by name
    ("task", "deleted_cwd_child_twice_read", None),  # fdshare: kind 40 of a kind 43, both read
    ("task", "child", None),  # deldir: the removed directory both opened comes back (state/dir_deleted.cc)
    ("task", "seccomp", "seccomp: 1 filter(s) not supported yet"),
    ("task", "seccomp", None),
    ("task", "robust", None),
    ("task", "thp", None),
    ("task", "timerslack", None),
    ("task", "oom", None),
    ("task", "sched_batch", None),
    ("task", "affinity", None),
    ("task", "nodump", "prctl: not dumpable", NOBODY),
    # fidelity: the settings record (state/settings.cc)
    ("settings", "subreaper", None),
    ("settings", "nodump_root", None),
    ("settings", "membarrier", None),
    ("settings", "sched_rr", None),
    ("settings", "madvise", None),
    # issue 11, kernel objects (tests/probes/kobj_a.c, state/kobj.h)
    ("kobj_a", "eventfd", None),
    ("kobj_a", "timerfd", None),
    ("kobj_a", "signalfd", None),
    ("kobj_a", "epoll", None),
    ("kobj_a", "epoll_closed", "fd 4: epoll watches fd 3, which the task has closed"),
    ("kobj_a", "epoll_fired", "an EPOLLONESHOT watch that has fired (disabled) not supported yet"),
    ("kobj_a", "epoll_refused", "fd 4: epoll watches fd 3, which cannot be restored (userfaultfd"),
    ("kobj_a", "opath", None),
    ("kobj_a", "opath_deleted", "fd 3: O_PATH descriptor of "),
    ("kobj_a", "dir", None),
    ("kobj_a", "dir_deleted", None),  # deldir: state/dir_deleted.cc
    ("kobj_a", "dir_deleted_owner", "owned by 65534:65534, not by the task's fsuid:fsgid; such a directory"),
    ("kobj_a", "dir_deleted_twice", None),  # deltwice: state/file_reopen.cc
    ("kobj_a", "dir_deleted_twice_read", None),  # opened and seeked before the rmdir
    ("kobj_a", "dir_deleted_twice_partial", None),
    ("kobj_a", "dir_deleted_twice_nofollow", None),  # fdshare: O_NOFOLLOW at an offset
    ("kobj_a", "pidfd", None),
    ("kobj_a", "pidfd_other", "fd 3: pidfd of pid 1 (a process outside the image, or a thread) not supported yet"),
    ("kobj_a", "inotify", None),
    ("kobj_a", "inotify_far", "fd 3: inotify watch 1 on inode "),
    ("kobj_a", "inotify_queued", "bytes of queued events not supported yet"),
    ("kobj_a", "inotify_gap", "fd 3: inotify with watch descriptors that have gaps (wd 2"),
    ("kobj_a", "userfaultfd", "fd 3: userfaultfd not supported yet"),
    ("kobj_a", "io_uring", "fd 3: io_uring not supported yet"),
    ("kobj_a", "perf_event", "fd 3: perf event not supported yet"),
    ("kobj_a", "fanotify", "fd 3: fanotify not supported yet"),
    ("kobj_a", "bpf_map", "fd 3: BPF map not supported yet"),
    ("kobj_b", "pipe_data", None),
    ("kobj_b", "pipe_packet", None),
    ("kobj_b", "pipe_full", None),
    ("kobj_b", "pipe_half", None),
    # kobj_b/pipe_shared (a pipe shared with a child) is a tree restored now: tree_share/cross_pipe.
    ("kobj_b", "pipe_async", "with open flags 02"),
    ("kobj_b", "fifo_data", None),
    ("kobj_b", "fifo_half", "(read end): its write end is not open in this task"),
    ("kobj_b", "fifo_deleted", "(deleted) is no longer the FIFO at that path"),
    ("kobj_b", "unix_stream", None),
    ("kobj_b", "unix_dgram", None),
    ("kobj_b", "unix_seqpacket", None),
    ("kobj_b", "unix_rights", "has fds in flight (SCM_RIGHTS)"),
    ("kobj_b", "unix_bound", None),  # unix: state/unix_bound.cc
    ("kobj_b", "unix_listen", None),
    ("kobj_b", "unix_peer_closed", "fd 3: unix stream socket socket:["),
    ("kobj_b", "unix_peek_off", "with SO_PEEK_OFF set"),
    # kobj_b/unix_shared (a socketpair shared with a child) is a tree restored now:
    # tree_share/cross_socketpair, tree_share/shared_desc.
    ("net", "tcp_unbound", None),
    ("net", "tcp_bound", None),
    ("net", "tcp_listen", None),
    ("net", "tcp6_listen", None),
    ("net", "udp_bound", None),
    ("net", "udp_connected", None),
    ("net", "udp6", None),
    ("net", "udp_queued", "with datagrams queued (1 bytes to read, 0 to send)"),
    ("net", "close_wait", "in state CLOSE_WAIT not supported yet"),
    ("net", "filter", "an attached socket filter (SO_ATTACH_FILTER) not supported yet"),
    ("net", "raw", "fd 3: raw IP socket not supported yet"),
    ("net", "packet", "fd 3: packet socket not supported yet"),
    ("net", "netlink", "fd 3: netlink socket not supported yet"),
    ("net_b", "syn_sent", "in state SYN_SENT not supported yet"),
    ("net_b", "fin_wait2", "in state FIN_WAIT2 not supported yet"),
    ("net_b", "time_wait", "in state CLOSE after its connection ended (or was reset) not supported yet"),
    ("net_b", "refused", "after a failed connect (it shows a port it no longer holds) not supported yet"),
    ("net_b", "unaccepted", None),
    ("net_b", "dual_stack", None),
    ("threads", "threads", None),
    ("threads", "churn", None),
    ("threads", "thread_nice", "nice 5 (the main thread's is 0); per-thread settings not supported"),
    ("threads", "clone_vm", "task: shares memory (CLONE_VM) with pid "),
    ("threads", "clone_files", "task: shares its fd table (CLONE_FILES) with pid "),
    ("threads", "pidfd_thread", None),  # thpidfd: made by the blob (state/pidfd.h)
    ("threads", "pidfd_thread_epoll", None),  # thpidfd2: its watches added by the blob
    ("threads", "pidfd_thread_forked", None),  # thpidfd2: received from the parent's blob
    ("threads", "pidfd_thread_clone_fs", None),  # thpidfd2: a cwd shared is no matter
    ("threads", "pidfd_thread_clone_files", " shares its fd table with another process not supported yet"),
    # open file descriptions shared outside the image (state/shared_desc.h)
    ("shared", "file_outside", "(outsider) fd 3, outside the image; its offset would no longer be shared"),
    ("shared", "file_reopened", None),
    ("shared", "devnull_outside", None),
    ("shared", "udp_outside", "(outsider) fd 3, outside the image; restored, it would be another"),
    ("shared", "scm_rights", "fd 4: the same open file description is held by pid "),
    # issue 11, part c: memfd (tests/probes/kobj_c.c, state/memfd.cc)
    ("kobj_c", "memfd_one", None),
    ("kobj_c", "memfd_sealed", None),
    ("kobj_c", "memfd_future_write", None),
    ("kobj_c", "memfd_noexec", None),
    ("kobj_c", "memfd_mapped", None),
    # kobj_c/memfd_other (a memfd a child holds too) is a tree restored now: tree_shmem/memfd_kids.
    ("kobj_c", "memfd_hugetlb", "fd 3: memfd:huge on hugetlbfs (MFD_HUGETLB) not supported yet"),
    ("kobj_c", "shared_anon_split", None),
    ("kobj_c", "shared_anon_alias", "(one object mapped twice in the task); such aliases not"),
    # kobj_c/sysv_sem and sysv_msg (a set, a queue with a message) are restored now:
    # tests/fs/sysv_ipc_mount_test.py.
    # kobj_c/posix_mq (an unlinked queue with a message) is restored now: mqueue/* below.
    # tree/shared_file and tree/pipe are restored now: tree_share/* below.
    ("tree", "grandchild", " (fd 3): POSIX message queue /crfs-treeprobe-"),
    ("tree", "outside", "fd 3: the same open file description is held by pid "),
    # fid-exact: restored exactly where it used to be refused (tests/probes/exact.c)
    ("exact", "seccomp_getpid", None),
    ("exact", "seccomp_stacked", None),
    ("exact", "posix_timers", None),
    ("exact", "locks", None),
    # unix (issue 11): named, listening and accepted unix sockets, state/unix_bound.cc
    ("unix_bound", "path_stream", None),
    ("unix_bound", "abstract_seqpacket", None),
    ("unix_bound", "autobind", None),
    ("unix_bound", "dgram_queue", None),
    ("unix_bound", "listen", None),
    ("unix_bound", "foreign_waiting", "the client of a waiting connection, socket:["),
    ("unix_bound", "waiting_bytes", "holds bytes the server has not read"),
    ("unix_bound", "gone_sender", "queues a datagram from @crfs-ux-gone-"),
    ("unix_bound", "moved", "a name that no longer leads to it"),
    ("unix_bound", "listen_as_other", "a socket whose peer credentials name other ids"),
    ("unix_bound", "pair_ids", None, NOBODY),  # restored by root: the pair names 65534
    # fid: a syscall the kernel restarts, ended by a handled signal (tests/probes/restart.c)
    ("restart", "pause_eintr", None),
    ("restart", "sigsuspend_eintr", None),
    ("restart", "nanosleep_eintr", None),
    ("restart", "sched_idle", None),
    ("restart", "tree_pause", None),  # a tree's members at the tree's gate
    ("restart", "thread_pause", None),  # a thread other than the main one
    # fid: mlockall(MCL_FUTURE) asked in the frozen task (tests/probes/mlockall.c)
    ("mlockall", "future", None),
    ("mlockall", "future_onfault", None),
    # share: what a tree's processes share (tests/probes/tree_share.c, state/tree_share.h)
    ("tree_share", "shared_desc", None),
    ("tree_share", "cross_pipe", None),
    # the pair was made by the probe, which holds neither end: it makes it again (unix-maker)
    ("tree_share", "cross_socketpair", None),
    ("tree_share", "made_socketpair", None),
    # SO_KEEPALIVE on a socketpair end (unix-options record), the end given or the task's own
    ("tree_share", "keepalive_given", None),
    ("tree_share", "keepalive_own", None),
    ("tree_share", "outside_pipe", ", outside the image; a pipe shared with another process"),
    ("tree_share", "deleted_two_members", None),  # mqtree: reopened (share-fd end 4)
    ("tree_share", "memfd_two_members", None),
    ("tree_share", "deleted_twice_kid", None),  # deltwice: fd kind 40 given to a child
    ("tree_share", "deleted_dir_offset", None),  # share39: end 4 at an offset, opened early
    ("tree_share", "deleted_dir_offset_nofollow", None),  # fdshare: O_NOFOLLOW, opened by name
    ("tree_share", "deleted_dir_giver_nofollow", None),  # fdshare: the giver's flags are its own
    ("tree_share", "deleted_given_on", None),  # the reopened description given on (kind 52 giver)
    # fifo: a FIFO opened separately by two children (state/tree_share.h kShareFifoJoin)
    ("tree_share", "fifo_reader_first", None),
    ("tree_share", "fifo_writer_first", None),
    ("tree_share", "fifo_outside", ", outside the image; a pipe shared with another process"),
    ("tree_share", "pidfd_kids", None),  # pidfd: a parent's and its child's pidfds of each other
    ("tree_share", "pidfd_sibling", None),  # pidfd2: opened by the parent, handed over
    ("tree_share", "pidfd_grandchild", None),  # pidfd2: opened by the child, handed over
    ("tree_share", "pidfd_zombie_sibling", None),  # pidfd2: opened by the parent, handed over
    # life: groups and sessions of a tree (tests/probes/tree_life.c, state/tree_groups.cc)
    ("tree_life", "sibling_group", None),
    ("tree_life", "orphan_group", None),
    ("tree_life", "outside_leader", "outside the tree: a restored tree cannot join it"),
    ("tree_life", "leaderless_outside", "(its leader gone) also holds pid "),
    ("tree_life", "session_left", " (task): session "),
    ("tree_life", "zombies", None),
    ("tree_life", "zombie_leader", None),
    # fid: each thread's timer slack, I/O priority, pdeathsig (tests/probes/thread_attrs.c)
    ("thread_attrs", "per_thread", None),
    ("thread_attrs", "child", None),
    ("thread_attrs", "reset_thread", ": a reset-on-fork scheduling flag of its own"),
    ("thread_attrs", "reset_nice", "task: SCHED_RESET_ON_FORK with nice -3 and threads"),
    # fid: securebits of a user's task, set by the root writer (tests/probes/thread_attrs.c)
    ("thread_attrs", "securebits_user", None),
    # shm: shared anonymous memory between members (tests/probes/tree_shmem.c, state/tree_shmem.h)
    ("tree_shmem", "parent_kids", None),
    ("tree_shmem", "split", None),
    ("tree_shmem", "siblings", None),
    ("tree_shmem", "outside", ", outside the image; shared memory with a process outside the image"),
    ("tree_shmem", "uncovered", "(its first holder in the image) does not map; such sharing"),
    ("tree_shmem", "memfd_kids", None),
    ("tree_shmem", "memfd_outside", "fd 3: memfd:tree is also held or mapped by pid "),
    ("tree_shmem", "sealed_kids", None),
    ("tree_shmem", "write_sealed_kids", None),
    # unix: connections between a tree's processes (tests/probes/unix_tree.c, state/unix_tree.h)
    ("unix_tree", "stream_path", None),
    ("unix_tree", "seqpacket_abstract", None),
    ("unix_tree", "stream_path_user", None, NOBODY),
    ("unix_tree", "outside_client", " is also open in pid "),
    ("unix_tree", "client_first", "a client before its server"),
    ("unix_tree", "dgram_between", None),  # restored since issue 11's datagrams (unix_dgram)
    ("unix_tree", "connected_by_server", "a socket whose peer credentials name another process"),
    ("unix_tree", "listener_by_child", "the process that called listen(), not pid"),
    # names: PR_SET_VMA_ANON_NAME of anonymous memory (tests/probes/vma_names.c)
    ("vma_names", "named_private", None),
    ("vma_names", "named_shared", None),
    ("vma_names", "named_longest", None),
    ("vma_names", "named_memfd_shared", "is a named shared mapping of /memfd:names (deleted)"),
    ("vma_names", "named_memfd_private", "is a named private mapping of a shmem file (a memfd)"),
    # tty: a shell job on its terminal (tests/probes/tty.c, state/tty.h), restored by
    # `crfs restore --shell-job` on a new terminal
    ("tty", "leader", None),
    ("tty", "job", None),
    ("tty", "background", "tty: the terminal's foreground process group ("),
    ("tty", "not_ctty", "that is not the controlling terminal of the task's session (that is 136:"),
    ("tty", "input", "tty: the terminal holds 3 bytes of input the task has not read"),
    # a controlling terminal with no fd on it (tests/probes/tty_nofd.c)
    ("tty_nofd", "leader_nofd", None),
    ("tty_nofd", "job_nofd", None),
    ("tty_nofd", "background_nofd", "tty: the terminal's foreground process group ("),
    # timer: POSIX timers signalling another thread (tests/probes/timer_thread.c)
    ("timer_thread", "thread_target", None),
    ("timer_thread", "sigev_thread", None),
    # mem: mappings of /dev/zero (tests/probes/memory_dev.c, state/memory.cc)
    ("memory_dev", "devzero_shared", None),
    ("memory_dev", "devzero_private", "memory: private mapping of a character device "),
    # unix: POSIX message queues (tests/probes/mqueue.c, state/mqueue.cc)
    ("mqueue", "mq_named", None),
    ("mqueue", "mq_writer", None),
    ("mqueue", "mq_unlinked", None),
    ("mqueue", "mq_empty_dup", None),
    ("mqueue", "mq_notify", "an mq_notify registration (pid "),
    ("mqueue", "mq_unlinked_two", None),  # mq2: state/mqueue_second.cc
    # mq: queues shared between members of a tree (tests/probes/mqueue_tree.c)
    ("mqueue_tree", "inherited", None),
    ("mqueue_tree", "inherited_unlinked", None),
    ("mqueue_tree", "unlinked_two_members", None),  # mqtree: share-fd end 4 (reopened)
    ("mqueue_tree", "unlinked_outside", "(unlinked) also held by pid "),
    # unix: datagrams between a tree's processes (tests/probes/unix_dgram.c, state/unix_tree.h)
    ("unix_dgram", "pair_between", None),
    ("unix_dgram", "connected_path", None),
    ("unix_dgram", "connected_abstract", None),
    ("unix_dgram", "connected_unnamed", None),
    ("unix_dgram", "unconnected_sender", None),  # restored since s12 (a reason before)
    ("unix_dgram", "unconnected_two", None),
    ("unix_dgram", "relative_elsewhere", "the maker of its datagram group (it binds the name at restore)"),
    ("unix_dgram", "unconnected_passcred", "queues credentials (SCM_CREDENTIALS) of another process"),
    ("unix_dgram", "sender_outside", "/c.sock, a socket not open in this process"),
    ("unix_dgram", "pair_by_child", "the process that called socketpair(), not pid"),
    # share: clones sharing their fd table or fs (tests/probes/tree_clone.c, state/tree_share_task.h)
    ("tree_clone", "files_fs", None),
    ("tree_clone", "fs_only", None),
    ("tree_clone", "grandchild", None),
    ("tree_clone", "sibling_pair", None),
    ("tree_clone", "vm", "(task): shares memory (CLONE_VM) with pid "),
    ("tree_clone", "sighand", "(task): shares signal handlers (CLONE_SIGHAND) with pid "),
    ("tree_clone", "unshared_middle", "but neither its parent nor an earlier sibling shares it"),
    ("tree_clone", "files_lock", "and holds file locks"),
    ("tree_clone", "files_deleted_dir", None),  # fdshare: a table taker's cwd of a kind 39 fd
    ("tree_clone", "files_deleted_cwd", None),  # fdshare: a table taker's cwd of its maker's
    ("tree_clone", "files_deleted_cwd_fd", None),  # fdshare: a kind 43 in a shared table
    ("tree_clone", "files_fs_deleted_cwd", None),  # fdshare: CLONE_FILES|CLONE_FS, removed cwd
    ("tree_clone", "files_own_cwd", None),  # fdshare: a table taker's own removed cwd
    # sysv (issue 11): System V shared memory the task attaches, state/sysv_shm.cc
    ("sysv", "shm_private", None),
    ("sysv", "shm_key", None),
    ("sysv", "shm_rdonly", None, NOBODY),
    ("sysv", "shm_other", "is attached 2 times, 1 by the task: another process attaches it too"),
    ("sysv", "shm_tree", None),  # sysvtree: state/sysv_ids.h
    ("sysv", "shm_split", "split or partly unmapped; not supported yet"),
    ("sysv", "shm_locked", "is locked in memory (SHM_LOCK); not supported yet"),
    # sem (issue 11): System V message queues and semaphore sets the task used,
    # state/sysv_msg.cc, state/sysv_sem.cc
    ("sysv_ipc", "msg_tree", None),  # sysvtree: made once (state/sysv_ids.h)
    ("sysv_ipc", "sem_tree", None),
]

# Probes whose images restore only into their own pid (threads keep their
# tids, docs/trees.md): a fresh name is EPERM.
# Probes whose children are restored with them: kill -9 takes the whole tree,
# reaped here (a child subreaper), so that every pid is free for the restore.
TREES = {"tree_share", "tree_life", "thread_attrs", "tree_shmem", "unix_tree", "mqueue_tree",
         "unix_dgram", "tree_clone", ("sysv", "shm_tree"), "sysv_ipc",
         ("task", "child"), ("task", "deleted_cwd_child"), ("task", "deleted_cwd_child_fd"),
         ("task", "deleted_fd_child_cwd"), ("task", "deleted_cwd_child_read"),
         ("task", "deleted_cwd_child_nofollow_read"),
         ("task", "deleted_cwd_child_twice_read"),
         ("threads", "pidfd_thread_forked"), ("threads", "pidfd_thread_clone_fs"),
         ("restart", "tree_pause")}  # a probe, or (probe, variant)
# A single-threaded variant of a SAME_PID_ONLY probe: restored under a fresh name too.
ANY_PID = {("thread_attrs", "securebits_user")}
SAME_PID_ONLY = {"threads", "tree_share", "tree_life", "thread_attrs", "tree_shmem", "unix_tree",
                 "timer_thread", "mqueue_tree", "unix_dgram", "tree_clone", ("sysv", "shm_tree"),
                 "sysv_ipc", ("task", "child"), ("task", "deleted_cwd_child"),
                 ("task", "deleted_cwd_child_fd"), ("task", "deleted_fd_child_cwd"),
                 ("task", "deleted_cwd_child_read"), ("task", "deleted_cwd_child_nofollow_read"),
                 ("task", "deleted_cwd_child_twice_read"), ("restart", "tree_pause"),
                 ("restart", "thread_pause")}


def kernel_names_vmas():
    """Whether this kernel names anonymous memory (CONFIG_ANON_VMA_NAME):
    PR_SET_VMA_ANON_NAME on a page of this process."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    addr = libc.mmap(None, 4096, 3, 0x22, -1, 0)  # PROT_READ|WRITE, MAP_PRIVATE|ANONYMOUS
    ok = libc.prctl(0x53564D41, 0, ctypes.c_ulong(addr), ctypes.c_ulong(4096),
                    ctypes.c_char_p(b"crfs")) == 0
    libc.munmap(ctypes.c_void_p(addr), ctypes.c_size_t(4096))
    return ok


# Probes that wait in ONE syscall (tests/probes/restart.c): their ready file
# comes just before it, so the test waits until they are inside it (blocked in
# that syscall number, /proc/PID/syscall; glibc's nanosleep is clock_nanosleep)
# before it reads, checkpoints or signals them: a SIGTERM sent before would be
# handled and the call never end (seen once under load, without a checkpoint).
IN_SYSCALL = {("restart", "pause_eintr"): 34, ("restart", "sigsuspend_eintr"): 130,
              ("restart", "nanosleep_eintr"): 230, ("restart", "sched_idle"): 34,
              ("restart", "tree_pause"): 34,
              ("restart", "thread_pause"): 202}  # the main thread's pthread_join


def in_syscall(pid, nr):
    try:
        return read(f"/proc/{pid}/syscall").split()[0] == str(nr)
    except (OSError, IndexError):
        return False


# Probes that make a terminal of their own and are restored on a new one by
# `crfs restore --shell-job` (TtyProbe); a plain `cp` into a slot is refused.
SHELL_JOBS = {"tty", "tty_nofd"}


# Probes of state some kernels cannot make: skipped there, with the reason.
NEEDS = {"vma_names": (kernel_names_vmas, "the kernel has no CONFIG_ANON_VMA_NAME")}


class Probe(roundtrip_mount_test.Task):
    """One run of one variant, in a directory of its own (checkpoint, kill9,
    restore and cleanup are the mounted tests' Task's)."""

    def __init__(self, test, probe, variant, prefix=()):
        self.test, self.m = test, test.crfs.mnt
        self.dir = tempfile.mkdtemp(prefix=f"crfs-probe-{variant}-")
        if prefix:
            os.chmod(self.dir, 0o777)
        # stderr: a regular file (a pipe would be a reason of its own).
        with open(self.path("stderr"), "w") as err:
            if prefix:  # the restored task opens it again with its own rights
                os.fchmod(err.fileno(), 0o666)
            self.proc = subprocess.Popen(
                [*prefix, os.path.join(BUILD, "tests/probes", "probe_" + probe), variant, self.dir],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                close_fds=True, cwd=self.dir)
        self.pid = self.proc.pid
        wait_for(lambda: os.path.exists(self.path("ready")) or self.proc.poll() is not None,
                 f"probe {variant} to be ready")
        if not os.path.exists(self.path("ready")):
            raise AssertionError(f"probe {variant} failed its setup: {read(self.path('stderr'))}")
        if (probe, variant) in IN_SYSCALL:
            nr = IN_SYSCALL[(probe, variant)]
            wait_for(lambda: in_syscall(self.pid, nr), f"probe {variant} inside syscall {nr}")

    def reason(self):
        return read(f"{self.m}/{self.pid}/reason")

    def verdict(self):
        """SIGTERM, then the probe's result (removed, for the next run)."""
        os.kill(self.pid, signal.SIGTERM)
        if self.proc:
            self.proc.wait(TIMEOUT)
        try:
            wait_for(lambda: os.path.exists(self.path("result")) and not alive(self.pid),
                     "the verdict")
        except AssertionError as e:
            try:
                state = read(f"/proc/{self.pid}/stat").rsplit(")", 1)[1].split()[0]
                # where it waits: the kernel's stack of each thread, and its signals
                for t in os.listdir(f"/proc/{self.pid}/task"):
                    state += (f"; thread {t}: " + read(f"/proc/{self.pid}/task/{t}/stack")
                              .replace("\n", " ") + "syscall " +
                              read(f"/proc/{self.pid}/task/{t}/syscall").strip())
                state += "; " + " ".join(line.strip() for line in
                                         read(f"/proc/{self.pid}/status").splitlines()
                                         if line.startswith(("Sig", "Shd")))
            except OSError:
                state = "gone"
            raise AssertionError(f"{e}: pid {self.pid} state {state}, stderr: "
                                 f"{read(self.path('stderr'))!r}") from None
        out = read(self.path("result")).strip()
        os.unlink(self.path("result"))
        return out


class TtyProbe(Probe):
    """A probe on a terminal of its own (tests/probes/tty.c): the process
    started leads the terminal's session; the probe is it or its child
    (DIR/pid). Restored by `crfs restore --shell-job`, whose relay ends with
    the probe and says the line it wrote on its new terminal."""

    def __init__(self, test, probe, variant, prefix=()):
        super().__init__(test, probe, variant, prefix)
        self.shell = self.proc.pid
        self.shell_proc = None
        self.pid = int(read(self.path("pid")))
        if self.pid != self.shell:  # the shell stays (waited for at cleanup); its job is the probe
            self.shell_proc, self.proc = self.proc, None
        self.cli = None

    def restore(self, img, slot):
        env = dict(os.environ, CRFS_ROOT=self.m)
        # The relay writes its output there; read back by name (self.out.name).
        with open(self.path(f"cli-{slot}.out"), "w+") as self.out:
            self.cli = subprocess.Popen([os.path.join(BUILD, "tools/crfs"), "restore",
                                         "--shell-job", img, slot], stdin=subprocess.DEVNULL,
                                        stdout=self.out, stderr=subprocess.STDOUT, env=env)
        status = f"{self.m}/{slot}/status"
        wait_for(lambda: self.cli.poll() is not None or
                 (os.path.exists(status) and read(status) != "empty\n"), "the shell job restore")
        if not os.path.exists(status):
            self.test.fail("crfs restore --shell-job: " + read(self.out.name))
        self.test.assertTrue(read(status).startswith("restored "),
                             read(status) + read(self.out.name))
        self.pid = int(read(f"{self.m}/{slot}/pid"))
        return self.pid

    def verdict(self):
        out = super().verdict()
        if self.cli:  # the relay ends with the job, with its status
            self.test.assertEqual(self.cli.wait(TIMEOUT), 0, read(self.out.name))
            self.test.assertIn("tty probe done", read(self.out.name))
            self.cli = None
        return out

    def cleanup(self):
        term = self.path("term.pid")  # a line per terminal (not_ctty has two)
        for who in [self.shell] + ([int(t) for t in read(term).split()]
                                   if os.path.exists(term) else []):
            try:
                os.kill(who, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.shell_proc:
            self.shell_proc.wait(TIMEOUT)
        if self.cli:
            self.cli.kill()
            self.cli.wait(TIMEOUT)
        super().cleanup()
        reap()


class Contract(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.crfs = Crfsd()
        ctypes.CDLL(None, use_errno=True).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER: TREES

    def kill_tree(self, p):
        pids = tree_of(p.pid)
        for q in pids:
            os.kill(q, signal.SIGKILL)
        p.proc.wait(TIMEOUT)
        p.proc = None
        wait_for(lambda: reap() or all(pid_free(q) for q in pids), "the tree to be reaped")

    @classmethod
    def tearDownClass(cls):
        cls.crfs.stop()

    def run_probe(self, probe, variant, expect, prefix=()):
        if probe in NEEDS and not NEEDS[probe][0]():
            self.skipTest(NEEDS[probe][1])
        m = self.crfs.mnt
        kind = TtyProbe if probe in SHELL_JOBS else Probe
        p = kind(self, probe, variant, prefix)
        try:
            reason = p.reason()
            if expect is not None:
                self.assertIn(expect, reason)
                r = sh(f"cp {m}/{p.pid}/image {p.path('snap.img')}")
                self.assertNotEqual(r.returncode, 0)
                self.assertIn("Device or resource busy", r.stderr)
                self.assertEqual(p.verdict(), "PASS")
                return
            self.assertEqual(reason, "")
            self.assertEqual(p.verdict(), "PASS")  # without a checkpoint
            p.cleanup()
            p = kind(self, probe, variant, prefix)
            img = p.checkpoint()
            pid = p.pid
            if probe in TREES or (probe, variant) in TREES:
                self.kill_tree(p)
            else:
                kids = descendants(pid)  # a tree's children die with it (the pids restored)
                p.kill9()
                for k in kids:
                    wait_for(lambda: pid_free(k), f"pid {k} to be reaped")
            if os.path.exists(p.path("ipcrm")):  # sysvtree: System V objects outlive the tree
                r = sh(f"ipcrm {read(p.path('ipcrm'))}")  # removed as a user would
                self.assertEqual(r.returncode, 0, r.stderr)
            if probe in SHELL_JOBS:  # cp's stdin is no terminal: the job has none to go on
                r = sh(f"mkdir {m}/plain-{variant} && cp {img} {m}/plain-{variant}/image")
                self.assertIn("Inappropriate ioctl for device", r.stderr)
                self.assertIn("crfs restore --shell-job", read(f"{m}/plain-{variant}/status"))
                os.rmdir(f"{m}/plain-{variant}")
            p.restore(img, str(pid))
            self.assertEqual(p.pid, pid)
            self.assertEqual(p.verdict(), "PASS", "restored into the same pid")
            if (probe in SAME_PID_ONLY or (probe, variant) in SAME_PID_ONLY) and \
                    (probe, variant) not in ANY_PID:
                slot = f"{m}/fresh-{probe}-{variant}"  # task/child, thread_attrs/child: one variant name
                r = sh(f"mkdir {slot} && cp {img} {slot}/image")
                self.assertIn("Operation not permitted", r.stderr)
                return
            p.restore(img, f"fresh-{variant}")
            self.assertEqual(p.verdict(), "PASS", "restored under a fresh name")
        finally:
            p.cleanup()


def make_test(probe, variant, expect, prefix=()):
    return lambda self: self.run_probe(probe, variant, expect, prefix)


for _row in PROBES:
    setattr(Contract, f"test_{_row[0]}_{_row[1]}", make_test(*_row))


if __name__ == "__main__":
    BUILD = roundtrip_mount_test.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
