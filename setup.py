"""Only here to hand the cffi shim to setuptools; metadata is in pyproject.toml."""

from setuptools import setup

setup(cffi_modules=["csrc/build_shim.py:ffibuilder"])
