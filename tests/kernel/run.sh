#!/bin/bash
# Kernel-module tests: boots Debian's stock kernel under qemu (TCG) with
# crfs.ko and the guest tests in an initramfs, and passes only if the guest
# reports that every test passed.
#
#   tests/kernel/run.sh            (as root; Debian 12 with its apt archive)
#
# Environment:
#   CRFS_KERNEL_CACHE  downloaded and unpacked kernels (default /var/cache/crfs-kernel)
#   CRFS_BOOT_TIMEOUT  seconds the guest may run (default 600)
#   CRFS_SKIP_CHECKPATCH  set to skip checkpatch.pl (fetched from linux-source)
#   CRFS_SKIP_BENCH    set to skip the benchmark boot
#   CRFS_CRFSD         the crfsd binary to run in the guest (default: build it)
#
# The kernel is whatever linux-image-amd64 names now; its headers are taken
# at exactly the same package version. Nothing is installed into /boot.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cache=${CRFS_KERNEL_CACHE:-/var/cache/crfs-kernel}
boot_timeout=${CRFS_BOOT_TIMEOUT:-600}
work=
guest_pid=
watchdog_pid=

log() { echo "run.sh: $*" >&2; }
die() { log "$*"; exit 1; }

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

# --- host tools -------------------------------------------------------------
apt_updated=0
apt_update() {
	[ $apt_updated = 1 ] && return 0
	apt_updated=1
	timeout 300 apt-get update -qq || log "apt-get update failed; using the lists we have"
}

need_pkgs=(qemu-system-x86 busybox-static cpio gcc-12 gcc make libc6-dev linux-libc-dev
	binutils libelf1 xz-utils)
[ -n "${CRFS_SKIP_CHECKPATCH:-}" ] || need_pkgs+=(perl)
# crfsd, unless given: the project's own build dependencies.
[ -n "${CRFS_CRFSD:-}" ] || need_pkgs+=(cmake g++ pkg-config libfuse3-dev libproc2-dev
	libboost-filesystem-dev libgtest-dev)
missing=()
for p in "${need_pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	apt_update
	log "installing ${missing[*]}"
	timeout 900 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- the kernel: resolve the current ABI, fetch image + headers ------------
apt_update
image_pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
	awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
