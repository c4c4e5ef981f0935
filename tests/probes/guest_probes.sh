#!/bin/sh
# The contract test's driver for a guest without python (busybox sh): runs
# the rows guest_rows.py printed through a mounted crfsd exactly as
# run_probes.py does (its docstring): a refused variant's reason holds the
# expected text, `cp` of `image` fails with EBUSY and the probe still PASSes;
# a supported variant has an empty reason, PASSes without a checkpoint, then
# checkpoint -> kill -9 -> restore into the same pid -> SIGTERM -> PASS, and
# the same image restored under a fresh name -> SIGTERM -> PASS.
#
#   guest_probes.sh ROWS MOUNT PROBE_DIR
#
# PROBE_DIR holds probe_NAME. Prints "PASS probe/variant" or "FAIL
# probe/variant: why" per row, then "CRFS-PROBES: N passed, M failed". Every
# wait is for a file or a state, bounded (a guard, never a verdict).
rows=$1
m=$2
bin=$3
[ -f "$rows" ] && [ -d "$m" ] && [ -d "$bin" ] || {
	echo "usage: guest_probes.sh ROWS MOUNT PROBE_DIR"
	exit 2
}

# crfs files through read(2) and write(2): busybox's cat and cp use
# sendfile(2), and since Linux 6.5 a splice read of a FUSE direct_io file
# stops at its size, 0 here (docs/kernel-module.md, "Probes in the guest").
readf() { dd if="$1" bs=1048576 2>/dev/null; }
# copy FROM TO: prints dd's errors (and its counts) on failure.
copy() {
	cperr=$(dd if="$1" of="$2" bs=1048576 2>&1) || {
		echo "$cperr"
		return 1
	}
}

# wait_until WHAT CMD...: CMD succeeds within 120 s (TCG is slow).
wait_until() {
	what=$1
	shift
	i=0
	while ! "$@"; do
		i=$((i + 1))
		[ $i -le 1200 ] || {
			echo "timed out waiting for $what"
			return 1
		}
		sleep 0.1
	done
}

# The state letter of /proc/PID/stat (after the last ") "), empty if gone.
state() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1; }
alive() {
	s=$(state "$1")
	[ -n "$s" ] && [ "$s" != Z ] && [ "$s" != X ]
}
pid_free() { [ ! -e "/proc/$1" ]; }
ready_or_gone() { [ -e "$dir/ready" ] || ! alive "$pid"; }
verdict_ready() { [ -e "$dir/result" ] && ! alive "$pid"; }

# start: the probe as our child, in $dir; sets pid and own.
start() {
	rm -f "$dir/ready"
	(cd "$dir" && exec "$bin/probe_$probe" "$variant" "$dir" </dev/null >/dev/null 2>"$dir/stderr") &
	pid=$!
	own=1
	wait_until "probe $variant to be ready" ready_or_gone || return 1
	[ -e "$dir/ready" ] || {
		echo "probe $variant failed its setup: $(cat "$dir/stderr")"
		return 1
	}
}

# expect_pass WHAT: SIGTERM, then the probe's result must be PASS.
expect_pass() {
	kill -TERM "$pid"
	wait_until "the verdict" verdict_ready || {
		echo "pid $pid state '$(state "$pid")', stderr: $(cat "$dir/stderr")"
		return 1
	}
	[ $own = 0 ] || wait "$pid"
	own=0
	out=$(cat "$dir/result")
	rm -f "$dir/result"
	[ "$out" = PASS ] || {
		echo "$what: $out"
		return 1
	}
}

# restore IMAGE SLOT: a restore slot fed with the image; sets pid.
restore() {
	mkdir "$m/$2" && copy "$1" "$m/$2/image" && got=$(readf "$m/$2/pid") || {
		echo "restore into $2 failed: $(readf "$m/$2/status")"
		return 1
	}
	st=$(readf "$m/$2/status")
	[ "$st" = "restored $got" ] || {
		echo "slot $2: status '$st', pid $got"
		return 1
	}
	pid=$got
}

refused() {
	case $reason in
	*"$expect"*) ;;
	*)
		echo "reason '$reason' lacks '$expect'"
		return 1
		;;
	esac
	if err=$(copy "$m/$pid/image" "$dir/snap.img"); then
		echo "the copy of image worked despite the reason"
		return 1
	fi
	case $err in
	*"Device or resource busy"*) ;;
	*)
		echo "the copy of image failed otherwise: $err"
		return 1
		;;
	esac
	what="not checkpointed"
	expect_pass
}

supported() {
	[ -z "$reason" ] || {
		echo "reason: $reason"
		return 1
	}
	what="without a checkpoint"
	expect_pass || return 1
	start || return 1
	copy "$m/$pid/image" "$dir/snap.img" || {
		echo "checkpoint failed; reason: $(readf "$m/$pid/reason")"
		return 1
	}
	old=$pid
	kill -KILL "$pid"
	wait "$pid" 2>/dev/null # (the shell's "Killed")
	own=0
	wait_until "pid $old to be free" pid_free "$old" || return 1
	restore "$dir/snap.img" "$old" || return 1
	[ "$pid" = "$old" ] || {
		echo "restored as pid $pid, not $old"
		return 1
	}
	what="restored into the same pid"
	expect_pass || return 1
	if [ "$same" = 1 ]; then
		err=$(mkdir "$m/fresh-$variant" 2>&1 && copy "$dir/snap.img" "$m/fresh-$variant/image")
		case $err in
		*"Operation not permitted"*) return 0 ;;
		*)
			echo "a fresh name: '$err', not EPERM"
			return 1
			;;
		esac
	fi
	restore "$dir/snap.img" "fresh-$variant" || return 1
	what="restored under a fresh name"
	expect_pass
}

one() {
	start || return 1
	reason=$(readf "$m/$pid/reason") || return 1
	if [ -n "$expect" ]; then refused; else supported; fi
}

# one, and a failed row leaves no probe behind.
row() {
	one && return 0
	[ -z "$pid" ] || kill -KILL "$pid" 2>/dev/null
	[ $own = 0 ] || wait "$pid" 2>/dev/null
	return 1
}

pass=0
fail=0
tab=$(printf '\t')
while IFS=$tab read -r probe variant same expect; do
	dir=$(mktemp -d "/tmp/probe-$variant.XXXXXX")
	pid=
	own=0
	if why=$(row 2>&1); then
		echo "PASS $probe/$variant"
		pass=$((pass + 1))
	else
		echo "FAIL $probe/$variant: $why"
		fail=$((fail + 1))
	fi
	rm -rf "$dir"
done <"$rows"
echo "CRFS-PROBES: $pass passed, $fail failed"
