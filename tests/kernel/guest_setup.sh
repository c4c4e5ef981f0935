# Sourced first by each guest's /init (init.sh, probes_init.sh), which the
# host scripts pack into the initramfs as /init with this file as
# /guest_setup.sh: busybox's applets, the kernel's filesystems, and the line
# lib.sh's boot() waits for to know the kernel reached /init.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
echo 1 >/proc/sys/kernel/printk_ratelimit_burst 2>/dev/null
echo 'CRFS-INIT: up'
