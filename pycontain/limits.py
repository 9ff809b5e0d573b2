"""Resource limits: docker's flags -> OCI ``linux.resources`` -> cgroup v2 files.

Three layers, each a plain function:

* :func:`resources_from_flags` turns ``--memory 64m --cpus 0.5`` into the
  OCI runtime-spec's ``linux.resources`` (what config.json would say);
* :func:`cgroup_writes` turns that into ``(file, value)`` pairs for a v2
  group, in the order they must be written;
* :func:`apply` checks that the controllers exist, enables them down the
  tree, and writes the files (each write shown by ``--trace``).

This module is imported only when a limit is asked for.
"""

from __future__ import annotations

import os
import sys

from .errors import PycontainError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .cgroups import Cgroup
    from .container import RunOptions, Tracer

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

#: cpu.max period, as docker and runc use it.
CPU_PERIOD = 100_000

#: Which controller each flag needs, to name it in errors.
_FLAG_CONTROLLER = {
    "memory": "memory", "memory_swap": "memory", "memory_reservation": "memory",
    "cpus": "cpu", "cpu_shares": "cpu", "cpu_weight": "cpu",
    "cpuset_cpus": "cpuset", "cpuset_mems": "cpuset",
    "pids_limit": "pids", "device_read_bps": "io", "device_write_bps": "io",
}


def parse_size(text: str, flag: str) -> int:
    """docker's sizes: 512, 64k, 64m, 1g, 1.5g, with an optional trailing b."""
    t = text.strip().lower()
    if t.endswith("b") and len(t) > 1 and t[-2] in _UNITS:
        t = t[:-1]
    unit = t[-1] if t and t[-1] in _UNITS and not t[-1].isdigit() else ""
    number = t[: len(t) - len(unit)]
    try:
        value = float(number)
    except ValueError:
        raise PycontainError(f"{flag} {text!r}: expected a size like 64m or 1g") from None
    if value < 0:
        raise PycontainError(f"{flag} {text!r}: must not be negative")
    return int(value * _UNITS[unit])


def _device(spec: str, flag: str) -> dict:
    path, _, rate = spec.rpartition(":")
    if not path or not rate:
        raise PycontainError(f"{flag} {spec!r}: expected DEVICE:RATE, e.g. /dev/vdb:1mb")
    try:
        st = os.stat(path)
    except OSError:
        raise PycontainError(f"{flag} {spec!r}: {path}: no such device") from None
    import stat

    if not stat.S_ISBLK(st.st_mode):
        raise PycontainError(f"{flag} {spec!r}: {path} is not a block device")
    return {"major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
            "rate": parse_size(rate, flag)}


def resources_from_flags(flags: dict) -> dict:
    """OCI ``linux.resources`` for docker-style flags (values are strings)."""
    res: dict = {}
    memory: dict = {}
    if "memory" in flags:
        memory["limit"] = parse_size(flags["memory"], "--memory")
    if "memory_swap" in flags:
        if flags["memory_swap"].strip() == "-1":
            memory["swap"] = -1
        else:
            # OCI (like docker) counts swap as memory+swap.
            memory["swap"] = parse_size(flags["memory_swap"], "--memory-swap")
            if "limit" in memory and memory["swap"] < memory["limit"]:
                raise PycontainError("--memory-swap must be at least --memory "
                                     "(it is memory plus swap)")
    if "memory_reservation" in flags:
        memory["reservation"] = parse_size(flags["memory_reservation"], "--memory-reservation")
    if memory:
        res["memory"] = memory
    cpu: dict = {}
    if "cpus" in flags:
        try:
            cpus = float(flags["cpus"])
        except ValueError:
            raise PycontainError(f"--cpus {flags['cpus']!r}: expected a number like 0.5") from None
        if cpus <= 0:
            raise PycontainError("--cpus must be more than 0")
        cpu["quota"] = int(cpus * CPU_PERIOD)
        cpu["period"] = CPU_PERIOD
    if "cpu_shares" in flags:
        cpu["shares"] = _int(flags["cpu_shares"], "--cpu-shares", 2, 262144)
    if "cpuset_cpus" in flags:
        cpu["cpus"] = flags["cpuset_cpus"]
    if "cpuset_mems" in flags:
        cpu["mems"] = flags["cpuset_mems"]
    if cpu:
        res["cpu"] = cpu
    if "cpu_weight" in flags:
        # cgroup v2's own knob; OCI carries raw v2 keys in "unified".
        weight = _int(flags["cpu_weight"], "--cpu-weight", 1, 10000)
        res.setdefault("unified", {})["cpu.weight"] = str(weight)
    if "pids_limit" in flags:
        limit = _int(flags["pids_limit"], "--pids-limit", -1, 1 << 22)
        res["pids"] = {"limit": limit}
    io: dict = {}
    for flag, key in (("device_read_bps", "throttleReadBpsDevice"),
                      ("device_write_bps", "throttleWriteBpsDevice")):
        for item in flags.get(flag, []):
            io.setdefault(key, []).append(_device(item, "--" + flag.replace("_", "-")))
    if io:
        res["blockIO"] = io
    return res


