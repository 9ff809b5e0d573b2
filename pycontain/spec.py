"""The container's configuration, shaped like the OCI runtime-spec ``config.json``.

One internal model: the CLI builds this dict, an OCI bundle's config.json
can be loaded into the same shape, and ``plan.py`` compiles it into kernel
steps.  Only plain dicts and lists are used, so it serialises with ``json``
as it is (``pycontain spec``) and costs nothing to import.

Fields pycontain understands today are listed in :data:`SUPPORTED`; any
other field is refused by :func:`validate` with its name, never silently
ignored.
"""

from __future__ import annotations

from .errors import PycontainError

OCI_VERSION = "1.0.2"

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: Namespaces a container gets by default (docker's set, minus user).
DEFAULT_NAMESPACES = ["pid", "network", "ipc", "uts", "mount", "cgroup"]

_NOSUID_NOEXEC_NODEV = ["nosuid", "noexec", "nodev"]


def default_mounts() -> list[dict]:
    """The mounts every container gets (runc's ``spec`` defaults).

    /dev's device nodes and links are not mounts; the runtime always
    creates them (runtime-spec "Default Devices")."""
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": list(_NOSUID_NOEXEC_NODEV)},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": list(_NOSUID_NOEXEC_NODEV)},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup2", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ]


def default_spec(rootfs: str, args: list[str]) -> dict:
    """A complete config for running ``args`` from ``rootfs``."""
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": [f"PATH={DEFAULT_PATH}", "HOME=/root"],
            "cwd": "/",
            "noNewPrivileges": True,
        },
        "root": {"path": rootfs, "readonly": False},
        "hostname": "",
        "mounts": default_mounts(),
        "linux": {
            "namespaces": [{"type": t} for t in DEFAULT_NAMESPACES],
            "resources": {},
        },
        "annotations": {},
    }


def getenv(spec: dict, key: str) -> str | None:
    """The value of ``key`` in process.env, or None."""
    prefix = key + "="
    for item in spec["process"]["env"]:
        if item.startswith(prefix):
            return item[len(prefix):]
    return None


def setenv(spec: dict, key: str, value: str) -> None:
    env = spec["process"]["env"]
    prefix = key + "="
    for i, item in enumerate(env):
        if item.startswith(prefix):
            env[i] = prefix + value
            return
    env.append(prefix + value)


def has_namespace(spec: dict, ns_type: str) -> bool:
    return any(ns["type"] == ns_type for ns in spec["linux"]["namespaces"])


def drop_namespace(spec: dict, ns_type: str) -> None:
    spec["linux"]["namespaces"] = [
        ns for ns in spec["linux"]["namespaces"] if ns["type"] != ns_type
    ]


#: Every field (as a dotted path) that pycontain acts on.
SUPPORTED = {
    "ociVersion", "process", "process.terminal", "process.user", "process.user.uid",
    "process.user.gid", "process.user.additionalGids", "process.args", "process.env",
    "process.cwd", "process.noNewPrivileges", "process.capabilities",
    "process.capabilities.bounding", "process.capabilities.effective",
    "process.capabilities.inheritable", "process.capabilities.permitted",
    "process.capabilities.ambient", "root", "root.path", "root.readonly",
    "hostname", "mounts", "linux", "linux.namespaces", "linux.resources",
    "linux.uidMappings", "linux.gidMappings", "linux.cgroupsPath", "linux.maskedPaths",
    "linux.readonlyPaths", "linux.seccomp", "annotations",
    # container.py and security.py: podman's and containerd's configs have them.
    "process.user.umask", "process.rlimits", "process.oomScoreAdj", "linux.sysctl",
    # hooks.py
    "hooks", "hooks.prestart", "hooks.createRuntime", "hooks.createContainer",
    "hooks.startContainer", "hooks.poststart", "hooks.poststop",
}


def validate(spec: dict) -> None:
    """Refuse any field pycontain would otherwise ignore."""

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else key
            if path not in SUPPORTED:
                raise PycontainError(f"config.json: field {path!r} is not supported by pycontain")
            if isinstance(value, dict) and path not in ("annotations", "linux.resources",
                                                         "linux.seccomp", "linux.sysctl"):
                walk(value, path)

    walk(spec, "")
    _check_devices(spec.get("linux", {}).get("resources", {}).get("devices"))
    if spec.get("hooks"):
        from .hooks import validate as validate_hooks

        validate_hooks(spec["hooks"])
    if not spec.get("process", {}).get("args"):
        raise PycontainError("config.json: process.args is empty: nothing to run")


#: (major, minor) of the devices a pycontain container can open: the host
#: nodes bound into its /dev (null, zero, full, random, urandom, tty), its
#: own devpts instance (ptmx, and the ptys, any minor: None), and the
#: console, which runc and containerd allow by default (pycontain makes no
#: /dev/console node, and a node made with mknod is unusable: nodev).
DEFAULT_DEVICE_NUMBERS = {(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2),
                          (136, None)}


def _check_devices(rules: list[dict] | None) -> None:
    """``linux.resources.devices``: "deny everything", then allow rules for
    the default devices only.

    That is what pycontain's design already enforces without a device
    cgroup (cgroup v2 has only an eBPF hook for it, which pycontain does not
    install): every mount is nodev, and the default nodes (/dev/null and
    friends) are binds of the host's, so a node created in the container
    cannot be opened.  Any other allow rule would need that eBPF program; so
    would a deny rule for one device, since the default nodes stay usable.
    Both are refused rather than ignored (podman sends the deny-all rule,
    containerd adds allow rules for exactly the default devices)."""
    for rule in rules or []:
        wildcard = (rule.get("type", "a") == "a" and rule.get("major", -1) in (-1, None)
                    and rule.get("minor", -1) in (-1, None))
        if not rule.get("allow") and wildcard and set(rule.get("access", "rwm")) == set("rwm"):
            continue
        minor = rule.get("minor")
        number = (rule.get("major"), None if minor in (-1, None) else minor)
        if rule.get("allow") and rule.get("type") == "c" and number in DEFAULT_DEVICE_NUMBERS:
            continue
        what = (f"{'allow' if rule.get('allow') else 'deny'} {rule.get('type', 'a')} "
                f"{rule.get('major', '*')}:{rule.get('minor', '*')} {rule.get('access', 'rwm')}")
        raise PycontainError(
            f"config.json: linux.resources.devices rule '{what}' is not supported: pycontain "
            "only denies all devices (nodev mounts) beside its default /dev nodes")
