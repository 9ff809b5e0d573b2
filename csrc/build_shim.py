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


#: The shim's headers: each is both #included by C and fed to cffi's cdef.
HEADERS = ("shim_api.h", "seccomp_api.h")
#: Its sources: the namespace/mount/exec machinery, and the seccomp
#: compiler (libseccomp, run in the parent) and loader.
SOURCES = ("shim.c", "seccomp.c")


def _cdef_source() -> str:
    parts = []
    for name in HEADERS:
        with open(os.path.join(HERE, name)) as f:
            parts.append(f.read())
    return "\n".join(parts)


def make_builder(sources: list[str]) -> FFI:
    builder = FFI()
    builder.cdef(_cdef_source())
    builder.set_source(
        "pycontain._shim",
        "".join(f'#include "{h}"\n' for h in HEADERS),
        sources=sources,
        include_dirs=[HERE],
        libraries=["seccomp"],
        extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
    )
    return builder


# setuptools insists on source paths relative to the project root.
ffibuilder = make_builder([os.path.relpath(os.path.join(HERE, s)) for s in SOURCES])

if __name__ == "__main__":
    # In-place build: put the extension next to pycontain/__init__.py.
    root = os.path.dirname(HERE)
    os.chdir(root)
    tmpdir = os.path.join(root, "build", "shim")
    # compile() runs from tmpdir, so give it an absolute source path.
    so = make_builder([os.path.join(HERE, s) for s in SOURCES]).compile(tmpdir=tmpdir, verbose="-v" in sys.argv)
    target = os.path.join(root, "pycontain", os.path.basename(so))
    # Only one build may be importable: a stale _shim.abi3.so from pip
    # would otherwise shadow (or be shadowed by) this one.
    import glob

    for old in glob.glob(os.path.join(root, "pycontain", "_shim*.so")):
        os.unlink(old)
    os.replace(so, target)
    print(target)
