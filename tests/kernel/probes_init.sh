#!/bin/busybox sh
# /init of the probes guest; tests/kernel/probes.sh packs it into the
# initramfs with busybox, crfsd (and its libraries), the static probes, the
# driver /guest_probes.sh and its rows /rows. The driver's last line,
# "CRFS-PROBES: N passed, M failed", is what probes.sh checks. Every wait
# here is bounded.
. /guest_setup.sh
echo "guest kernel $(uname -r), $(grep -c ^processor /proc/cpuinfo) cpus"

mkdir -p /crfs /tmp/crfsd
crfsd -f -o state_dir=/tmp/crfsd /crfs >/tmp/crfsd.log 2>&1 &
crfsd_pid=$!
i=0
while ! grep -q ' /crfs fuse' /proc/mounts && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
if grep -q ' /crfs fuse' /proc/mounts; then
	sh /guest_probes.sh /rows /crfs /bin | tee /tmp/probes.out | grep -v '^CRFS-PROBES: '
else
	echo "crfsd did not mount /crfs"
	echo "CRFS-PROBES: 0 passed, $(grep -c . /rows) failed" >/tmp/probes.out
fi

kill -TERM $crfsd_pid
i=0
while kill -0 $crfsd_pid 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
stopped=1
if kill -0 $crfsd_pid 2>/dev/null; then
	echo "crfsd did not stop"
	kill -KILL $crfsd_pid
	stopped=0
fi
umount -l /crfs 2>/dev/null
if grep -q '^FAIL' /tmp/probes.out || [ $stopped = 0 ]; then
	echo "--- crfsd log"
	cat /tmp/crfsd.log
fi
# A crfsd that would not stop fails the run: the summary line goes last.
summary=$(grep '^CRFS-PROBES: ' /tmp/probes.out)
[ $stopped = 1 ] || summary="$summary (crfsd did not stop)"
echo "$summary"
# No ACPI in this kernel: qemu -no-reboot turns the reboot into its exit.
reboot -f