def _int(text: str, flag: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise PycontainError(f"{flag} {text!r}: expected a whole number") from None
    if not low <= value <= high:
        raise PycontainError(f"{flag} {value}: must be between {low} and {high}")
    return value


def shares_to_weight(shares: int) -> int:
    """cgroup v1 cpu.shares (2..262144) onto v2 cpu.weight (1..10000),
    the conversion runc and crun use."""
    return 1 + ((shares - 2) * 9999) // 262142


#: The linux.resources fields pycontain turns into cgroup v2 writes.
#: ``devices`` is checked by spec.validate (pycontain enforces it with nodev).
KNOWN_RESOURCES: dict[str, set[str] | None] = {
    "memory": {"limit", "swap", "reservation"},
    "cpu": {"quota", "period", "shares", "cpus", "mems"},
    "pids": {"limit"},
    "blockIO": {"throttleReadBpsDevice", "throttleWriteBpsDevice"},
    "unified": None,
    "devices": None,
}


def _empty(value: object) -> bool:
    return value is None or value == [] or value == {}


def check_fields(res: dict) -> None:
    """Refuse, by name, any resource pycontain would otherwise not apply."""
    for key, value in res.items():
        if _empty(value):
            continue
        if key not in KNOWN_RESOURCES:
            raise PycontainError(f"linux.resources.{key} is not supported by pycontain")
        allowed = KNOWN_RESOURCES[key]
        if allowed is None or not isinstance(value, dict):
            continue
        for sub, v in value.items():
            if sub not in allowed and not _empty(v):
                raise PycontainError(
                    f"linux.resources.{key}.{sub} is not supported by pycontain")


def cgroup_writes(res: dict) -> list[tuple[str, str, str]]:
    """``(controller, file, value)`` for each write, in a safe order.

    cpuset first (a group must have CPUs before anything runs in it);
    memory.max before memory.swap.max (swap is memory+swap in OCI)."""
    out: list[tuple[str, str, str]] = []
    cpu = res.get("cpu", {})
    if "cpus" in cpu:
        out.append(("cpuset", "cpuset.cpus", cpu["cpus"]))
    if "mems" in cpu:
        out.append(("cpuset", "cpuset.mems", cpu["mems"]))
    mem = res.get("memory", {})
    if "limit" in mem:
        out.append(("memory", "memory.max", str(mem["limit"])))
    if "swap" in mem:
        if mem["swap"] == -1:
            out.append(("memory", "memory.swap.max", "max"))
        elif "limit" in mem:
            out.append(("memory", "memory.swap.max", str(mem["swap"] - mem["limit"])))
    if "reservation" in mem:
        out.append(("memory", "memory.low", str(mem["reservation"])))
    if "quota" in cpu:
        out.append(("cpu", "cpu.max", f"{cpu['quota']} {cpu.get('period', CPU_PERIOD)}"))
    if "shares" in cpu:
        out.append(("cpu", "cpu.weight", str(shares_to_weight(cpu["shares"]))))
    for key, value in res.get("unified", {}).items():
        out.append((key.split(".")[0], key, value))
    if "pids" in res:
        limit = res["pids"]["limit"]
        out.append(("pids", "pids.max", "max" if limit <= 0 else str(limit)))
    io = res.get("blockIO", {})
    devices: dict[tuple[int, int], list[str]] = {}
    for key, name in (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps")):
        for d in io.get(key, []):
            devices.setdefault((d["major"], d["minor"]), []).append(f"{name}={d['rate']}")
    for (major, minor), parts in devices.items():
        out.append(("io", "io.max", f"{major}:{minor} " + " ".join(parts)))
    return out


def _v1_holder(controller: str) -> str | None:
    """Where a v1 hierarchy holds ``controller`` (hybrid hosts), if any."""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                sep = fields.index("-")
                if fields[sep + 1] == "cgroup" and controller in fields[-1].split(","):
                    return fields[4]
    except OSError:
        pass
    return None


def apply(res: dict, cgroup: Cgroup, tracer: Tracer) -> None:
    """Enable the needed controllers from the v2 root down to the
    container's group, then write its limits."""
    from .cgroups import available_controllers

    check_fields(res)
    writes = cgroup_writes(res)
    needed = sorted({c for c, _, _ in writes})
    have = available_controllers(cgroup.mount)
    for controller in needed:
        if controller not in have:
            holder = _v1_holder(controller)
            why = (f"cgroup v1 holds it at {holder} (a hybrid host), and a controller "
                   "lives in one hierarchy at a time" if holder
                   else "the kernel does not offer it")
            flag = next((f"--{k.replace('_', '-')}" for k, c in _FLAG_CONTROLLER.items()
                         if c == controller), controller)
            oci = {"cpuset": "cpu.cpus", "io": "blockIO"}.get(controller, controller)
            flag = f"{flag} (linux.resources.{oci})"
            raise PycontainError(
                f"{flag} needs the cgroup v2 '{controller}' controller, which is not "
                f"available in {cgroup.mount}: {why}")
    # Delegate down the tree: a controller is usable in a group only if
    # every ancestor enables it in cgroup.subtree_control, from the root of
    # the hierarchy down to our parent (a deep OCI cgroupsPath has several).
    ancestors = []
    directory = os.path.dirname(cgroup.path)
    while directory.startswith(cgroup.mount) and directory != cgroup.mount:
        ancestors.append(directory)
        directory = os.path.dirname(directory)
    enable = " ".join(f"+{c}" for c in needed)
    for directory in [cgroup.mount, *reversed(ancestors)]:
        path = os.path.join(directory, "cgroup.subtree_control")
        try:
            with open(path) as f:
                enabled = set(f.read().split())
        except OSError:
            enabled = set()
        if set(needed) <= enabled:
            continue
        try:
            with open(path, "w") as f:
                f.write(enable)
        except OSError as e:
            raise PycontainError(f"cgroup: enabling {enable} in {path}: "
                                 f"{os.strerror(e.errno or 0).lower()}") from None
        tracer.emit("cgroup", f"write {path} <- {enable!r}")
    for _, name, value in writes:
        cgroup.write(name, value)
        tracer.emit("cgroup", f"write {cgroup.path}/{name} <- {value!r}")


def _read_kv(cgroup: Cgroup, name: str) -> dict[str, int]:
    try:
        text = cgroup.read(name)
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def after_exit(cgroup: Cgroup, code: int, opts: RunOptions) -> int:
    """Explain an OOM kill, and print ``--stats``; returns the exit code."""
    events = _read_kv(cgroup, "memory.events")
    if code == 137 and events.get("oom_kill", 0) > 0:
        try:
            limit = cgroup.read("memory.max").strip()
        except OSError:
            limit = "?"
        shown = _human(int(limit)) if limit.isdigit() else limit
        sys.stderr.write(f"pycontain: the command was killed by the kernel's OOM killer: "
                         f"the container's memory limit ({shown}) was reached\n")
    if opts.stats:
        cpu = _read_kv(cgroup, "cpu.stat")
        try:
            peak = int(cgroup.read("memory.peak"))
            peak_text = _human(peak)
        except (OSError, ValueError):
            peak_text = "n/a (no memory controller in this group)"
        sys.stderr.write(
            f"pycontain: stats: peak memory {peak_text}, CPU "
            f"{cpu.get('usage_usec', 0) / 1e6:.3f} s (user {cpu.get('user_usec', 0) / 1e6:.3f} s, "
            f"system {cpu.get('system_usec', 0) / 1e6:.3f} s)\n")
    return code