[ -n "$image_pkg" ] || die "cannot resolve linux-image-amd64"
kver=${image_pkg#linux-image-}
version=$(apt-cache policy "$image_pkg" | awk '/Candidate:/ { print $2 }')
[ -n "$version" ] && [ "$version" != "(none)" ] || die "no candidate for $image_pkg"
headers_pkg=linux-headers-$kver
common_pkg=$(apt-cache depends "$headers_pkg=$version" 2>/dev/null |
	awk '/Depends: linux-headers-.*-common/ { print $2; exit }')
kbuild_pkg=$(apt-cache depends "$headers_pkg=$version" 2>/dev/null |
	awk '/Depends: linux-kbuild-/ { print $2; exit }')
[ -n "$common_pkg" ] && [ -n "$kbuild_pkg" ] || die "cannot resolve the dependencies of $headers_pkg"
log "kernel $image_pkg $version (headers: $headers_pkg $common_pkg $kbuild_pkg)"

kdir_cache=$cache/${kver}_$version
root=$kdir_cache/root
if [ ! -e "$kdir_cache/complete" ]; then
	rm -rf "$kdir_cache"
	mkdir -p "$kdir_cache/deb" "$root"
	(cd "$kdir_cache/deb" && timeout 600 apt-get download -q \
		"$image_pkg=$version" "$headers_pkg=$version" "$common_pkg=$version" \
		"$kbuild_pkg=$version" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2) ||
		die "apt-get download failed"
	for deb in "$kdir_cache"/deb/*.deb; do dpkg -x "$deb" "$root"; done
	# The headers' Makefile includes the common tree by absolute path.
	sed -i "s|/usr/src/|$root/usr/src/|g" "$root/usr/src/$headers_pkg/Makefile"
	rm -rf "$kdir_cache/deb"
	touch "$kdir_cache/complete"
fi
kdir=$root/usr/src/$headers_pkg
vmlinuz=$root/boot/vmlinuz-$kver
[ -f "$vmlinuz" ] && [ -f "$kdir/Makefile" ] || die "incomplete kernel cache in $kdir_cache"

# --- build: module and guest programs ---------------------------------------
work=$(mktemp -d /tmp/crfs-kernel.XXXXXX)
mkdir -p "$work/src"
mkdir -p "$work/src/tests/kernel"
cp -r "$src/kmod" "$src/include" "$work/src/"
cp -r "$src/tests/kernel/api_module" "$work/src/tests/kernel/"
log "building crfs.ko against $kdir"
make -s -C "$work/src/kmod" KDIR="$kdir" >"$work/kbuild.log" 2>&1 ||
	{ cat "$work/kbuild.log" >&2; die "module build failed"; }
grep -E 'warning|error' "$work/kbuild.log" >&2 && die "module build has warnings"

make -s -C "$work/src/tests/kernel/api_module" KDIR="$kdir" \
	CRFS_SYMVERS="$work/src/kmod/Module.symvers" >"$work/kbuild-api.log" 2>&1 ||
	{ cat "$work/kbuild-api.log" >&2; die "API test module build failed"; }
# With CONFIG_CRFS_NOCR off, the API must compile to nothing.
if nm -u "$work/src/tests/kernel/api_module/nocr_off.o" | grep crfs_ >&2; then
	die "the nocr API with its config off still references crfs.ko"
fi

# checkpatch.pl comes from Debian's linux-source package of the same version.
if [ -z "${CRFS_SKIP_CHECKPATCH:-}" ]; then
	cp_dir=$cache/checkpatch_$version
	if [ ! -e "$cp_dir/complete" ]; then
		rm -rf "$cp_dir"
		mkdir -p "$cp_dir"
		src_pkg=linux-source-${kbuild_pkg#linux-kbuild-}
		(cd "$cp_dir" && timeout 600 apt-get download -q "$src_pkg=$version" 2>&1 |
			grep -v '^W: Download is performed unsandboxed' >&2) ||
			die "apt-get download $src_pkg failed"
		dpkg-deb --fsys-tarfile "$cp_dir"/*.deb |
			tar -xO --wildcards './usr/src/linux-source-*.tar.xz' |
			tar -xJ -C "$cp_dir" --strip-components=1 --wildcards \
				'*/scripts/checkpatch.pl' '*/scripts/spelling.txt' \
				'*/scripts/const_structs.checkpatch'
		rm -f "$cp_dir"/*.deb
		touch "$cp_dir/complete"
	fi
	log "checkpatch"
	# Sources only: a build in the tree leaves generated *.mod.c files.
	(cd "$src" && perl "$cp_dir/scripts/checkpatch.pl" --no-tree --strict --terse \
		--no-summary -f $(ls kmod/*.[ch] tests/kernel/api_module/*.c | grep -v '\.mod\.c$') \
		kmod/include/linux/crfs_nocr.h include/crfs/kdev.h kmod/Kbuild kmod/Makefile \
		tests/kernel/api_module/Kbuild tests/kernel/api_module/Makefile) >&2 ||
		die "checkpatch found problems"
fi

cflags=(-std=gnu11 -O2 -Wall -Wextra -Werror -static -pthread -I"$src/include" -I"$src/lib")
ir=$work/initramfs
mkdir -p "$ir/bin" "$ir/proc" "$ir/sys" "$ir/dev" "$ir/tmp" "$ir/crfs" "$ir/etc"
gcc "${cflags[@]}" -o "$ir/bin/kmod_test" "$src/tests/kernel/kmod_test.c" "$src/lib/crfs_kdev.c" \
	"$src/lib/nocr.c" "$src/lib/nocr_kdev.c"
gcc "${cflags[@]}" -o "$ir/bin/kmod_bench" "$src/bench/kmod_bench.c" "$src/lib/crfs_kdev.c"

# --- initramfs ----------------------------------------------------------------
cp /bin/busybox "$ir/bin/busybox"
cp "$work/src/kmod/crfs.ko" "$ir/crfs.ko"
cp "$work/src/tests/kernel/api_module/crfs_api_test.ko" "$ir/crfs_api_test.ko"
fuse_ko=$(find "$root/lib/modules/$kver" -name 'fuse.ko*' | head -n 1)
[ -n "$fuse_ko" ] || die "no fuse.ko in $image_pkg"
case $fuse_ko in
*.xz) xz -dc "$fuse_ko" >"$ir/fuse.ko" ;;
*) cp "$fuse_ko" "$ir/fuse.ko" ;;
esac
# crfsd, dynamically linked (libproc2 has no static libsystemd to go with
# it): the binary, the shared libraries ldd names, and the loader.
crfsd=${CRFS_CRFSD:-}
if [ -z "$crfsd" ]; then
	log "building crfsd"
	cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$work/cmake.log" 2>&1 ||
		{ cat "$work/cmake.log" >&2; die "cmake failed"; }
	make -s -C "$work/build" -j"$(nproc)" crfsd >>"$work/cmake.log" 2>&1 ||
		{ cat "$work/cmake.log" >&2; die "crfsd build failed"; }
	crfsd=$work/build/fs/crfsd
fi
[ -x "$crfsd" ] || die "no crfsd at $crfsd"
cp "$crfsd" "$ir/bin/crfsd"
for lib in $(ldd "$crfsd" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
	mkdir -p "$ir$(dirname "$lib")"
	cp -L "$lib" "$ir$lib"
done
echo 'root:x:0:0:root:/:/bin/sh' >"$ir/etc/passwd"
cp "$src/tests/kernel/init.sh" "$ir/init"
chmod +x "$ir/init"
(cd "$ir" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.gz"
expected=$(grep -c '^run ' "$src/tests/kernel/init.sh")

# --- boot -----------------------------------------------------------------------
# boot CONSOLE_LOG TIMEOUT KERNEL_ARGS QEMU_ARGS...: runs the guest to its
# poweroff or for at most TIMEOUT seconds, streaming its console. qemu never
# outlives this script: the wait loop below lets the INT/TERM trap run within
# a second, and a watchdog kills qemu if the script is killed outright.
# A guest whose kernel has not reached our /init (its 'CRFS-INIT: up' line)
# within init_timeout seconds is stopped early and `no_init` is set: once in a
# CI run, under load, TCG sat after the firmware's "Booting from ROM" with no
# kernel output for the whole 600 s; that is the emulator, not crfs.ko.
init_timeout=${CRFS_INIT_TIMEOUT:-240}
boot() {
	local console=$1 limit=$2 append=$3
	shift 3
	no_init=
	: >"$console"
	qemu-system-x86_64 -accel tcg -cpu max -m 1024 "$@" \
		-nographic -no-reboot -kernel "$vmlinuz" -initrd "$work/initrd.gz" \
		-append "console=ttyS0 panic=-1 quiet $append" </dev/null >"$console" 2>&1 &
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
	wait "$tail_pid" 2>/dev/null || true
	guest_pid=
	kill "$watchdog_pid" 2>/dev/null || true
	wait "$watchdog_pid" 2>/dev/null || true
	watchdog_pid=
}

# The tests boot at most twice, and only a kernel that never reached /init is
# booted again (logged); any failure after /init started fails the test.
for attempt in 1 2; do
	log "booting $kver under qemu (TCG), timeout ${boot_timeout}s (attempt $attempt)"
	boot "$work/console.log" "$boot_timeout" slab_nomerge -smp 2
	[ -n "$no_init" ] || break
done
[ -z "$no_init" ] || die "the guest kernel did not reach /init in two boots"
summary=$(tr -d '\r' <"$work/console.log" | grep -a '^CRFS-KERNEL-TESTS: ' | tail -n 1)
[ -n "$summary" ] || die "the guest printed no test summary"
[ "$summary" = "CRFS-KERNEL-TESTS: $expected passed, 0 failed" ] ||
	die "guest tests failed: '$summary' (expected $expected passed, 0 failed)"
log "all $expected guest tests passed"

# The benchmark gets a boot of its own with -icount: guest time advances by
# executed instructions (1 ns each), so the ratios do not depend on the load
# of the host. Informative: it cannot fail the test, but it is bounded.
if [ -z "${CRFS_SKIP_BENCH:-}" ]; then
	log "benchmark boot (-icount shift=0), timeout ${boot_timeout}s"
	boot "$work/bench.log" "$boot_timeout" crfs.bench -smp 1 -icount shift=0,sleep=off
	grep -q '^BENCH ratio' <(tr -d '\r' <"$work/bench.log") || log "the benchmark printed no result"
fi
exit 0
