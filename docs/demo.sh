#!/bin/bash
# `make demo`: one container from the busybox rootfs, printing the facts that
# show what a container shares with its host (the kernel) and what it does not
# (hostname, PIDs, mounts, network).
set -euo pipefail
PYCONTAIN=${1:-.venv/bin/pycontain}
ROOTFS=${2:-build/rootfs/amd64}

echo "== on the host =="
echo "hostname:       $(hostname)"
echo "kernel:         $(uname -r)"
echo "PID namespace:  $(stat -L -c %i /proc/self/ns/pid)"
echo "processes:      $(ls -d /proc/[0-9]* | wc -l)"
echo "mounts:         $(wc -l < /proc/self/mountinfo)"
echo
echo "== in a container: $PYCONTAIN run --hostname demo $ROOTFS /bin/sh -c ... =="
"$PYCONTAIN" run --hostname demo "$ROOTFS" /bin/sh -c '
echo "hostname:       $(hostname)"
echo "kernel:         $(uname -r)    <- the host kernel: containers share it"
echo "PID namespace:  $(stat -L -c %i /proc/self/ns/pid)    <- its own"
echo "my PID:         $$ (PID 1 is the container init: $(cat /proc/1/comm))"
echo "processes:      $(ls -d /proc/[0-9]* | wc -l)    <- only its own"
echo "network:        $(ls /sys/class/net | tr "\n" " ")"
echo "mounts:         $(wc -l < /proc/self/mountinfo): $(cut -d" " -f5 /proc/self/mountinfo | head -8 | tr "\n" " ")..."
'
echo
echo "Same kernel, different everything else. More: docs/tour.md, and"
echo "  sudo $PYCONTAIN run --trace $ROOTFS /bin/true     (every kernel step)"
echo "  sudo $PYCONTAIN explain $ROOTFS                   (host vs container)"
