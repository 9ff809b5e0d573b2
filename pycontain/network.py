"""Container networking beyond ``lo``: the ``--network bridge`` mode.

``--network none`` (a fresh netns with only ``lo``, brought up by the
container's init) and ``--network host`` (no netns at all) need nothing
from this module.  ``bridge`` gives the container a wire to the host, the
way docker's default network does:

1. the bridge ``pycontain0`` is created on demand with the subnet's first
   address (the containers' gateway); the last container out removes it,
   and the NAT table, so nothing of ours stays on the host;
2. an address is leased from the subnet (a lease file under a lock, so
   concurrent runs never hand out the same one), or the fixed ``--ip``;
3. a veth pair: the host end ``pc<id>`` joins the bridge, the other end is
   created directly inside the container's netns as ``eth0``, while the
   container's init still waits for ``release()``; there it gets the
   address and a default route through the gateway;
4. outbound NAT: one masquerade rule per container in the nftables table
   ``ip pycontain``, tagged with the container's id;
5. published ports (``-p``) are served by a userspace proxy on the host
   (``portproxy.py``): see :func:`_start_proxy` for why not DNAT.

Everything is recorded in the container's state directory before it is
created, and every object carries the container's id (the veth's name,
the lease, the rule's comment), so that :func:`collect_garbage` can find
and remove what a SIGKILLed pycontain left behind.

All link, address and route work goes through pyroute2 (netlink).  Its
import costs about 100 ms, so this module imports it only inside the
functions that touch links: the default ``--network none`` never pays.
NAT rules go through the ``nft`` command, which applies each invocation as
one atomic transaction.
"""

from __future__ import annotations

import os

from .errors import PycontainError, strerror

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress
    import socket
    import subprocess

    from .container import Tracer
    from .state import ContainerState

BRIDGE = "pycontain0"
#: Not docker0's 172.17/16 nor podman's 10.88/16.  docker's user-defined
#: networks count up from 172.18/16, so a host with a dozen of them could
#: hold this one: the clash check then says so, and PYCONTAIN_SUBNET moves us.
DEFAULT_SUBNET = "172.29.0.0/16"
SUBNET_ENV = "PYCONTAIN_SUBNET"
NFT_TABLE = "pycontain"
NFT_CHAIN = "postrouting"
#: Host end of a veth: "pc" + the container id (IFNAMSIZ allows 15 chars).
VETH_PREFIX = "pc"
#: nft rule comments: "pycontain:<container id>".
RULE_TAG = "pycontain:"
CTR_IFNAME = "eth0"


# ------------------------------------------------------------ configuration --

class Publish:
    """One ``-p [HOSTIP:]HOSTPORT:CTRPORT[/tcp|udp]``."""

    __slots__ = ("ctr_port", "host_ip", "host_port", "proto", "text")

    def __init__(self, host_ip: str, host_port: int, ctr_port: int, proto: str,
                 text: str = "") -> None:
        self.host_ip, self.host_port = host_ip, host_port
        self.ctr_port, self.proto = ctr_port, proto
        self.text = text or f"{host_ip}:{host_port}:{ctr_port}/{proto}"  # as typed

    def __str__(self) -> str:
        return f"{self.host_ip}:{self.host_port}->{self.ctr_port}/{self.proto}"


def parse_publish(text: str) -> Publish:
    """Parse one ``-p`` value; raise a one-line error naming it."""
    import ipaddress

    def bad(why: str) -> PycontainError:
        return PycontainError(f"-p {text}: {why} (expected [HOSTIP:]HOSTPORT:CTRPORT[/tcp|udp])")

    body, _, proto = text.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        raise bad(f"protocol {proto!r} is not tcp or udp")
    parts = body.split(":")
    if len(parts) == 2:
        host_ip, host_port, ctr_port = "0.0.0.0", parts[0], parts[1]
    elif len(parts) == 3:
        host_ip, host_port, ctr_port = parts
        try:
            host_ip = str(ipaddress.IPv4Address(host_ip))
        except ValueError:
            raise bad(f"{host_ip!r} is not an IPv4 address") from None
    else:
        raise bad("wrong number of fields")
    ports = []
    for value in (host_port, ctr_port):
        if not value.isdigit() or not 1 <= int(value) <= 65535:
            raise bad(f"{value!r} is not a port number (1-65535)")
        ports.append(int(value))
    return Publish(host_ip, ports[0], ports[1], proto, text)


