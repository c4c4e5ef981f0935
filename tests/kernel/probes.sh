#!/bin/bash
# The probes a kernel must be configured for (tests/probes/run_probes.py
# NEEDS: today vma_names, CONFIG_ANON_VMA_NAME), run where they can run: in
# a qemu guest (TCG) whose kernel is built here from Debian's linux-source
# package with tests/kernel/probes.config, since no Debian kernel has
# CONFIG_ANON_VMA_NAME. crfsd and the static probes run in the guest under
# tests/probes/guest_probes.sh; the test passes only if every row passes.
#
#   tests/kernel/probes.sh          (as root; Debian 12 with its apt archive)
#
# Environment:
#   CRFS_KERNEL_CACHE    built kernels (default /var/cache/crfs-kernel)
#   CRFS_PROBES_SOURCE   the source package (default linux-source-6.12)
#   CRFS_BOOT_TIMEOUT    seconds the guest may run (default 600)
#   CRFS_CRFSD           the crfsd binary to run in the guest (default: build it)
#   CRFS_PROBES_KERNEL_TREE  a folder to build the kernel in, kept (default: a
#                        temporary one): a changed probes.config then rebuilds
#                        incrementally
#
# The kernel is built once per source version and config (a few minutes on
# two cores) and kept in the cache as probes_VERSION/bzImage-HASH (of the
# fragment's CONFIG_ lines).
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
boot_timeout=${CRFS_BOOT_TIMEOUT:-600}
. "$src/tests/kernel/lib.sh"

need_pkgs=(qemu-system-x86 busybox-static cpio gcc make libc6-dev binutils xz-utils flex bison
	bc libelf-dev python3)
[ -n "${CRFS_CRFSD:-}" ] || need_pkgs+=(cmake g++ pkg-config libfuse3-dev libproc2-dev
	libboost-filesystem-dev libgtest-dev)
need_packages "${need_pkgs[@]}"
work=$(mktemp -d /tmp/crfs-probes.XXXXXX)

# --- the rows: every probe run_probes.py has a kernel need for --------------
/usr/bin/python3 "$src/tests/probes/guest_rows.py" >"$work/rows"
expected=$(grep -c . "$work/rows")
log "$expected probe rows: $(cut -f1,2 --output-delimiter=/ "$work/rows" | tr '\n' ' ')"

# --- the kernel -----------------------------------------------------------------
apt_update
src_pkg=${CRFS_PROBES_SOURCE:-linux-source-6.12}
version=$(apt-cache policy "$src_pkg" | awk '/Candidate:/ { print $2 }')
[ -n "$version" ] && [ "$version" != "(none)" ] || die "no candidate for $src_pkg"
config=$src/tests/kernel/probes.config
vmlinuz=$cache/probes_$version/bzImage-$(grep '^CONFIG_' "$config" | sha256sum | cut -c1-16)
if [ ! -f "$vmlinuz" ]; then
	log "building a kernel from $src_pkg $version with $config"
	linux=${CRFS_PROBES_KERNEL_TREE:-$work/linux}
	if [ ! -f "$linux/Makefile" ]; then
		mkdir -p "$linux"
		apt_fetch "$work" "$src_pkg=$version"
		dpkg-deb --fsys-tarfile "$work"/"$src_pkg"_*.deb |
			tar -xO --wildcards './usr/src/linux-source-*.tar.xz' |
			tar -xJ -C "$linux" --strip-components=1
		rm -f "$work"/*.deb
	fi
	klog=$work/kernel-build.log
	{ make -C "$linux" tinyconfig &&
		(cd "$linux" && scripts/kconfig/merge_config.sh -m .config "$config") &&
		make -C "$linux" olddefconfig; } >"$klog" 2>&1 || {
		tail -n 30 "$klog" >&2
		die "kernel configuration failed"
	}
	# Each line of the fragment must have survived olddefconfig (a missing
	# dependency drops an option silently).
	while read -r line; do
		case $line in CONFIG_*) grep -qxF "$line" "$linux/.config" || die "$line did not stick" ;; esac
	done <"$config"
	make -C "$linux" -j"$(nproc)" bzImage >>"$klog" 2>&1 || {
		tail -n 30 "$klog" >&2
		die "kernel build failed"
	}
	mkdir -p "$(dirname "$vmlinuz")"
	cp "$linux/arch/x86/boot/bzImage" "$vmlinuz.tmp"
	mv "$vmlinuz.tmp" "$vmlinuz"
	[ -n "${CRFS_PROBES_KERNEL_TREE:-}" ] || rm -rf "$linux"
fi

# --- initramfs: busybox, crfsd, the static probes, the driver ------------------
ir=$work/initramfs
mkdir -p "$ir/bin" "$ir/proc" "$ir/sys" "$ir/dev" "$ir/tmp" "$ir/crfs" "$ir/etc"
cp /bin/busybox "$ir/bin/busybox"
add_crfsd "$src" "$ir"
for probe in $(cut -f1 "$work/rows" | sort -u); do
	gcc -std=gnu11 -O1 -Wall -Wextra -Werror -static -pthread -o "$ir/bin/probe_$probe" \
		"$src/tests/probes/$probe.c"
done
cp "$work/rows" "$ir/rows"
cp "$src/tests/probes/guest_probes.sh" "$ir/guest_probes.sh"
echo 'root:x:0:0:root:/:/bin/sh' >"$ir/etc/passwd"
cp "$src/tests/kernel/probes_init.sh" "$ir/init"
chmod +x "$ir/init"
cp "$src/tests/kernel/guest_setup.sh" "$ir/guest_setup.sh"
initrd=$work/initrd.gz
(cd "$ir" && find . | cpio -o -H newc --quiet | gzip -1) >"$initrd"

# --- boot ---------------------------------------------------------------------------
started=$SECONDS
boot_tests "$work/console.log" "$boot_timeout" "" -smp 1
log "guest ran $((SECONDS - started)) s"
summary_passed "$work/console.log" CRFS-PROBES "$expected"
