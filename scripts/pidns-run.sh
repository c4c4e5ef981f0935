#!/bin/bash
# Runs a command the way CI's runner runs the suite: inside a new pid namespace
# whose session leader is outside it (sessions read as 0 in /proc), the command
# leading its own process group and not being pid 1.
#   scripts/pidns-run.sh ctest -R trees_mount --output-on-failure
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }
exec unshare -fp --mount-proc bash -c \
  '/usr/bin/python3 -c "import os, sys; os.setpgid(0, 0); os.execvp(sys.argv[1], sys.argv[1:])" "$@"; exit $?' \
  pidns-run "$@"
