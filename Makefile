# pycontain: everything a fresh Debian 12 / Ubuntu 22.04+ machine needs, as root.
#
#   sudo make demo    install, build the busybox rootfs, run a container
#   sudo make test    install, build the rootfs images, run the whole test suite
#
# Every target installs what it needs and is cheap to run again.

SHELL := /bin/bash
PYTHON ?= /usr/bin/python3
VENV := .venv
PY := $(VENV)/bin/python
PYCONTAIN := $(VENV)/bin/pycontain
BUILD := build
ROOTFS := $(BUILD)/rootfs
HOST_ARCH := $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
# Foreign rootfs the emulation tests run (Debian's busybox-static for each).
FOREIGN_ARCHES ?= arm64 armhf ppc64el s390x mips64el i386

# Debian/Ubuntu packages: the shim's build deps, python-prctl's libcap-dev,
# busybox-static for the rootfs, QEMU user-mode emulators, and what the
# tarball and rootfs tests use, and podman/conmon/containerd as real OCI
# clients of pycontain in the tests.  --no-install-recommends keeps systemd and
# binfmt-support (which would register QEMU on the host) out.
APT_PACKAGES := python3 python3-venv python3-dev gcc libc6-dev libffi-dev libcap-dev \
	libseccomp-dev busybox-static qemu-user-static zstd xz-utils dpkg-dev debootstrap \
	iproute2 nftables util-linux ca-certificates podman conmon containerd
APT_STAMP := $(BUILD)/.apt-$(shell echo $(APT_PACKAGES) | md5sum | cut -c1-8)

.PHONY: setup demo test test-host test-vm lint bench clean rootfs rootfs-foreign help

help:
	@echo "sudo make demo    # run a container from the default busybox rootfs"
	@echo "sudo make test    # run the whole test suite (host tests, then the test VM)"

$(APT_STAMP):
	@mkdir -p $(BUILD)
	@missing=$$(for p in $(APT_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends $$missing; \
	fi
	@touch $@

# The venv: pycontain installed in editable mode, with its C shim compiled
# in place (pycontain/_shim*.so).  Rebuilt when the shim or the metadata change.
$(VENV)/.installed: $(APT_STAMP) pyproject.toml setup.py csrc/*.c csrc/*.h csrc/build_shim.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel cffi
	rm -f pycontain/_shim*.so
	$(PY) -m pip install -q --no-build-isolation --config-settings editable_mode=compat -e '.[test]'
	@touch $@

$(ROOTFS)/$(HOST_ARCH)/etc/pycontain-rootfs-stamp: $(APT_STAMP) rootfs-scripts/busybox.sh
	rootfs-scripts/busybox.sh $(HOST_ARCH) $(ROOTFS)/$(HOST_ARCH)

rootfs: $(ROOTFS)/$(HOST_ARCH)/etc/pycontain-rootfs-stamp

rootfs-foreign: $(APT_STAMP)
	@PYCONTAIN_ARCHES="$(FOREIGN_ARCHES)" rootfs-scripts/all.sh $(ROOTFS)

setup: $(VENV)/.installed rootfs
	@# Byte-compile now: a run must not pay for compiling (and cannot cache
	@# the result where PYTHONDONTWRITEBYTECODE is set).
	@$(PY) -m compileall -q pycontain

demo: setup
	@docs/demo.sh $(PYCONTAIN) $(ROOTFS)/$(HOST_ARCH)

test: setup rootfs-foreign test-host test-vm

test-host: setup rootfs-foreign
	$(PY) -m pytest -ra -m 'not vm' --ignore=tests/vm tests

# The test VM (vm/README.md): cgroup v2 limits and pre-6.7 emulation, proven
# on a real Debian kernel under QEMU; prints the in-guest pytest result.
test-vm: setup rootfs-foreign
	$(PY) vm/testvm.py test

lint: setup
	$(VENV)/bin/ruff check pycontain tests benchmarks rootfs-scripts vm csrc

bench: setup
	@dpkg-query -W crun runc bubblewrap >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends crun runc bubblewrap)
	$(PY) benchmarks/startup.py --pycontain $(PYCONTAIN) --rootfs $(ROOTFS)/$(HOST_ARCH)
	$(PY) benchmarks/lifecycle.py --pycontain $(PYCONTAIN) --rootfs $(ROOTFS)/$(HOST_ARCH)

clean:
	rm -rf $(BUILD) $(VENV) pycontain/_shim*.so *.egg-info
