#!/bin/bash
# `make demo`: one container from the busybox rootfs, printing the facts that
# show what a container shares with its host (the kernel) and what it does not
# (hostname, PIDs, mounts, network).
set -euo pipefail
PYCONTAIN=${1:-.venv/bin/pycontain}
ROOTFS=${2:-build/rootfs/amd64}

echo "== on the host =="
echo "hostname:     $(hostname)"
echo "kernel:       $(uname -r)"
echo "my PID:       $$"
echo "pid ns inode: $(stat -L -c %i /proc/self/ns/pid)"
echo
echo "== in a container: $PYCONTAIN run $ROOTFS /bin/sh -c '...' =="
"$PYCONTAIN" run --hostname demo "$ROOTFS" /bin/sh -c '
echo "hostname:     $(hostname)"
echo "kernel:       $(uname -r)   <- the same kernel: containers share it"
echo "my PID:       $$   (PID 1 is the container init)"
echo "pid ns inode: $(stat -L -c %i /proc/self/ns/pid)   <- a different PID namespace"
echo "processes:"; ps -o pid,args
echo "network:";   ip -o link | cut -d: -f2
echo "mounts:";    cut -d" " -f5,9 /proc/self/mountinfo | column -t 2>/dev/null || cut -d" " -f5,9 /proc/self/mountinfo
'
