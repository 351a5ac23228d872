"""A real HAProxy (Debian's ``haproxy``, 2.6) on loopback, started and stopped by the tests.

:func:`tcp_config` and :func:`http_config` write the configurations that
docs/CLUSTER.md shows (a test checks that the document carries them
verbatim). :class:`HAProxy` checks a configuration (``haproxy -c``), runs it
in the foreground (``-db``: no fork, so the process is HAProxy itself), waits
until its stats socket answers and its frontend accepts, reads its servers'
states from the stats socket, and stops it: SIGUSR1 (a soft stop, bounded by
``hard-stop-after``), then SIGTERM and SIGKILL if it lingers. ``scripts/test``
installs the package when it is missing; a test that cannot find the command
fails with that advice.

HAProxy connects to the nodes from 127.0.0.9 (``source``): the one address
the nodes trust as a proxy. Clients bind other 127.0.0.x addresses.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = [
    "PROXY_HOST",
    "HAProxy",
    "haproxy_binary",
    "http_config",
    "running_haproxy",
    "tcp_config",
]

PROXY_HOST = "127.0.0.9"
"""The address HAProxy connects to the nodes from, and the one they trust."""


def haproxy_binary() -> str:
    """The path of ``haproxy``; raises with advice when it is missing."""
    found = shutil.which("haproxy") or shutil.which("/usr/sbin/haproxy")
    if found is None:
        raise RuntimeError("haproxy not found: run scripts/test, which installs it (apt-get)")
    return found


_GLOBAL = """\
global
    log stderr format raw local0 info
    stats socket {stats} mode 600 level admin
    maxconn 4096
    hard-stop-after 5s

defaults
    log global
    option dontlognull
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout tunnel 1h
    timeout client-fin 5s
    timeout server-fin 5s
"""

_CHECK = """\
    option httpchk
    http-check send meth GET uri {uri}
    http-check expect status 200
"""


def _servers(nodes: Sequence[tuple[int, int]], options: str, host: str = "127.0.0.1") -> list[str]:
    """One ``server`` line per node, ``(port, admin port)``: checked on the admin port."""
    return [
        f"    server n{i} {host}:{port} {options}check port {admin} inter 500ms fall 2 rise 2"
        for i, (port, admin) in enumerate(nodes)
    ]


def tcp_config(
    front: int,
    nodes: Sequence[tuple[int, int]],
    *,
    send_proxy: str = "send-proxy-v2 proxy-v2-options crc32c",
    stats: str = "/run/haproxy/admin.sock",
) -> str:
    """``mode tcp`` with a PROXY header to each node; a fallback when no node is ready.

    ``nodes`` are the nodes' ``(port, admin port)``. The servers of
    ``nodes`` are checked on ``/readyz``. When none is ready (Redis gone for the
    whole cluster makes every node not ready), the clients go to
    ``nodes_alive``, the same servers checked on ``/healthz``: nodes that
    admit under ``[redis] on_unavailable`` rather than nobody at all.
    """
    options = f"{send_proxy} " if send_proxy else ""
    lines = [
        _GLOBAL.format(stats=stats),
        "frontend ws",
        "    mode tcp",
        "    option tcplog",
        f"    bind 127.0.0.1:{front}",
        "    use_backend nodes if { nbsrv(nodes) gt 0 }",
        "    default_backend nodes_alive",
        "",
    ]
    for name, uri in (("nodes", "/readyz"), ("nodes_alive", "/healthz")):
        lines += [f"backend {name}", "    mode tcp", "    balance roundrobin"]
        lines += [f"    source {PROXY_HOST}", _CHECK.format(uri=uri).rstrip("\n")]
        lines += [*_servers(nodes, options), ""]
    return "\n".join(lines)


def http_config(
    front: int,
    nodes: Sequence[tuple[int, int]],
    *,
    forwarded: str = "option forwardfor",
    stats: str = "/run/haproxy/admin.sock",
) -> str:
    """``mode http`` adding ``X-Forwarded-For`` (or, with ``forwarded``, RFC 7239 ``Forwarded``).

    HAProxy 2.6 has no ``option forwarded`` (2.7 has): the ``Forwarded`` header
    is added with ``http-request add-header Forwarded for=%[src]``.
    """
    lines = [
        _GLOBAL.format(stats=stats),
        "frontend ws",
        "    mode http",
        "    option httplog",
        f"    bind 127.0.0.1:{front}",
        "    timeout http-request 5s",
        "    default_backend nodes",
        "",
        "backend nodes",
        "    mode http",
        "    balance roundrobin",
        f"    {forwarded}",
        f"    source {PROXY_HOST}",
        _CHECK.format(uri="/readyz").rstrip("\n"),
        *_servers(nodes, ""),
        "",
    ]
    return "\n".join(lines)


class HAProxy:
    """One HAProxy process in the foreground, with its files in a temporary directory."""

    def __init__(self, config: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ws-haproxy-"))
        self.stats = self.dir / "stats.sock"
        self.config_path = self.dir / "haproxy.cfg"
        self.config_path.write_text(config.replace("/run/haproxy/admin.sock", str(self.stats)))
        self.log_path = self.dir / "haproxy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, front: int, timeout: float = 10.0) -> HAProxy:
        binary = haproxy_binary()
        check = subprocess.run(
            [binary, "-c", "-f", str(self.config_path)], capture_output=True, text=True
        )
        if check.returncode != 0:
            raise RuntimeError(f"haproxy -c refused the config: {check.stdout}{check.stderr}")
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [binary, "-db", "-f", str(self.config_path)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while not (self._answers() and _accepts(front)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"haproxy did not start: {self.output()}")
            time.sleep(0.02)
        return self

    def command(self, line: str) -> str:
        """A stats socket command (``show stat``, ``show info``)."""
        with socket.socket(socket.AF_UNIX) as stats:
            stats.settimeout(2)
            stats.connect(str(self.stats))
            stats.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := stats.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def servers(self, backend: str) -> dict[str, str]:
        """``{server: status}`` of a backend (``UP``, ``DOWN``, ``UP 1/2``...)."""
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        found = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row.get("pxname") == backend and row.get("svname") not in ("FRONTEND", "BACKEND"):
                found[row["svname"]] = row["status"]
        return found

    def _answers(self) -> bool:
        try:
            return "Name: HAProxy" in self.command("show info")
        except OSError:
            return False

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGUSR1)  # soft stop: listeners close, tunnels may finish
        for stop in (proc.terminate, proc.kill):
            try:
                proc.wait(6)
                return
            except subprocess.TimeoutExpired:
                stop()
        proc.wait(5)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def running_haproxy(config: str, front: int) -> Iterator[HAProxy]:
    """HAProxy with ``config``, its frontend on ``front``, for the block."""
    proxy = HAProxy(config).start(front)
    try:
        yield proxy
    finally:
        proxy.cleanup()
