#!/bin/sh
# PID 1 of the check VM (installed in its image as /usr/local/sbin/meshcast-vm-init).
# Mounts what a system needs, mounts the host's shares (the repository read-only at
# /mnt/repo, the output directory at /mnt/out), runs vm/guest.sh from the share under tini
# (which reaps orphaned processes) and powers the machine off.  With meshcast.probe on the
# kernel command line it only says that it is up (vm/check.sh's test of KVM).
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH HOME=/root LANG=C.UTF-8

mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mountpoint -q /run || mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir -p /dev/pts /dev/shm /run/lock
mountpoint -q /dev/pts || mount -t devpts -o gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts
mountpoint -q /dev/shm || mount -t tmpfs -o nosuid,nodev tmpfs /dev/shm
mountpoint -q /sys/fs/cgroup || mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
echo meshcast-vm > /proc/sys/kernel/hostname
ip link set lo up

if grep -qw meshcast.probe /proc/cmdline; then
    echo "MESHCAST-VM-UP"
else
    mkdir -p /mnt/repo /mnt/out
    modprobe 9pnet_virtio && modprobe 9p
    opts=trans=virtio,version=9p2000.L,msize=262144
    if mount -t 9p -o "$opts,ro" repo /mnt/repo && mount -t 9p -o "$opts" out /mnt/out; then
        tini -s -- /bin/bash /mnt/repo/vm/guest.sh
        echo "meshcast-vm: guest.sh exited with status $?"
    else
        echo "meshcast-vm: the host's shares did not mount"
    fi
    umount /mnt/out 2>/dev/null
fi
sync
echo o > /proc/sysrq-trigger
# no more disk reads from here (the disk goes away under the power-off): shell builtins only
while :; do :; done
