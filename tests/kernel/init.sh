#!/bin/busybox sh
# /init of the crfs kernel test guest; tests/kernel/run.sh packs it into the
# initramfs with busybox, crfs.ko, fuse.ko and the static test programs.
# Every test is one `run` line (run.sh counts them); the last line printed is
# the summary that run.sh checks. Every wait here is bounded.
. /guest_setup.sh

pass=0
fail=0
run() {
	name=$1
	shift
	echo "=== $name"
	if "$@"; then
		echo "PASS $name"
		pass=$((pass + 1))
	else
		echo "FAIL $name"
		fail=$((fail + 1))
	fi
}

loaded() { grep -q '^crfs ' /proc/modules; }

t_load() {
	insmod /crfs.ko || return 1
	loaded || { echo "not in /proc/modules"; return 1; }
	i=0
	while [ ! -c /dev/crfs ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
	[ -c /dev/crfs ] || { echo "no /dev/crfs"; return 1; }
}

t_unload() {
	rmmod crfs || return 1
	! loaded || { echo "still in /proc/modules"; return 1; }
	[ ! -e /dev/crfs ] || { echo "/dev/crfs left behind"; return 1; }
}

kernel_errors() {
	dmesg | grep -E 'BUG|Oops|WARNING|Call Trace|Objects remaining|general protection|refcount_t'
}

# A process carrying marks from every source while the module goes away.
t_unload_live() {
	rm -f /tmp/ready /tmp/ready.done
	kmod_test hold /tmp/ready &
	hp=$!
	i=0
	while [ ! -s /tmp/ready ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	ok=1
	[ "$(cat /tmp/ready 2>/dev/null)" = R ] || { echo "holder not ready"; ok=0; }
	before=$(grep -c . /proc/modules)
	rmmod crfs || { echo "rmmod with live marks failed"; ok=0; }
	kernel_errors && ok=0
	t_load || ok=0
	n=$(kmod_test count $hp)
	[ "$n" = 0 ] || { echo "holder has $n marks after reload"; ok=0; }
	# its waiter now returns from futex_lock_pi, probed by the old module
	kill -USR1 $hp
	i=0
	while [ ! -s /tmp/ready.done ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	[ "$(cat /tmp/ready.done 2>/dev/null)" = P ] || { echo "holder's waiter failed"; ok=0; }
	kill $hp 2>/dev/null
	wait $hp
	kernel_errors && ok=0
	[ $ok = 1 ]
}

# crfsd on /crfs, merging the module's marks. It holds /dev/crfs open, so it
# stops before the unload tests.
t_crfsd_start() {
	mkdir -p /crfs /tmp/crfsd
	crfsd -f -o state_dir=/tmp/crfsd /crfs >/tmp/crfsd.log 2>&1 &
	crfsd_pid=$!
	i=0
	while ! grep -q ' /crfs fuse' /proc/mounts && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	grep -q ' /crfs fuse' /proc/mounts || { cat /tmp/crfsd.log; return 1; }
	grep 'kernel marks' /tmp/crfsd.log
	grep -q 'kernel marks: merging' /tmp/crfsd.log
}

# The shell's view: cat of reason, nocr and image of a process that carries
# a mark from every source.
t_mounted_cat() {
	rm -f /tmp/cat.ready /tmp/cat.ready.done
	kmod_test hold /tmp/cat.ready &
	hp=$!
	i=0
	while [ ! -s /tmp/cat.ready ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	ok=1
	echo "\$ cat /crfs/$hp/reason"
	cat /crfs/$hp/reason
	for line in "nocr: CR: everything" \
		"kernel: CR: sys_remap_file_pages not supported yet." \
		"kernel: CR: PI futexes not supported yet." \
		"kernel: CR: io_uring not supported yet."; do
		grep -qxF "$line" /crfs/$hp/reason || { echo "missing: $line"; ok=0; }
	done
	[ "$(cat /crfs/$hp/nocr)" = 1 ] || { echo "nocr is not 1"; ok=0; }
	echo "\$ cat /crfs/$hp/image >/dev/null"
	if cat /crfs/$hp/image >/dev/null 2>/tmp/cat.err; then
		echo "image of a marked process was readable"
		ok=0
	fi
	cat /tmp/cat.err
	grep -q 'Device or resource busy' /tmp/cat.err || ok=0
	kill -USR1 $hp
	i=0
	while [ ! -s /tmp/cat.ready.done ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	kill $hp 2>/dev/null
	wait $hp
	[ $ok = 1 ]
}

t_crfsd_stop() {
	[ -n "$crfsd_pid" ] || return 1
	kill -TERM $crfsd_pid
	i=0
	while kill -0 $crfsd_pid 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	if kill -0 $crfsd_pid 2>/dev/null; then
		echo "crfsd did not stop"
		kill -KILL $crfsd_pid
		umount -l /crfs
		return 1
	fi
	wait $crfsd_pid
	! grep -q ' /crfs fuse' /proc/mounts
}

# crfs_api_test.ko runs its checks of the exported API at load.
t_kernel_api() {
	insmod /crfs_api_test.ko || { dmesg | grep crfs_api_test; return 1; }
	rmmod crfs_api_test
}

t_no_kernel_errors() {
	! kernel_errors
}

echo "guest kernel $(uname -r), $(grep -c ^processor /proc/cpuinfo) cpus"

# The benchmark boot (run.sh boots with crfs.bench and qemu -icount).
if grep -qw crfs.bench /proc/cmdline; then
	echo "=== benchmark (informative, not pass/fail)"
	kmod_bench /crfs.ko 5 || echo "benchmark could not run"
	poweroff -f
fi
insmod /fuse.ko || echo "fuse.ko did not load"

run load t_load
run unload t_unload
run reload t_load
run hooks kmod_test hooks
run kernel_api t_kernel_api
run remap_file_pages kmod_test remap
run pi_futex kmod_test pi
run pi_futex_contended kmod_test pi_contended
run io_uring kmod_test uring
run isolation kmod_test isolation
run pid_reuse kmod_test pid_reuse
run api kmod_test api
run ptrace_rights kmod_test perm
run exit_frees kmod_test exit_frees
run crfsd_start t_crfsd_start
run mounted_remap_file_pages kmod_test mounted_remap
run mounted_pi_futex_io_uring kmod_test mounted_pi
run mounted_libcrfs kmod_test mounted_libcrfs
run mounted_cat t_mounted_cat
run crfsd_stop t_crfsd_stop
run stress kmod_test stress 20
run unload_with_live_marks t_unload_live
run unload_again t_unload

run no_kernel_errors t_no_kernel_errors
dmesg | grep -i crfs
echo "CRFS-KERNEL-TESTS: $pass passed, $fail failed"
poweroff -f
