"""--network none|bridge, published ports, and cleanup of every network object.

Traffic stays on loopback and on the bridge's subnet (the containers these
tests start, and the bridge's gateway address on the host).  Outbound NAT
is checked by reading the nftables rules that were installed, never by
reaching off the machine.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pchelpers import REPO, leftovers, one_line_error, requires_root

pytestmark = requires_root

BRIDGE = "pycontain0"
LEASES = "/run/pycontain/network/leases"
GET_IP = "ip -4 -o addr show eth0 | sed 's/.* inet \\([0-9.]*\\)\\/.*/\\1/'"
requires_nft = pytest.mark.skipif(shutil.which("nft") is None,
                                  reason="nft is not installed (apt-get install nftables)")


# ---------------------------------------------------------------- helpers --

def nft_rules() -> list[dict]:
    """Every nftables rule whose comment is one of ours."""
    if shutil.which("nft") is None:
        return []
    out = subprocess.run(["nft", "-j", "list", "ruleset"], capture_output=True, text=True,
                         check=True).stdout
    return [item["rule"] for item in json.loads(out)["nftables"]
            if "rule" in item and str(item["rule"].get("comment", "")).startswith("pycontain:")]


def net_leftovers() -> set[str]:
    """Network objects of ours on the host: veths, leases, NAT rules, proxies."""
    found = {f"link {n}" for n in os.listdir("/sys/class/net") if re.fullmatch(r"pc[0-9a-f]{12}", n)}
    if os.path.exists(LEASES):
        found |= {f"lease {line}" for line in Path(LEASES).read_text().splitlines()}
    found |= {f"rule {r['comment']}" for r in nft_rules()}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"pycontain.portproxy" in cmdline and state != "Z":
            found.add(f"proxy {pid}")
    return found


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_line(proc: subprocess.Popen, timeout: float = 20) -> str:
    """The next line the container prints, without waiting for it to exit."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no output within {timeout}s"
    return proc.stdout.readline().decode().strip()


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # forwarded to the container
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def http_get(host: str, port: int, deadline: float = 15) -> str:
    """GET / until the body arrives (the server may still be starting)."""
    end = time.monotonic() + deadline
    last = ""
    while time.monotonic() < end:
        try:
            with socket.create_connection((host, port), timeout=2) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
            last = data.decode(errors="replace")
            if "\r\n\r\n" in last:
                return last
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    raise AssertionError(f"no HTTP answer from {host}:{port}: {last!r}")


HTTPD = ("mkdir -p /dev/shm/www && echo {body} > /dev/shm/www/index.html && "
         "exec httpd -f -p {port} -h /dev/shm/www")


@pytest.fixture
def bridge(pycontain, rootfs):
    """Keep the bridge up for the test (the last container out removes it):
    a bridge container that sleeps.  Yields the gateway address."""
    keeper = pycontain.popen("run", "--network", "bridge", rootfs, "/bin/sh", "-c",
                             "ip route | sed -n 's/^default via \\([0-9.]*\\).*/\\1/p'; "
                             "sleep 120", stdout=subprocess.PIPE)
    try:
        gateway = read_line(keeper)
        assert re.fullmatch(r"[0-9.]+", gateway), gateway
        yield gateway
    finally:
        stop(keeper)


# ------------------------------------------------------------------ modes --

def test_network_none_shows_only_lo(pycontain, rootfs):
    out = pycontain.run(rootfs, "/bin/sh", "-c", "ls /sys/class/net; ip -o link")
    assert out.returncode == 0, out.stderr
    names, _, links = out.stdout.partition("1:")
    assert names.split() == ["lo"]
    assert len([ln for ln in ("1:" + links).splitlines() if ln.strip()]) == 1
    assert "UP" in links


