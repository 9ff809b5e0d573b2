#!/usr/bin/env bash
# debian.sh ARCH DEST [MIRROR]: a full Debian (minbase) rootfs for a foreign
# architecture, whose second stage runs INSIDE pycontain under emulation.
#
# debootstrap works in two stages.  The first (`--foreign`) only downloads and
# unpacks the .debs, so it runs on any host.  The second runs the target's own
# dpkg and maintainer scripts, i.e. foreign binaries: we run it as
# `pycontain run DEST /debootstrap/debootstrap --second-stage`, which makes
# this script an end-to-end test of pycontain's binfmt_misc emulation.
#
# What the second stage needs from the container (read from debootstrap's
# functions/debian-common, and verified here by running it by hand in a user
# namespace with a sandboxed binfmt_misc instance: 58 s for arm64 minbase):
#   - a WRITABLE rootfs: dpkg installs every base package into /;
#   - uid 0 with all of 0-65535 mapped (no user namespace, or one mapping the
#     whole range): dpkg chowns files to system users such as _apt (uid 42);
#   - CAP_CHOWN, CAP_FOWNER, CAP_DAC_OVERRIDE, CAP_SETUID, CAP_SETGID for dpkg
#     and the maintainer scripts, and CAP_SYS_ADMIN only if /proc or /sys are
#     left empty, since it then mounts them itself;
#   - either CAP_MKNOD outside any user namespace, or `container=lxc` in the
#     environment: debootstrap first checks that it can mknod /dev/null in
#     the target (its "mounted with noexec or nodev" error) and skips that
#     check for lxc.  mknod is never allowed inside a user namespace, so we
#     always pass `-e container=lxc`; the runtime's own /dev serves instead;
#   - no network: the first stage already put the .debs in
#     DEST/var/cache/apt/archives.
# The device nodes were created (mknod) by the first stage on the host; a
# runtime that mounts its own /dev over them is fine.
#
# Environment: PYCONTAIN (default <repo>/.venv/bin/pycontain),
# PYCONTAIN_RUN_OPTS (extra words after `pycontain run -e container=lxc`),
# PYCONTAIN_DEBIAN_SUITE (default bookworm), PYCONTAIN_DEBIAN_MIRROR,
# PYCONTAIN_CACHE (the debootstrap .deb cache lives under it).
set -euo pipefail

# shellcheck source=rootfs-scripts/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

if [[ $# -lt 2 || $# -gt 3 || $1 == -h || $1 == --help ]]; then
    echo "usage: ${0##*/} ARCH DEST [MIRROR]   (Debian ${PYCONTAIN_DEBIAN_SUITE:-bookworm} minbase for ARCH)" >&2
    [[ ${1:-} == -h || ${1:-} == --help ]] && exit 0
    exit 2
fi
ARCH=$1
DEST=$(realpath -m -- "$2")
SUITE=${PYCONTAIN_DEBIAN_SUITE:-bookworm}
MIRROR=${3:-${PYCONTAIN_DEBIAN_MIRROR:-$(host_debian_mirror)}}
PYCONTAIN=${PYCONTAIN:-$PYCONTAIN_REPO/.venv/bin/pycontain}
read -r -a RUN_OPTS <<<"-e container=lxc ${PYCONTAIN_RUN_OPTS:-}"

[[ $DEST != / ]] || die "refusing to debootstrap over /"
qemu_target "$ARCH" >/dev/null || die "unknown architecture '$ARCH'"
[[ $(id -u) -eq 0 ]] || die "debootstrap needs root (it creates device nodes and root-owned files)"
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
[[ -r $KEYRING ]] || die "$KEYRING is missing (apt-get install debian-archive-keyring)"

# --- first stage: on the host -------------------------------------------
if [[ -f $DEST/etc/debian_version && ! -e $DEST/debootstrap ]]; then
    note "$DEST is already a complete Debian $SUITE rootfs"
    exit 0
elif [[ -x $DEST/debootstrap/debootstrap ]]; then
    note "$DEST: first stage already done; going on with the second"
else
    if [[ -e $DEST && -n $(ls -A -- "$DEST" 2>/dev/null) ]]; then
        die "$DEST exists, is not empty and holds no unfinished debootstrap; refusing to touch it"
    fi
    CACHE_DIR=$PYCONTAIN_CACHE/debootstrap/$SUITE-$ARCH
    mkdir -p "$CACHE_DIR" "$DEST"
    note "first stage: debootstrap --foreign --arch $ARCH --variant=minbase $SUITE $DEST $MIRROR"
    debootstrap --foreign --arch "$ARCH" --variant=minbase --keyring="$KEYRING" \
        --cache-dir="$CACHE_DIR" "$SUITE" "$DEST" "$MIRROR" >&2 ||
        die "first stage failed for $ARCH from $MIRROR (see $DEST/debootstrap/debootstrap.log)"
fi

# --- second stage: inside pycontain, under emulation -----------------------
# When the HOST looks like docker (/.dockerenv), the first stage replaces
# DEST/proc by a symlink "/proc -> /proc", expecting the second stage to run
# in a plain chroot that has the host's /proc.  Inside a container it is a
# link to itself, which no runtime can mount over; debootstrap's own second
# stage would turn it back into a directory anyway, so do that now.
if [[ -L $DEST/proc ]]; then
    rm -f -- "$DEST/proc"
    mkdir -m 0555 -- "$DEST/proc"
fi
[[ -x $PYCONTAIN ]] ||
    die "first stage done in $DEST; second stage not run: $PYCONTAIN is not an executable (set PYCONTAIN=)"
note "second stage: $PYCONTAIN run ${RUN_OPTS[*]} $DEST /debootstrap/debootstrap --second-stage"
"$PYCONTAIN" run "${RUN_OPTS[@]}" "$DEST" /debootstrap/debootstrap --second-stage ||
    die "second stage failed inside pycontain for $ARCH (see $DEST/debootstrap/debootstrap.log)"
[[ ! -e $DEST/debootstrap && -f $DEST/etc/debian_version ]] ||
    die "second stage exited 0 but $DEST/debootstrap is still there; the rootfs is incomplete"
note "built $DEST (Debian $SUITE $ARCH minbase, $(<"$DEST/etc/debian_version"))"