class Subnet:
    """The bridge's IPv4 subnet: its gateway is the first host address."""

    __slots__ = ("gateway", "net")

    def __init__(self, cidr: str, source: str = "subnet") -> None:
        import ipaddress

        try:
            net = ipaddress.IPv4Network(cidr, strict=False)
        except ValueError:
            raise PycontainError(f"{source} {cidr!r}: not an IPv4 subnet like "
                                 f"{DEFAULT_SUBNET}") from None
        if net.prefixlen > 29:
            raise PycontainError(f"{source} {cidr}: too small for a gateway and "
                                 "containers (at most /29)")
        self.net: ipaddress.IPv4Network = net
        self.gateway = str(net.network_address + 1)

    def __str__(self) -> str:
        return str(self.net)

    @property
    def prefixlen(self) -> int:
        return self.net.prefixlen

    def container_range(self) -> range:
        """Addresses (as ints) a container may get: all hosts but the gateway."""
        first = int(self.net.network_address) + 2
        return range(first, int(self.net.broadcast_address))


class BridgeConfig:
    """What the command line asked of ``--network bridge``."""

    __slots__ = ("ip", "publish", "subnet")

    def __init__(self, subnet: Subnet, ip: str | None, publish: list[Publish]) -> None:
        self.subnet, self.ip, self.publish = subnet, ip, publish


def bridge_config(publish: list[str], ip: str | None = None,
                  subnet: str | None = None) -> BridgeConfig:
    """Validate ``-p`` and ``--ip`` for ``--network bridge`` (no side effects).

    The subnet is ``subnet``, else $PYCONTAIN_SUBNET, else DEFAULT_SUBNET."""
    import ipaddress

    source = "subnet"
    if subnet is None:
        subnet = os.environ.get(SUBNET_ENV) or DEFAULT_SUBNET
        source = SUBNET_ENV if os.environ.get(SUBNET_ENV) else "subnet"
    net = Subnet(subnet, source)
    ports = [parse_publish(p) for p in publish]
    seen: set[tuple[str, int]] = set()
    for port in ports:
        if (port.proto, port.host_port) in seen:
            raise PycontainError(f"-p {port.text}: host port {port.host_port}/{port.proto} "
                                 "is published twice")
        seen.add((port.proto, port.host_port))
    if ip is not None:
        try:
            addr = ipaddress.IPv4Address(ip)
        except ValueError:
            raise PycontainError(f"--ip {ip}: not an IPv4 address") from None
        if int(addr) not in net.container_range():
            raise PycontainError(f"--ip {ip}: not a container address in the bridge "
                                 f"subnet {net} (the gateway is {net.gateway})")
        ip = str(addr)
    return BridgeConfig(net, ip, ports)


# ------------------------------------------------------------------ leases --

def _owner_alive(root: str, cid: str) -> bool:
    """Is container ``cid`` still someone's (state.container_alive)?  A
    lease or rule of a container whose state is gone is nobody's."""
    from .state import container_alive

    return (os.path.isdir(os.path.join(root, "containers", cid))
            and container_alive(root, cid))


