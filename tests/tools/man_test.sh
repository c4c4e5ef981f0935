#!/bin/sh
# The man pages build and render without a warning from groff or man.
# usage: man_test.sh MAN_BUILD_DIR PAGE...
set -u
dir=$1
shift
status=0
for page in "$@"; do
	f=$dir/$page
	if [ ! -s "$f" ]; then
		echo "FAIL $page: not built ($f)"
		status=1
		continue
	fi
	err=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$f" 2>&1 >/dev/null)
	out=$(LC_ALL=C.UTF-8 MANWIDTH=80 man -l "$f" 2>/dev/null)
	if [ -n "$err" ]; then
		echo "FAIL $page: warnings:"
		echo "$err"
		status=1
	elif ! printf '%s\n' "$out" | grep -q '^NAME$' || ! printf '%s\n' "$out" | grep -q '^SEE ALSO$'; then
		echo "FAIL $page: no NAME or SEE ALSO section"
		status=1
	else
		echo "ok $page ($(printf '%s\n' "$out" | wc -l) lines)"
	fi
done
exit $status
