"""The userspace proxy behind ``-p HOSTPORT:CTRPORT``: one per container.

pycontain binds the host sockets itself (so a busy port is an error before
the container starts) and hands them to this process, which relays each
connection to the container's bridge address.  network.py explains why a
proxy rather than DNAT (in short: 127.0.0.1 on the host must work).

Command line (built by network.py; the numbers are inherited fds)::

    python -m pycontain.portproxy --lifeline FD PROTO:FD:CTR_IP:CTR_PORT ...

The process lives exactly as long as the pipe behind ``--lifeline`` has a
writer: pycontain holds the only write end, so when pycontain exits for
any reason, SIGKILL included, the read below returns EOF and we exit.

Only the standard library, and threads rather than an event loop: a
handful of connections per container, and blocking code a student can
follow.
"""

from __future__ import annotations

import os
import socket
import sys
import threading

#: How long a UDP client's mapping lives without a reply (conntrack's
#: default for an unreplied UDP flow is 30 s; replied ones get 120 s).
UDP_IDLE_SECONDS = 60.0
#: How long to wait for the container to accept a forwarded connection.
CONNECT_TIMEOUT = 5.0
BUFSIZE = 65536


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy one direction until EOF, then half-close, so the other side
    still gets its answer (an HTTP client that shut down its write side)."""
    try:
        while True:
            data = src.recv(BUFSIZE)
            if not data:
                break
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        # A reset on either side: wake the other pump too.
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _tcp_connection(client: socket.socket, target: tuple[str, int]) -> None:
    try:
        upstream = socket.create_connection(target, timeout=CONNECT_TIMEOUT)
    except OSError:
        client.close()  # nothing listens in the container (yet): refuse
        return
    upstream.settimeout(None)
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def serve_tcp(listener: socket.socket, target: tuple[str, int]) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            continue  # e.g. ECONNABORTED, EMFILE: keep serving the others
        threading.Thread(target=_tcp_connection, args=(client, target), daemon=True).start()


def serve_udp(sock: socket.socket, target: tuple[str, int]) -> None:
    """One connected socket per client address: the container's replies on
    it go back to that client, as a NAT's mapping would."""
    clients: dict[tuple[str, int], socket.socket] = {}
    lock = threading.Lock()

    def replies(addr: tuple[str, int], upstream: socket.socket) -> None:
        upstream.settimeout(UDP_IDLE_SECONDS)
        try:
            while True:
                sock.sendto(upstream.recv(BUFSIZE), addr)
        except OSError:  # idle timeout, or ICMP port unreachable
            pass
        finally:
            with lock:
                clients.pop(addr, None)
            upstream.close()

    while True:
        try:
            data, addr = sock.recvfrom(BUFSIZE)
        except OSError:
            continue
        with lock:
            upstream = clients.get(addr)
            if upstream is None:
                upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                upstream.connect(target)
                clients[addr] = upstream
                threading.Thread(target=replies, args=(addr, upstream), daemon=True).start()
        try:
            upstream.send(data)
        except OSError:
            pass


def parse_args(argv: list[str]) -> tuple[int, list[tuple[str, int, tuple[str, int]]]]:
    """``--lifeline FD`` and ``PROTO:FD:IP:PORT`` items."""
    if len(argv) < 2 or argv[0] != "--lifeline":
        raise SystemExit("usage: portproxy --lifeline FD PROTO:FD:IP:PORT...")
    lifeline = int(argv[1])
    items = []
    for item in argv[2:]:
        proto, fd, ip, port = item.split(":")
        if proto not in ("tcp", "udp"):
            raise SystemExit(f"portproxy: unknown protocol {proto!r}")
        items.append((proto, int(fd), (ip, int(port))))
    return lifeline, items


def main(argv: list[str] | None = None) -> int:
    lifeline, items = parse_args(sys.argv[1:] if argv is None else argv)
    for proto, fd, target in items:
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        sock = socket.socket(socket.AF_INET, kind, fileno=fd)
        serve = serve_tcp if proto == "tcp" else serve_udp
        threading.Thread(target=serve, args=(sock, target), daemon=True).start()
    while True:
        try:
            if not os.read(lifeline, 1):
                break  # EOF: pycontain is gone, and so is the container
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            continue
    # _exit: daemon threads may be blocked in accept(); do not wait for them.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
