# Shared by the scripts that boot a kernel under qemu (run.sh: Debian's
# stock kernel with crfs.ko; probes.sh: a kernel built for the probes this
# host's kernel cannot run). Sourced, not run. The caller sets `work` (its
# temporary folder, removed at exit), `vmlinuz` and `initrd` before boot().
#
# Environment: CRFS_KERNEL_CACHE, CRFS_INIT_TIMEOUT (see run.sh).

cache=${CRFS_KERNEL_CACHE:-/var/cache/crfs-kernel}
work=
guest_pid=
watchdog_pid=

log() { echo "${0##*/}: $*" >&2; }
die() {
	log "$*"
	exit 1
}

cleanup() {
	if [ -n "$guest_pid" ] && kill -0 "$guest_pid" 2>/dev/null; then
		kill -TERM "$guest_pid" 2>/dev/null || true
		sleep 1
		kill -KILL "$guest_pid" 2>/dev/null || true
		wait "$guest_pid" 2>/dev/null || true
	fi
	[ -n "$watchdog_pid" ] && kill "$watchdog_pid" 2>/dev/null || true
	[ -n "$work" ] && rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

[ "$(id -u)" = 0 ] || die "must run as root (apt-get, module build tree, guest as root)"
export DEBIAN_FRONTEND=noninteractive LC_ALL=C

apt_updated=0
apt_update() {
	[ $apt_updated = 1 ] && return 0
	apt_updated=1
	timeout 300 apt-get update -qq || log "apt-get update failed; using the lists we have"
}

# need_packages PKG...: installs those that are not installed.
need_packages() {
	local p missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	[ ${#missing[@]} -gt 0 ] || return 0
	apt_update
	log "installing ${missing[*]}"
	timeout 900 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# apt_fetch DIR PKG=VERSION...: apt-get download into DIR.
apt_fetch() {
	local dir=$1
	shift
	(cd "$dir" && timeout 600 apt-get download -q "$@" 2>&1 |
		grep -v '^W: Download is performed unsandboxed' >&2) || die "apt-get download $* failed"
}

# add_crfsd SRC IR: crfsd and its checkpoint worker crfs-ckpt (which crfsd
# runs from its own directory) into the initramfs IR's /bin, dynamically
# linked (libproc2 has no static libsystemd to go with it): the binaries, the
# shared libraries ldd names, and the loader. CRFS_CRFSD names crfsd; without
# it, crfsd is built with CMake in $work/build.
add_crfsd() {
	local src=$1 ir=$2 crfsd=${CRFS_CRFSD:-} lib bin
	if [ -z "$crfsd" ]; then
		log "building crfsd"
		cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$work/cmake.log" 2>&1 ||
			{ cat "$work/cmake.log" >&2; die "cmake failed"; }
		make -s -C "$work/build" -j"$(nproc)" crfsd >>"$work/cmake.log" 2>&1 ||
			{ cat "$work/cmake.log" >&2; die "crfsd build failed"; }
		crfsd=$work/build/fs/crfsd
	fi
	[ -x "$crfsd" ] || die "no crfsd at $crfsd"
	[ -x "$(dirname "$crfsd")/crfs-ckpt" ] || die "no crfs-ckpt next to $crfsd"
	mkdir -p "$ir/bin"
	for bin in "$crfsd" "$(dirname "$crfsd")/crfs-ckpt"; do
		cp "$bin" "$ir/bin/"
		for lib in $(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
			mkdir -p "$ir$(dirname "$lib")"
			cp -L "$lib" "$ir$lib"
		done
	done
}

# boot CONSOLE_LOG TIMEOUT KERNEL_ARGS QEMU_ARGS...: runs the guest to its
# poweroff or for at most TIMEOUT seconds, streaming its console. qemu never
# outlives the script: the wait loop below lets the INT/TERM trap run within
# a second, and a watchdog kills qemu if the script is killed outright.
# A guest whose kernel has not reached its /init (the 'CRFS-INIT: up' line)
# within init_timeout seconds is stopped early and `no_init` is set: once in a
# CI run, under load, TCG sat after the firmware's "Booting from ROM" with no
# kernel output for the whole 600 s; that is the emulator, not crfs. A guest
# that ends before its /init ran sets it too: under load the kernel's IO-APIC
# timer check failed under TCG ("IO-APIC + timer doesn't work!", a panic):
# the guest boots with no_timer_check, which skips that check.
init_timeout=${CRFS_INIT_TIMEOUT:-240}
boot() {
	local console=$1 limit=$2 append=$3
	shift 3
	no_init=
	: >"$console"
	qemu-system-x86_64 -accel tcg -cpu max -m 1024 "$@" \
		-nographic -no-reboot -kernel "$vmlinuz" -initrd "$initrd" \
		-append "console=ttyS0 panic=-1 quiet no_timer_check $append" </dev/null >"$console" 2>&1 &
	guest_pid=$!
	(while kill -0 $$ 2>/dev/null; do sleep 1; done
		kill -KILL "$guest_pid" 2>/dev/null
		rm -rf "$work") &
	watchdog_pid=$!
	tail -n +1 -f --pid="$guest_pid" "$console" | tr -d '\r' &
	local tail_pid=$! deadline=$((SECONDS + limit)) init_deadline=$((SECONDS + init_timeout))
	while kill -0 "$guest_pid" 2>/dev/null; do
		if [ $SECONDS -ge $init_deadline ] && ! grep -qa 'CRFS-INIT: up' "$console"; then
			log "the guest kernel did not reach /init within ${init_timeout}s; stopping it"
			no_init=1
			kill -TERM "$guest_pid" 2>/dev/null || true
			sleep 2
			kill -KILL "$guest_pid" 2>/dev/null || true
			break
		fi
		if [ $SECONDS -ge $deadline ]; then
			log "guest did not finish within ${limit}s; killing it"
			kill -TERM "$guest_pid" 2>/dev/null || true
			sleep 2
			kill -KILL "$guest_pid" 2>/dev/null || true
			break
		fi
		sleep 1
	done
	wait "$guest_pid" 2>/dev/null || true
	if [ -z "$no_init" ] && ! grep -qa 'CRFS-INIT: up' "$console"; then
		log "the guest ended before its /init ran"
		no_init=1
	fi
	wait "$tail_pid" 2>/dev/null || true
	guest_pid=
	kill "$watchdog_pid" 2>/dev/null || true
	wait "$watchdog_pid" 2>/dev/null || true
	watchdog_pid=
}

# boot_tests CONSOLE_LOG TIMEOUT KERNEL_ARGS QEMU_ARGS...: boot() at most
# twice; only a kernel that never reached /init is booted again (logged), any
# failure after /init started is the test's.
boot_tests() {
	local attempt
	for attempt in 1 2; do
		log "booting $(basename "$vmlinuz") under qemu (TCG), timeout ${2}s (attempt $attempt)"
		boot "$@"
		[ -n "$no_init" ] || break
	done
	[ -z "$no_init" ] || die "the guest kernel did not reach /init in two boots"
}

# summary_passed CONSOLE_LOG PREFIX EXPECTED: the guest's last "PREFIX: N
# passed, M failed" line must be "EXPECTED passed, 0 failed".
summary_passed() {
	local summary
	summary=$(tr -d '\r' <"$1" | grep -a "^$2: " | tail -n 1)
	[ -n "$summary" ] || die "the guest printed no test summary"
	[ "$summary" = "$2: $3 passed, 0 failed" ] ||
		die "guest tests failed: '$summary' (expected $3 passed, 0 failed)"
	log "all $3 guest tests passed"
}
