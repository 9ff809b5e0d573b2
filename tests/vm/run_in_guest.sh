#!/bin/sh
# Run the in-guest test suite: `vm/testvm.py test` runs this inside the VM.
#
# /src is the host's working tree, read-only.  Copy it to a writable place
# on the (throw-away) root disk and compile pycontain's C shim there, for
# the guest's Python and libc, then run pytest on tests/vm.  Extra arguments
# go to pytest.  The JUnit report lands in /results/vm-junit.xml.
set -eu

uptime() { cut -d' ' -f1 /proc/uptime; }
echo "pycontain-vm: copying /src at $(uptime) s after boot"
dst=/root/src
rm -rf "$dst"
mkdir -p "$dst"
# Host build products (the venv, the caches, a host-compiled shim) would be
# wrong or useless in the guest; build/ stays readable at /src/build.
tar -C /src --exclude=./.git --exclude=./.cache --exclude=./.venv --exclude=./build \
    --exclude='__pycache__' --exclude='*.so' --exclude='*.egg-info' -cf - . \
    | tar -C "$dst" -xf -
cd "$dst"

if [ -f csrc/build_shim.py ]; then
    echo "pycontain-vm: compiling the C shim for the guest (python3 csrc/build_shim.py)"
    if ! python3 csrc/build_shim.py >/tmp/build_shim.log 2>&1; then
        cat /tmp/build_shim.log
        echo "pycontain-vm: csrc/build_shim.py failed; pycontain-level tests will fail"
    fi
else
    echo "pycontain-vm: csrc/build_shim.py does not exist yet; pycontain's shim is not built"
fi

echo "pycontain-vm: starting pytest at $(uptime) s after boot"
export PYTHONPATH="$dst"
# --confcutdir: the host suite's tests/conftest.py is not for the guest.
# -p no:cacheprovider: nothing to keep between throw-away boots.
exec python3 -m pytest -q -rfEsxX -p no:cacheprovider --confcutdir="$dst/tests/vm" \
    --junitxml=/results/vm-junit.xml "$@" "$dst/tests/vm"
