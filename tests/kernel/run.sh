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
boot_timeout=${CRFS_BOOT_TIMEOUT:-600}
. "$src/tests/kernel/lib.sh"

# --- host tools -------------------------------------------------------------
need_pkgs=(qemu-system-x86 busybox-static cpio gcc-12 gcc make libc6-dev linux-libc-dev
	binutils libelf1 xz-utils)
[ -n "${CRFS_SKIP_CHECKPATCH:-}" ] || need_pkgs+=(perl)
# crfsd, unless given: the project's own build dependencies.
[ -n "${CRFS_CRFSD:-}" ] || need_pkgs+=(cmake g++ pkg-config libfuse3-dev libproc2-dev
	libboost-filesystem-dev libgtest-dev)
need_packages "${need_pkgs[@]}"

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
	apt_fetch "$kdir_cache/deb" "$image_pkg=$version" "$headers_pkg=$version" \
		"$common_pkg=$version" "$kbuild_pkg=$version"
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
		apt_fetch "$cp_dir" "$src_pkg=$version"
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
add_crfsd "$src" "$ir"
echo 'root:x:0:0:root:/:/bin/sh' >"$ir/etc/passwd"
cp "$src/tests/kernel/init.sh" "$ir/init"
chmod +x "$ir/init"
cp "$src/tests/kernel/guest_setup.sh" "$ir/guest_setup.sh"
(cd "$ir" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.gz"
expected=$(grep -c '^run ' "$src/tests/kernel/init.sh")

# --- boot -----------------------------------------------------------------------
initrd=$work/initrd.gz
boot_tests "$work/console.log" "$boot_timeout" slab_nomerge -smp 2
summary_passed "$work/console.log" CRFS-KERNEL-TESTS "$expected"

# The benchmark gets a boot of its own with -icount: guest time advances by
# executed instructions (1 ns each), so the ratios do not depend on the load
# of the host. Informative: it cannot fail the test, but it is bounded.
if [ -z "${CRFS_SKIP_BENCH:-}" ]; then
	log "benchmark boot (-icount shift=0), timeout ${boot_timeout}s"
	boot "$work/bench.log" "$boot_timeout" crfs.bench -smp 1 -icount shift=0,sleep=off
	grep -q '^BENCH ratio' <(tr -d '\r' <"$work/bench.log") || log "the benchmark printed no result"
fi
exit 0
