#!/usr/bin/env bash
# all.sh DEST_BASE: the busybox rootfs for amd64 and for the foreign
# architectures the tests and benchmarks use, into DEST_BASE/<arch>.
# Every architecture is attempted; the exit status is non-zero if any failed.
set -euo pipefail

here=$(dirname -- "${BASH_SOURCE[0]}")
read -r -a ARCHES <<<"${PYCONTAIN_ARCHES:-amd64 arm64 armhf ppc64el s390x mips64el}"

if [[ $# -ne 1 || $1 == -h || $1 == --help ]]; then
    echo "usage: ${0##*/} DEST_BASE   (builds ${ARCHES[*]} into DEST_BASE/<arch>)" >&2
    [[ $# -eq 1 ]] && exit 0
    exit 2
fi

failed=()
for arch in "${ARCHES[@]}"; do
    "$here/busybox.sh" "$arch" "$1/$arch" || failed+=("$arch")
done
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "${0##*/}: failed to build: ${failed[*]}" >&2
    exit 1
fi
