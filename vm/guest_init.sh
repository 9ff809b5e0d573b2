#!/bin/sh
# Stage 2 of the pycontain test VM: PID 1 in the Debian rootfs.
#
# vm/testvm.py copies this file onto the vmctl 9p share for every boot (it is
# not baked into the image, so editing it never costs a rebuild).  The
# initramfs has already mounted the root disk, /run (tmpfs) and the vmctl
# share at /run/vmctl, and moved /dev (devtmpfs) over.
#
# It plays the part of a systemd host's early boot, as far as containers
# care: a pure cgroup2 tree with every controller delegated from the root,
# the usual pseudo filesystems, loopback up.  Then it runs
# /run/vmctl/cmd.sh, prints PYCONTAIN-VM-EXIT=<status> on the console and
# stops the VM (QEMU runs with -no-reboot, so a reboot ends it).

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 TERM=dumb PYTHONUNBUFFERED=1
ctl=/run/vmctl

stop() {
    sync
    # PID 1 must never exit (the kernel would panic); reboot -f ends QEMU.
    busybox reboot -f
    sleep 60
}

die() {
    echo "PYCONTAIN-VM-ERROR=stage 2: $*"
    stop
}

mount -t proc -o nosuid,nodev,noexec proc /proc || die "mount /proc"
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys || die "mount /sys"
# nsdelegate: cgroup namespaces become delegation boundaries, as on systemd
# hosts.  memory_recursiveprot: memory.min/low apply to the whole subtree.
mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 /sys/fs/cgroup \
    || die "mount cgroup2 at /sys/fs/cgroup"
mkdir -p /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts || die "mount devpts"
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /dev/shm || die "mount /dev/shm"
mount -t mqueue -o nosuid,nodev,noexec mqueue /dev/mqueue || die "mount mqueue"
ln -sfn /proc/self/fd /dev/fd
ln -sfn /proc/self/fd/0 /dev/stdin
ln -sfn /proc/self/fd/1 /dev/stdout
ln -sfn /proc/self/fd/2 /dev/stderr
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /tmp || die "mount /tmp"

# The host's working tree, read-only; cache=loose is safe because nothing
# changes it while the guest runs, and it makes the copy to /root fast.
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=loose,ro src /src \
    || die "mount the src 9p share at /src"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 results /results \
    || die "mount the results 9p share at /results"

# Every controller the kernel offers, enabled for the root's children, the
# way systemd leaves a cgroup2 host.  A failure here shows up in the
# in-guest conftest, which names the missing controller.
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
    echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null \
        || echo "pycontain-vm: cannot enable cgroup controller $c"
done

hostname pycontain-vm
ip link set lo up
[ -f $ctl/epoch ] && date -s "@$(cat $ctl/epoch)" >/dev/null
# Kernel messages (an OOM kill report, say) would interleave with the
# command's output on the serial console; they stay readable with dmesg.
dmesg -n 1

# Facts for tests: that they are in the VM, and which disk is the scratch
# disk for io.max (found by its virtio serial, like the root disk; its ext4
# filesystem is mounted at /mnt/scratch).
mkdir -p /run/pycontain-vm
for dev in /sys/block/vd*; do
    if [ "$(cat "$dev/serial" 2>/dev/null)" = pycontain-scratch ]; then
        scratch="/dev/${dev##*/}"
        echo "$scratch" >/run/pycontain-vm/scratch-disk
        mount -t ext4 "$scratch" /mnt/scratch || die "mount the scratch disk $scratch"
    fi
done
uname -r >/run/pycontain-vm/kernel

echo "PYCONTAIN-VM-READY"
cd /root || die "cd /root"
sh $ctl/cmd.sh </dev/null
rc=$?
echo "$rc" >$ctl/exit
echo "PYCONTAIN-VM-EXIT=$rc"
stop
