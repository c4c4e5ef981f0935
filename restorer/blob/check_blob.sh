#!/bin/sh
# Build-time check of the restorer blob (STYLE.md 8): it runs with no loader,
# so it must have no undefined symbol, no dynamic section, no GOT and only
# PC-relative relocations in its object (anything else would be resolved for
# address 0 and break wherever the blob is copied).
#   check_blob.sh BLOB.o BLOB.elf
set -eu
obj=$1 elf=$2
undef=$(nm -u "$elf")
if [ -n "$undef" ]; then
    echo "restorer blob: undefined symbols (external symbol in PIE?):" >&2
    echo "$undef" >&2
    exit 1
fi
bad=$(readelf -rW "$obj" | awk '/^[0-9a-f]+ +[0-9a-f]+ R_X86_64_/ { if ($3 != "R_X86_64_PC32" && $3 != "R_X86_64_PLT32") print }')
if [ -n "$bad" ]; then
    echo "restorer blob: relocations that need a loader:" >&2
    echo "$bad" >&2
    exit 1
fi
if readelf -SW "$elf" | grep -Eq '\.(got|dynamic|rela|interp|plt)'; then
    echo "restorer blob: dynamic sections present:" >&2
    readelf -SW "$elf" >&2
    exit 1
fi
echo "restorer blob: ok ($(stat -c %s "$elf") bytes ELF)"
