"""Build pycontain's C shim with cffi (API mode, compiled ahead of time).

Used two ways:

* by setuptools, through ``cffi_modules`` in pyproject's ``setup.py``
  hook, when ``pip install .`` builds the package;
* as a script, ``python3 csrc/build_shim.py``, which compiles
  ``pycontain/_shim*.so`` in place (the test VM uses this).

The cdef is read from ``shim_api.h`` itself, so the declarations cffi
sees and the ones the C compiler sees are the same file.
"""

from __future__ import annotations

import os
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))


def _cdef_source() -> str:
    """shim_api.h minus comments (cffi's parser accepts them, but the
    enum trailing comments read better stripped)."""
    with open(os.path.join(HERE, "shim_api.h")) as f:
        return f.read()


def make_builder(source_path: str) -> FFI:
    builder = FFI()
    builder.cdef(_cdef_source())
    builder.set_source(
        "pycontain._shim",
        '#include "shim_api.h"',
        sources=[source_path],
        include_dirs=[HERE],
        extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
    )
    return builder


# setuptools insists on source paths relative to the project root.
ffibuilder = make_builder(os.path.relpath(os.path.join(HERE, "shim.c")))

if __name__ == "__main__":
    # In-place build: put the extension next to pycontain/__init__.py.
    root = os.path.dirname(HERE)
    os.chdir(root)
    tmpdir = os.path.join(root, "build", "shim")
    # compile() runs from tmpdir, so give it an absolute source path.
    so = make_builder(os.path.join(HERE, "shim.c")).compile(tmpdir=tmpdir, verbose="-v" in sys.argv)
    target = os.path.join(root, "pycontain", os.path.basename(so))
    # Only one build may be importable: a stale _shim.abi3.so from pip
    # would otherwise shadow (or be shadowed by) this one.
    import glob

    for old in glob.glob(os.path.join(root, "pycontain", "_shim*.so")):
        os.unlink(old)
    os.replace(so, target)
    print(target)