class Leases:
    """``<state root>/network/leases``: one ``ADDRESS CONTAINER-ID`` a line.

    Writers hold an exclusive flock on ``lock`` and replace the file with
    rename(), so a reader without the lock still sees a whole file."""

    __slots__ = ("dir", "lock_fd", "path")

    def __init__(self, root: str) -> None:
        self.dir = os.path.join(root, "network")
        self.path = os.path.join(self.dir, "leases")
        self.lock_fd = -1

    def __enter__(self) -> None:
        import fcntl

        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self.lock_fd = os.open(os.path.join(self.dir, "lock"),
                               os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.lock_fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        os.close(self.lock_fd)  # closing the last fd drops the flock
        self.lock_fd = -1

    def read(self) -> dict[str, str]:
        try:
            with open(self.path) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return {}
        leases = {}
        for line in lines:
            fields = line.split()
            if len(fields) == 2:
                leases[fields[0]] = fields[1]
        return leases

    def write(self, leases: dict[str, str]) -> None:
        assert self.lock_fd >= 0, "write leases only under the lock"
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write("".join(f"{ip} {cid}\n" for ip, cid in sorted(leases.items())))
        os.rename(tmp, self.path)

    def allocate(self, cid: str, subnet: Subnet, wanted: str | None) -> str:
        """Lease ``wanted`` or the lowest free address to ``cid`` (under the lock)."""
        import ipaddress

        root = os.path.dirname(self.dir)
        leases = {ip: owner for ip, owner in self.read().items()
                  if _owner_alive(root, owner) and ipaddress.IPv4Address(ip) in subnet.net}
        if wanted is not None:
            holder = leases.get(wanted)
            if holder is not None and holder != cid:
                raise PycontainError(f"--ip {wanted}: already in use by container {holder}")
            ip = wanted
        else:
            used = {int(ipaddress.IPv4Address(a)) for a in leases}
            for n in subnet.container_range():
                if n not in used:
                    break
            else:
                raise PycontainError(f"no free address left in {subnet} "
                                     f"({len(leases)} containers hold one)")
            ip = str(ipaddress.IPv4Address(n))
        leases[ip] = cid
        self.write(leases)
        return ip

    def release(self, cids: set[str]) -> list[str]:
        """Drop the leases of ``cids`` (under the lock); return the addresses."""
        leases = self.read()
        gone = [ip for ip, owner in leases.items() if owner in cids]
        if gone:
            self.write({ip: c for ip, c in leases.items() if c not in cids})
        return gone


# ----------------------------------------------------------------- netlink --

def _netlink_error(what: str, e: Exception) -> PycontainError:
    code = getattr(e, "code", None) or getattr(e, "errno", None) or 0
    return PycontainError(f"{what}: {strerror(code) if code else e}")


def _mac_for(ip: str) -> str:
    """A fixed MAC per address (locally administered, like docker's 02:42:..).

    Addresses are reused; when the same address comes back with the same
    MAC, the host's and the other containers' ARP caches stay right
    instead of pointing at a veth that no longer exists for a few seconds."""
    octets = [int(x) for x in ip.split(".")]
    return "02:50:" + ":".join(f"{o:02x}" for o in octets)


def _check_clash(ipr: object, subnet: Subnet, bridge_index: int | None) -> None:
    """Refuse a subnet that overlaps a route or address the host already has.

    Two routes to the same addresses would send some of the host's traffic
    into the bridge (or the containers' into the host's network)."""
    import ipaddress
    import socket

    for route in ipr.get_routes(family=socket.AF_INET, table=254):  # type: ignore[attr-defined]
        dst, plen = route.get_attr("RTA_DST"), route["dst_len"]
        if dst is None or plen == 0:
            continue  # the default route overlaps everything by design
        if bridge_index is not None and route.get_attr("RTA_OIF") == bridge_index:
            continue
        other = ipaddress.IPv4Network(f"{dst}/{plen}", strict=False)
        if other.overlaps(subnet.net):
            dev = _ifname(ipr, route.get_attr("RTA_OIF"))
            raise PycontainError(
                f"bridge subnet {subnet} clashes with the host's route {other}"
                f"{' dev ' + dev if dev else ''}; choose another with {SUBNET_ENV}=CIDR")
    for addr in ipr.get_addr(family=socket.AF_INET):  # type: ignore[attr-defined]
        if bridge_index is not None and addr["index"] == bridge_index:
            continue
        a = addr.get_attr("IFA_ADDRESS")
        if a and ipaddress.IPv4Address(a) in subnet.net:
            raise PycontainError(
                f"bridge subnet {subnet} contains the host's address {a} on "
                f"{_ifname(ipr, addr['index'])}; choose another with {SUBNET_ENV}=CIDR")


def _ifname(ipr: object, index: int | None) -> str:
    if not index:
        return ""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        return ipr.get_links(index)[0].get_attr("IFLA_IFNAME")  # type: ignore[attr-defined]
    except (NetlinkError, IndexError):
        return str(index)


def ensure_bridge(subnet: Subnet, tracer: Tracer | None = None) -> int:
    """Create ``pycontain0`` with the gateway address if it is missing;
    return its index.  Call with the leases lock held (creation races)."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=BRIDGE)
        index = found[0] if found else None
        _check_clash(ipr, subnet, index)
        try:
            if index is None:
                ipr.link("add", ifname=BRIDGE, kind="bridge", address=_mac_for(subnet.gateway))
                index = ipr.link_lookup(ifname=BRIDGE)[0]
                _emit(tracer, f"ip link add {BRIDGE} type bridge")
            have = [(a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                    for a in ipr.get_addr(family=2, index=index)]
            if (subnet.gateway, subnet.prefixlen) not in have:
                if have:
                    addrs = ", ".join(f"{a}/{p}" for a, p in have)
                    raise PycontainError(
                        f"bridge {BRIDGE} has {addrs}, not {subnet.gateway}/{subnet.prefixlen}"
                        f" for subnet {subnet}: remove it ('ip link del {BRIDGE}') once no "
                        f"container uses it, or set {SUBNET_ENV} to match")
                ipr.addr("add", index=index, address=subnet.gateway, prefixlen=subnet.prefixlen)
                _emit(tracer, f"ip addr add {subnet.gateway}/{subnet.prefixlen} dev {BRIDGE}")
            ipr.link("set", index=index, state="up")
        except NetlinkError as e:
            raise _netlink_error(f"setting up bridge {BRIDGE}", e) from None
    return index


def _emit(tracer: Tracer | None, text: str) -> None:
    if tracer is not None:
        tracer.emit("net", text)


# -------------------------------------------------------------------- nft --

def _nft(args: list[str], script: str | None = None) -> str:
    """Run nft; its first error line becomes a one-line PycontainError."""
    import subprocess

    try:
        out = subprocess.run(["nft", *args], input=script, capture_output=True, text=True,
                             timeout=20, check=False)
    except FileNotFoundError:
        raise PycontainError("nft not found: outbound NAT needs nftables "
                             "(apt-get install nftables)") from None
    if out.returncode != 0:
        lines = [ln.strip() for ln in out.stderr.splitlines() if ln.strip()]
        raise PycontainError(f"nft {' '.join(args)}: {lines[0] if lines else 'failed'}")
    return out.stdout


def _add_masquerade(cid: str, ip: str) -> int:
    """Add this container's masquerade rule; return its handle.

    Table and chain are created on first use ('add' is idempotent) in the
    same transaction.  ``oifname != pycontain0`` keeps container-to-
    container and container-to-host traffic un-NATed, as docker does."""
    script = (
        f"add table ip {NFT_TABLE}\n"
        f"add chain ip {NFT_TABLE} {NFT_CHAIN} "
        "{ type nat hook postrouting priority srcnat; policy accept; }\n"
        f"add rule ip {NFT_TABLE} {NFT_CHAIN} ip saddr {ip} oifname != \"{BRIDGE}\" "
        f"masquerade comment \"{RULE_TAG}{cid}\"\n"
    )
    out = _nft(["--echo", "--handle", "-f", "-"], script)
    for line in out.splitlines():
        if line.startswith("add rule") and "# handle " in line:
            return int(line.rsplit("# handle ", 1)[1].split()[0])
    return -1


def nat_rules() -> list[tuple[int, str, dict]]:
    """Our NAT rules as (handle, container id, nft JSON rule)."""
    import json

    try:
        out = _nft(["-j", "list", "chain", "ip", NFT_TABLE, NFT_CHAIN])
    except PycontainError:
        return []  # no nft, or no table/chain yet: no rules of ours
    rules = []
    for item in json.loads(out).get("nftables", []):
        rule = item.get("rule")
        if rule and str(rule.get("comment", "")).startswith(RULE_TAG):
            rules.append((rule["handle"], rule["comment"][len(RULE_TAG):], rule))
    return rules


def _delete_rule(handle: int) -> None:
    _nft(["delete", "rule", "ip", NFT_TABLE, NFT_CHAIN, "handle", str(handle)])


def _enable_forwarding(tracer: Tracer | None) -> str | None:
    """Masquerading only helps if the host routes between interfaces.
    docker and podman turn this on too; it stays on."""
    path = "/proc/sys/net/ipv4/ip_forward"
    try:
        with open(path) as f:
            if f.read().strip() == "1":
                return None
        with open(path, "w") as f:
            f.write("1")
    except OSError as e:
        return f"cannot enable {path}: {strerror(e.errno or 0)}"
    _emit(tracer, f"write {path} <- '1'  (route between the bridge and the host's links)")
    return None


# ------------------------------------------------------------- the proxy --

def _listen(port: Publish) -> socket.socket:
    """Bind the host side of a published port, in pycontain itself, so that
    'port already in use' stops the run before the container starts."""
    import socket

    kind = socket.SOCK_STREAM if port.proto == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(socket.AF_INET, kind)
    try:
        if port.proto == "tcp":
            # Only skips TIME_WAIT leftovers; a live listener still wins.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((port.host_ip, port.host_port))
        if port.proto == "tcp":
            sock.listen(128)
    except OSError as e:
        sock.close()
        why = ("already in use" if e.errno == 98 else strerror(e.errno or 0))
        raise PycontainError(f"-p {port.text}: port {port.host_port}/{port.proto} on "
                             f"{port.host_ip} is {why}" if e.errno == 98 else
                             f"-p {port.text}: binding {port.host_ip}:{port.host_port}/"
                             f"{port.proto}: {why}") from None
    return sock


def _start_proxy(ports: list[Publish], ctr_ip: str) -> tuple[subprocess.Popen, int]:
    """Serve the published ports with a userspace proxy; return it and the
    write end of its lifeline.

    Why a proxy and not DNAT: DNAT in the prerouting hook never sees the
    host's own connections to 127.0.0.1; catching those takes an output-
    hook rule *and* ``route_localnet=1``, which lets 127/8 packets be
    routed off the loopback (kube-proxy's CVE-2020-8558).  A proxy that
    listens on the host answers on 127.0.0.1 and every other host address
    alike, needs no forwarding, and its bind() reports a busy port before
    the container starts.  The cost: the container sees the proxy's
    address as the client's.

    The proxy dies with the container: pycontain holds the write end of a
    pipe whose read end the proxy watches.  When pycontain exits, however
    it exits (SIGKILL included), the pipe reaches EOF and the proxy quits.
    ``release()`` closes the pipe and also signals and reaps it."""
    import subprocess
    import sys

    socks = [_listen(p) for p in ports]
    lifeline_r, lifeline_w = os.pipe2(os.O_CLOEXEC)
    args = [sys.executable, "-s", "-m", "pycontain.portproxy", "--lifeline", str(lifeline_r)]
    for port, sock in zip(ports, socks):
        args.append(f"{port.proto}:{sock.fileno()}:{ctr_ip}:{port.ctr_port}")
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = pkg_parent + (os.pathsep + env["PYTHONPATH"]
                                      if env.get("PYTHONPATH") else "")
    try:
        proc = subprocess.Popen(
            args, pass_fds=[lifeline_r, *(s.fileno() for s in socks)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # no terminal signals: ^C goes to the container
            env=env)
    except OSError as e:
        os.close(lifeline_w)
        raise PycontainError(f"starting the port proxy: {strerror(e.errno or 0)}") from None
    finally:
        os.close(lifeline_r)
        for s in socks:
            s.close()
    return proc, lifeline_w


def _kill_token(token: str) -> bool:
    """SIGKILL the process a ``pid starttime`` token names, if it still is it."""
    from .state import owner_alive

    if not owner_alive(token):  # gone, or exited and only unreaped
        return False
    try:
        os.kill(int(token.split()[0]), 9)
    except (OSError, ValueError):
        return False
    return True


# -------------------------------------------------------------- attachment --

class Attachment:
    """One container's place on the bridge, from lease to cleanup."""

    __slots__ = ("cid", "config", "ip", "lifeline", "nat_handle", "proxy", "root", "state",
                 "veth")

    def __init__(self, cid: str, config: BridgeConfig, st: ContainerState) -> None:
        self.cid, self.config, self.state = cid, config, st
        self.root = st.root
        self.ip = ""
        self.veth = (VETH_PREFIX + cid)[:15]
        self.proxy: subprocess.Popen | None = None
        self.lifeline = -1
        self.nat_handle = -1

    @classmethod
    def prepare(cls, cid: str, config: BridgeConfig, st: ContainerState,
                tracer: Tracer | None = None) -> Attachment:
        """Everything that can be done before the container exists: the
        bridge, the lease, the NAT rule and the port proxy.  Undoes itself
        if any of it fails."""
        self = cls(cid, config, st)
        try:
            self._prepare(tracer)
        except BaseException:
            self.release(tracer)
            raise
        return self

    def _record(self) -> None:
        """What collect_garbage needs if we are killed: written *before*
        the things it names exist."""
        lines = [f"veth {self.veth}"]
        if self.ip:
            lines.append(f"ip {self.ip}")
        if self.proxy is not None:
            from .state import owner_token

            lines.append(f"proxy {owner_token(self.proxy.pid)}")
        self.state.write("network", "\n".join(lines) + "\n")

    def _prepare(self, tracer: Tracer | None) -> None:
        subnet = self.config.subnet
        self._record()
        leases = Leases(self.root)
        with leases:
            ensure_bridge(subnet, tracer)
            self.ip = leases.allocate(self.cid, subnet, self.config.ip)
        self._record()
        _emit(tracer, f"lease {self.ip}/{subnet.prefixlen} from {subnet} "
                      f"({os.path.join(self.root, 'network', 'leases')})")
        try:
            self.nat_handle = _add_masquerade(self.cid, self.ip)
        except PycontainError as e:
            # The container still reaches the host and its neighbours.
            import sys

            sys.stderr.write(f"pycontain: warning: no outbound NAT for {self.ip}: "
                             f"{e.message}\n")
        else:
            _emit(tracer, f"nft add rule ip {NFT_TABLE} {NFT_CHAIN} ip saddr {self.ip} "
                          f"oifname != {BRIDGE} masquerade  (handle {self.nat_handle})")
            problem = _enable_forwarding(tracer)
            if problem:
                import sys

                sys.stderr.write(f"pycontain: warning: no outbound NAT for {self.ip}: "
                                 f"{problem}\n")
        if self.config.publish:
            self.proxy, self.lifeline = _start_proxy(self.config.publish, self.ip)
            self._record()
            _emit(tracer, f"port proxy pid {self.proxy.pid}: "
                          + ", ".join(str(p) for p in self.config.publish)
                          + f" -> {self.ip}")

    def etc_files(self, hostname: str) -> dict[str, str]:
        """/etc/hosts names the container by its bridge address; resolv.conf
        is the host's, minus nameservers the container cannot reach."""
        return {
            "/etc/hosts": ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                           f"{self.ip}\t{hostname}\n"),
            "/etc/resolv.conf": resolv_conf(),
        }

    def connect(self, pid: int, tracer: Tracer | None = None) -> None:
        """Wire the container (whose init waits for release()) to the bridge."""
        from pyroute2 import IPRoute, NetNS
        from pyroute2.netlink.exceptions import NetlinkError

        subnet = self.config.subnet
        netns = f"/proc/{pid}/ns/net"
        try:
            with IPRoute() as ipr:
                bridge = ipr.link_lookup(ifname=BRIDGE)
                if not bridge:
                    raise PycontainError(f"bridge {BRIDGE} disappeared while starting")
                # Create the peer straight inside the container's netns, under
                # its final name: no temporary name can clash on the host.
                ipr.link("add", ifname=self.veth, kind="veth",
                         peer={"ifname": CTR_IFNAME, "address": _mac_for(self.ip),
                               "net_ns_pid": pid})
                host_end = ipr.link_lookup(ifname=self.veth)[0]
                ipr.link("set", index=host_end, master=bridge[0], state="up")
            _emit(tracer, f"ip link add {self.veth} type veth peer {CTR_IFNAME} netns {netns};"
                          f" ip link set {self.veth} master {BRIDGE} up")
            with NetNS(netns, flags=0) as ns:
                eth = ns.link_lookup(ifname=CTR_IFNAME)[0]
                ns.addr("add", index=eth, address=self.ip, prefixlen=subnet.prefixlen)
                ns.link("set", index=eth, state="up")
                ns.route("add", dst="0.0.0.0/0", gateway=subnet.gateway)
            _emit(tracer, f"in {netns}: ip addr add {self.ip}/{subnet.prefixlen} dev "
                          f"{CTR_IFNAME}; ip link set {CTR_IFNAME} up; "
                          f"ip route add default via {subnet.gateway}")
        except NetlinkError as e:
            raise _netlink_error(f"connecting the container to {BRIDGE}", e) from None

    def release(self, tracer: Tracer | None = None) -> None:
        """Undo everything; safe to call twice and after a partial prepare."""
        if self.lifeline >= 0:
            os.close(self.lifeline)
            self.lifeline = -1
        if self.proxy is not None:
            self.proxy.kill()
            self.proxy.wait()
            _emit(tracer, f"stopped the port proxy (pid {self.proxy.pid})")
            self.proxy = None
        if os.path.exists(f"/sys/class/net/{self.veth}"):
            # Usually gone already: the container's netns died with its
            # last process and took the veth pair with it.
            _delete_links([self.veth])
            _emit(tracer, f"ip link del {self.veth}")
        if self.nat_handle >= 0:
            try:
                _delete_rule(self.nat_handle)
            except PycontainError:
                pass  # someone flushed it; nothing left to remove
            _emit(tracer, f"nft delete rule ip {NFT_TABLE} {NFT_CHAIN} "
                          f"handle {self.nat_handle}")
            self.nat_handle = -1
        if self.ip:
            leases = Leases(self.root)
            with leases:
                leases.release({self.cid})
                _emit(tracer, f"released lease {self.ip}")
                _remove_bridge_if_unused(leases, tracer)
            self.ip = ""


def _remove_bridge_if_unused(leases: Leases, tracer: Tracer | None = None) -> bool:
    """The last container out removes the bridge and the (then empty) NAT
    table, so that nothing of ours stays on the host.  Call it holding the
    lease lock: a container starting meanwhile takes a lease under that lock
    before it relies on the bridge (ensure_bridge re-creates it)."""
    if leases.read() or not os.path.exists(f"/sys/class/net/{BRIDGE}"):
        return False
    _delete_links([BRIDGE])
    _emit(tracer, f"ip link del {BRIDGE}  (no container uses it any more)")
    try:
        _nft(["delete", "table", "ip", NFT_TABLE])
        _emit(tracer, f"nft delete table ip {NFT_TABLE}")
    except PycontainError:
        pass  # no nft, or no table: nothing to remove
    return True


def _delete_links(names: list[str]) -> None:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        for name in names:
            try:
                ipr.link("del", ifname=name)
            except NetlinkError as e:
                if e.code != 19:  # ENODEV: gone meanwhile
                    raise _netlink_error(f"ip link del {name}", e) from None


def resolv_conf() -> str:
    """The host's resolver config as seen from a container on the bridge.

    Loopback nameservers (127.0.0.53 of systemd-resolved, a local dnsmasq)
    would point into the container's own lo, and the bridge carries IPv4
    only, so both are dropped; systemd-resolved's upstream list is used
    when that leaves nothing."""
    kept_other: list[str] = []
    for path in ("/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"):
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        servers, other = [], []
        for line in lines:
            fields = line.split()
            if fields and fields[0] == "nameserver":
                if len(fields) > 1 and not fields[1].startswith("127.") and ":" not in fields[1]:
                    servers.append(line)
            elif fields and not line.lstrip().startswith(("#", ";")):
                other.append(line)
        if servers:
            return "\n".join(other + servers) + "\n"
        kept_other = kept_other or other
    return "\n".join(["# pycontain: the host lists no nameserver a container can reach",
                      *kept_other]) + "\n"


# ----------------------------------------------------- garbage collection --

def collect_garbage(root: str) -> list[str]:
    """Remove the network leftovers of containers whose pycontain died.

    Cheap when there is nothing to do (a few reads, no pyroute2, no nft):
    it runs at the start of every container while others exist.  Returns a
    line per thing removed."""
    from .state import list_ids

    removed: list[str] = []
    dead: set[str] = set()
    for cid in list_ids(root):
        if _owner_alive(root, cid):
            continue
        path = os.path.join(root, "containers", cid, "network")
        try:
            with open(path) as f:
                record = dict(line.split(" ", 1) for line in f.read().splitlines() if " " in line)
        except OSError:
            continue
        dead.add(cid)
        token = record.get("proxy")
        if token and _kill_token(token):
            removed.append(f"port proxy pid {token.split()[0]}")

    leases = Leases(root)
    stale = {c for c in leases.read().values() if not _owner_alive(root, c)}
    if stale:
        with leases:
            for ip in leases.release(stale):
                removed.append(f"lease {ip}")
            if _remove_bridge_if_unused(leases):
                removed.append(f"bridge {BRIDGE} and nft table {NFT_TABLE}")
    dead |= stale

    try:
        links = os.listdir("/sys/class/net")
    except OSError:
        links = []
    orphans = [name for name in links if _is_stale_veth(name, root)]
    if orphans:
        _delete_links(orphans)
        removed += [f"veth {name}" for name in orphans]

    if dead or orphans:
        for handle, cid, _ in nat_rules():
            if not _owner_alive(root, cid):
                try:
                    _delete_rule(handle)
                except PycontainError:
                    continue
                removed.append(f"nft rule {handle} ({RULE_TAG}{cid})")
    return removed


def _is_stale_veth(name: str, root: str) -> bool:
    """``pc<container id>`` (our naming, see Attachment) of no live container.

    Usually the kernel has removed it already, with the container's netns;
    one is left only if pycontain died between creating the pair and
    moving its peer, or while the netns was still held."""
    suffix = name[len(VETH_PREFIX):]
    if not name.startswith(VETH_PREFIX) or len(suffix) != 12:
        return False
    if any(c not in "0123456789abcdef" for c in suffix):
        return False
    return not _owner_alive(root, suffix)


__all__ = ["BRIDGE", "DEFAULT_SUBNET", "Attachment", "BridgeConfig", "Publish",
           "bridge_config", "collect_garbage", "ensure_bridge", "nat_rules", "parse_publish",
           "resolv_conf"]
