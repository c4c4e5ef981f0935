#!/bin/bash
# `cmake --install` into a temporary DESTDIR holds everything a user needs,
# and each piece works from there: crfs --version, crfsd, libcrfs through
# pkg-config (a program built and run against it), the man pages (found by
# man, and by systemd-analyze verify for the unit's Documentation=), the
# unit, and the bash completion (subcommands, pids, slot names).
# usage: install_test.sh BUILD_DIR PREFIX VERSION
set -euo pipefail
build=$1 prefix=$2 version=$3
dest=$(mktemp -d /tmp/crfs-install-XXXXXX)
trap 'rm -rf "$dest"' EXIT
DESTDIR=$dest cmake --install "$build" >/dev/null
p=$dest$prefix
fail() {
	echo "FAIL: $*"
	exit 1
}

for f in bin/crfs sbin/crfsd sbin/crfs-ckpt lib/libcrfs.so lib/libcrfs.a include/crfs/nocr.h \
	lib/pkgconfig/crfs.pc share/man/man1/crfs.1 share/man/man3/crfs-nocr.3 \
	share/man/man5/crfs.5 share/man/man8/crfsd.8 lib/systemd/system/crfs.service \
	share/bash-completion/completions/crfs; do
	[ -e "$p/$f" ] || fail "not installed: $prefix/$f"
done
echo "ok: every file installed"

[ "$("$p/bin/crfs" --version)" = "crfs $version" ] || fail "crfs --version: $("$p/bin/crfs" --version)"
# (The ASan build's crfsd leaks its fuse_args on --version: fs/main.cc.)
ASAN_OPTIONS=${ASAN_OPTIONS:-}:detect_leaks=0 "$p/sbin/crfsd" --version | grep -q '^crfsd' ||
	fail "crfsd --version"
echo "ok: crfs --version is $version"

# libcrfs through pkg-config, from the DESTDIR (the .pc file is relocatable).
export PKG_CONFIG_PATH=$p/lib/pkgconfig
[ "$(pkg-config --modversion crfs)" = "$version" ] || fail "pkg-config --modversion crfs"
cat >"$dest/t.c" <<'C'
#include <crfs/nocr.h>
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
int main(void) {
    int rc = crfs_task_nocr(getpid());
    printf("%d\n", rc);
    return rc == -ENOENT ? 0 : 1;
}
C
# shellcheck disable=SC2046,SC2086
cc ${CRFS_TEST_CFLAGS:-} -o "$dest/t" "$dest/t.c" $(pkg-config --cflags --libs crfs) || fail "build against libcrfs"
out=$(CRFS_ROOT=$dest/no-mount LD_LIBRARY_PATH=$p/lib "$dest/t") ||
	fail "crfs_task_nocr without a mount: $out (want -ENOENT)"
echo "ok: a program built with pkg-config crfs links and runs"

# man finds each page; the unit verifies offline, its Documentation= included.
export MANPATH=$p/share/man
for page in crfs.1 crfs-nocr.3 crfs.5 crfsd.8; do
	man -w "${page%.*}" | grep -q "^$p" || fail "man -w $page"
done
sed "s|$prefix/sbin/crfsd|$p/sbin/crfsd|" "$p/lib/systemd/system/crfs.service" >"$dest/crfs.service"
out=$(systemd-analyze verify "$dest/crfs.service" 2>&1) || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify: $out"
echo "ok: man pages found, the unit verifies"

# Completion: subcommands, options, pids, slot names (from any directory).
mkdir -p "$dest/root/myslot" "$dest/root/1" "$dest/root/other.slot"
complete_words() {
	CRFS_ROOT=$dest/root bash -c '
		source /usr/share/bash-completion/bash_completion
		source "$1"; shift
		COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
		_crfs; printf "%s\n" "${COMPREPLY[@]}" | sort' _ "$p/share/bash-completion/completions/crfs" "$@"
}
[ "$(complete_words crfs re | xargs)" = "restore restore-direct" ] || fail "complete 'crfs re'"
[ "$(complete_words crfs ps --j | xargs)" = "--json" ] || fail "complete 'crfs ps --j'"
complete_words crfs dump "" | grep -qx "$$" || fail "complete 'crfs dump' lists no pid $$"
[ "$(complete_words crfs dump m | xargs)" = "myslot" ] || fail "complete 'crfs dump m'"
[ "$(complete_words crfs dump o | xargs)" = "other.slot" ] || fail "complete 'crfs dump o'"
complete_words crfs dump "" | grep -qx self && fail "complete offers self"
complete_words crfs ps "" | grep -qx myslot && fail "complete 'crfs ps' offers a slot"
echo "ok: completion"