def test_bridge_address_route_and_etc_files(pycontain, rootfs, bridge):
    out = pycontain.run("--network", "bridge", "--hostname", "web1", rootfs, "/bin/sh", "-c",
                        f"{GET_IP}; ip route; echo ---; cat /etc/hosts; echo ---; "
                        "cat /etc/resolv.conf; echo ---; ls /sys/class/net")
    assert out.returncode == 0, out.stderr
    ip, rest = out.stdout.split("\n", 1)
    routes, hosts, resolv, links = rest.split("---\n")
    gateway = re.search(r"default via ([0-9.]+) dev eth0", routes).group(1)
    assert re.fullmatch(r"[0-9.]+", ip) and ip != gateway
    assert links.split() == ["eth0", "lo"]
    assert re.search(rf"^{re.escape(ip)}\s+web1$", hosts, re.MULTILINE), hosts
    # A loopback nameserver would be the container's own lo: never passed on.
    assert not re.search(r"^nameserver\s+127\.", resolv, re.MULTILINE), resolv
    # The host end is on the bridge, with the gateway address.
    host = subprocess.run(["ip", "-o", "-4", "addr", "show", BRIDGE], capture_output=True,
                          text=True, check=True).stdout
    assert f"inet {gateway}/" in host


def test_two_bridge_containers_reach_each_other(pycontain, rootfs):
    server = pycontain.popen("run", "--network", "bridge", rootfs, "/bin/sh", "-c",
                             f"{GET_IP}; " + HTTPD.format(body="hello-from-a", port=8080),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ip = read_line(server)
        assert re.fullmatch(r"[0-9.]+", ip), ip
        out = pycontain.run("--network", "bridge", rootfs, "/bin/sh", "-c",
                            f"for i in $(seq 50); do wget -q -O - http://{ip}:8080/ && exit 0;"
                            " sleep 0.1; done; exit 1")
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "hello-from-a"
    finally:
        stop(server)


def test_bridge_container_reaches_a_host_server_via_the_gateway(pycontain, rootfs, bridge):
    with socket.socket() as srv:
        srv.bind((bridge, 0))  # the gateway address, on pycontain0 only
        srv.listen(1)
        port = srv.getsockname()[1]
        seen: list[str] = []

        def answer() -> None:
            conn, peer = srv.accept()
            seen.append(peer[0])
            conn.sendall(b"hello-from-host\n")
            conn.close()

        t = threading.Thread(target=answer, daemon=True)
        t.start()
        out = pycontain.run("--network", "bridge", rootfs, "/bin/sh", "-c",
                            f"{GET_IP}; nc {bridge} {port}")
        t.join(5)
    assert out.returncode == 0, out.stderr
    ip, reply = out.stdout.split("\n", 1)
    assert reply.strip() == "hello-from-host"
    assert seen == [ip]  # not NATed: the host sees the container's own address


@requires_nft
def test_outbound_nat_rule_is_installed_while_running(pycontain, rootfs):
    proc = pycontain.popen("run", "--network", "bridge", rootfs, "/bin/sh", "-c",
                           f"{GET_IP}; sleep 30", stdout=subprocess.PIPE)
    try:
        ip = read_line(proc)
        rules = [r for r in nft_rules() if json.dumps(r).count(f'"{ip}"')]
        assert len(rules) == 1, nft_rules()
        expr = json.dumps(rules[0]["expr"])
        assert '"masquerade"' in expr
        assert f'"right": "{BRIDGE}"' in expr and '"op": "!="' in expr
        assert rules[0]["chain"] == "postrouting"
        assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"
        comment = rules[0]["comment"]
    finally:
        stop(proc)
    assert comment not in {r["comment"] for r in nft_rules()}


# --------------------------------------------------------- published ports --

def test_published_port_answers_on_127_0_0_1(pycontain, rootfs):
    before = net_leftovers()
    port = free_port()
    proc = pycontain.popen("run", "--network", "bridge", "-p", f"127.0.0.1:{port}:8080", rootfs,
                           "/bin/sh", "-c", HTTPD.format(body="published", port=8080),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        reply = http_get("127.0.0.1", port)
        assert reply.startswith("HTTP/1.") and reply.rstrip().endswith("published"), reply
        assert any(x.startswith("proxy ") for x in net_leftovers() - before)
    finally:
        stop(proc)
    assert net_leftovers() - before == set()
    with pytest.raises(OSError):  # the port is closed again
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_port_in_use_is_a_one_line_error(pycontain, rootfs):
    before = net_leftovers()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        out = pycontain.run("--network", "bridge", "-p", f"127.0.0.1:{port}:80", rootfs, "true")
    assert out.returncode == 125
    assert f"port {port}/tcp on 127.0.0.1 is already in use" in one_line_error(out)
    assert net_leftovers() - before == set()


def test_port_proxy_relays_udp_and_tcp_and_dies_with_its_lifeline():
    """The proxy itself, on loopback only: a UDP echo server stands in for
    the container (busybox has no UDP server to run inside one)."""
    sys.path.insert(0, str(REPO))
    from pycontain.network import Publish, _start_proxy

    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echo.bind(("127.0.0.1", 0))
    tcp_srv = socket.socket()
    tcp_srv.bind(("127.0.0.1", 0))
    tcp_srv.listen(1)

    def serve() -> None:
        data, peer = echo.recvfrom(100)
        echo.sendto(b"echo:" + data, peer)
        conn, _ = tcp_srv.accept()
        conn.sendall(b"tcp:" + conn.recv(100))
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    udp_port, tcp_port = free_port(socket.SOCK_DGRAM), free_port()
    proxy, lifeline = _start_proxy(
        [Publish("127.0.0.1", udp_port, echo.getsockname()[1], "udp"),
         Publish("127.0.0.1", tcp_port, tcp_srv.getsockname()[1], "tcp")], "127.0.0.1")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.settimeout(10)
            c.sendto(b"ping", ("127.0.0.1", udp_port))
            assert c.recvfrom(100)[0] == b"echo:ping"
        with socket.create_connection(("127.0.0.1", tcp_port), timeout=10) as c:
            c.sendall(b"hi")
            assert c.recv(100) == b"tcp:hi"
    finally:
        os.close(lifeline)  # what pycontain's exit (even SIGKILL) does
        assert proxy.wait(timeout=10) == 0
        echo.close()
        tcp_srv.close()


# -------------------------------------------------------------- addresses --

def test_ten_concurrent_bridge_containers_get_distinct_addresses(pycontain, rootfs, tmp_path):
    sync = tmp_path / "sync"
    sync.mkdir()
    script = f"{GET_IP}; while [ ! -e /sync/go ]; do sleep 0.1; done"
    procs = [pycontain.popen("run", "--network", "bridge", "-v", f"{sync}:/sync", rootfs,
                             "/bin/sh", "-c", script, stdout=subprocess.PIPE)
             for _ in range(10)]
    try:
        # All ten are alive at once: none can go before /sync/go exists.
        ips = [read_line(p, timeout=60) for p in procs]
        leased = Path(LEASES).read_text()
    finally:
        (sync / "go").touch()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                stop(p)
    assert len(set(ips)) == 10, ips
    assert all(re.fullmatch(r"[0-9.]+", ip) for ip in ips), ips
    assert all(ip in leased for ip in ips)
    assert [p.returncode for p in procs] == [0] * 10


def test_fixed_ip_and_an_address_in_use(pycontain, rootfs):
    first = pycontain.popen("run", "--network", "bridge", rootfs, "/bin/sh", "-c",
                            f"{GET_IP}; sleep 30", stdout=subprocess.PIPE)
    try:
        ip = read_line(first)
        wanted = ip.rsplit(".", 1)[0] + ".250"
        out = pycontain.run("--network", "bridge", "--ip", wanted, rootfs, "/bin/sh", "-c",
                            GET_IP)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == wanted
        out = pycontain.run("--network", "bridge", "--ip", ip, rootfs, "true")
        assert out.returncode == 125
        assert f"--ip {ip}: already in use by container" in one_line_error(out)
    finally:
        stop(first)


def test_subnet_clash_with_a_host_route_is_a_one_line_error(pycontain, rootfs):
    """Only reads the routing table: PYCONTAIN_SUBNET names a subnet the
    host already routes elsewhere, and the run must refuse before any link."""
    clash = None
    for line in Path("/proc/net/route").read_text().splitlines()[1:]:
        f = line.split()
        if f[0] != BRIDGE and int(f[7], 16) != 0:
            dest = socket.inet_ntoa(int(f[1], 16).to_bytes(4, "little"))
            plen = int(f[7], 16).bit_count()
            if plen <= 29:
                clash = f"{dest}/{plen}"
                break
    if clash is None:
        pytest.skip("the host has no connected IPv4 route to clash with")
    out = pycontain.run("--network", "bridge", rootfs, "true",
                        env={**os.environ, "PYCONTAIN_SUBNET": clash})
    assert out.returncode == 125
    assert f"bridge subnet {clash} clashes with the host's route" in one_line_error(out)


@pytest.mark.parametrize("args, message", [
    (["-p", "8080:80"], "-p needs --network bridge"),
    (["--ip", "172.29.0.9"], "--ip needs --network bridge"),
    (["--network", "bridge", "-p", "80"], "-p 80: wrong number of fields"),
    (["--network", "bridge", "-p", "1:99999"], "'99999' is not a port number"),
    (["--network", "bridge", "-p", "1:2/sctp"], "protocol 'sctp' is not tcp or udp"),
    (["--network", "bridge", "--ip", "10.1.2.3"], "--ip 10.1.2.3: not a container address"),
    (["--network", "overlay"], "--network overlay: must be none, host or bridge"),
])
def test_bad_network_options_are_one_line_errors(pycontain, rootfs, args, message):
    out = pycontain.run(*args, rootfs, "true", env={**os.environ, "PYCONTAIN_SUBNET": ""})
    assert out.returncode == 125
    assert message in one_line_error(out)


def test_the_default_path_never_imports_pyroute2(rootfs):
    code = ("import sys; from pycontain.cli import main; rc = main(['run', sys.argv[1], 'true']);"
            " print(rc, 'pyroute2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(rootfs)], capture_output=True,
                         text=True, check=False, cwd=REPO)
    assert out.stdout.split() == ["0", "False"], out


# ---------------------------------------------------------------- cleanup --

def test_fifty_sequential_bridge_runs_leave_nothing(pycontain, rootfs):
    before, state_before = net_leftovers(), set(leftovers())
    for i in range(50):
        out = pycontain.run("--network", "bridge", rootfs, "true")
        assert out.returncode == 0, (i, out.stderr)
    assert net_leftovers() - before == set()
    assert set(leftovers()) - state_before == set()
    # The last container out took the bridge with it.
    assert not os.path.exists(f"/sys/class/net/{BRIDGE}")


def test_sigkill_then_gc_leaves_nothing(pycontain, rootfs):
    before, state_before = net_leftovers(), set(leftovers())
    port = free_port()
    proc = pycontain.popen("run", "--network", "bridge", "-p", f"127.0.0.1:{port}:80", rootfs,
                           "/bin/sh", "-c", f"{GET_IP}; sleep 60", stdout=subprocess.PIPE)
    ip = read_line(proc)
    during = net_leftovers() - before
    assert any(x.startswith("link pc") for x in during), during
    assert any(x.startswith(f"lease {ip} ") for x in during), during
    if shutil.which("nft"):
        assert any(x.startswith("rule pycontain:") for x in during), during
    proc.kill()  # SIGKILL: pycontain cleans nothing up
    proc.wait()
    out = pycontain("gc")
    assert out.returncode == 0, out.stderr
    assert f"removed lease {ip}" in out.stdout
    deadline = time.monotonic() + 10  # the kernel frees a dead netns lazily
    while net_leftovers() - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert net_leftovers() - before == set()
    assert set(leftovers()) - state_before == set()
