"""pycontain: a small Linux container runtime, written to be read.

Follow one container's life through the modules, in order:

``cli`` (parse the command line) -> ``spec`` (an OCI-shaped configuration)
-> ``container`` (create, start, wait, clean up) -> ``plan`` (the kernel
steps, as data) -> ``namespaces``, ``rootfs``, ``cgroups``, ``emulation``
(one module per kernel facility) -> ``shim`` (the only door into C).
"""

__version__ = "0.1.0"
