"""A real mosquitto on 127.0.0.1 for tests and benchmarks: mocks would hide what matters here
(wills, retained state, reconnects, auth and TLS handshakes)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
)
HOST = "127.0.0.1"


def mosquitto_missing_reason() -> str | None:
    """Why broker tests cannot run here, or None when they can."""
    if MOSQUITTO is None:
        return "mosquitto is not installed (apt-get install mosquitto)"
    return None


def skip_without_mosquitto() -> None:
    """Skip the calling test with the reason when there is no mosquitto."""
    reason = mosquitto_missing_reason()
    if reason is not None:
        import pytest

        pytest.skip(reason)


def _free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _run(*cmd: str, cwd: Path) -> None:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {result.stderr.strip()}")


def _make_certs(directory: Path) -> None:
    """A throwaway CA, a server cert for 127.0.0.1/localhost and a client cert, all EC P-256 (fast)."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _run("openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
         "-subj", "/CN=barcelona-test-ca", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)  # fmt: skip
    for name, usage, alt in (
        ("server", "serverAuth", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"),
        ("client", "clientAuth", ""),
    ):
        (directory / f"{name}.ext").write_text(
            f"basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage={usage}\n"
            f"subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n{alt}"
        )
        _run("openssl", "req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={'localhost' if name == 'server' else 'barcelona-test-client'}",
             cwd=directory)  # fmt: skip
        _run("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext",
             cwd=directory)  # fmt: skip


class Mosquitto:
    """One mosquitto process with a generated config in its own temp dir, bound to 127.0.0.1 only.

    ``restart()`` keeps the ports, so clients can reconnect to the same address. ``users`` become a
    password file (``mosquitto_passwd -b``); ``acl`` is the text of an ACL file; ``tls=True`` adds a
    TLS listener on ``tls_port`` with certs made by openssl (``ca_file``, ``client_cert``,
    ``client_key``), requiring a client certificate when ``require_certificate`` is set.
    """

    def __init__(
        self,
        *,
        allow_anonymous: bool = True,
        users: Mapping[str, str] | None = None,
        acl: str | None = None,
        tls: bool = False,
        require_certificate: bool = False,
        start_timeout: float = 10.0,
    ) -> None:
        skip_without_mosquitto()
        self.host = HOST
        self.port = 0
        self.tls_port: int | None = None
        self._allow_anonymous = allow_anonymous
        self._users = dict(users or {})
        self._acl = acl
        self._tls = tls
        self._require_certificate = require_certificate
        self._start_timeout = start_timeout
        self._tmp = tempfile.TemporaryDirectory(prefix="barcelona-mosquitto-")
        self.dir = Path(self._tmp.name)
        self._proc: subprocess.Popen[bytes] | None = None
        self._configured = False

    @property
    def ca_file(self) -> str:
        return str(self.dir / "ca.crt")

    @property
    def client_cert(self) -> str:
        return str(self.dir / "client.crt")

    @property
    def client_key(self) -> str:
        return str(self.dir / "client.key")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_text(self) -> str:
        path = self.dir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _configure(self) -> None:
        lines = [
            f"listener {self.port} {HOST}",
            f"allow_anonymous {'true' if self._allow_anonymous else 'false'}",
            "persistence false",
            "set_tcp_nodelay true",  # small urgent messages (clock sync, notes) must not wait for Nagle
            f"log_dest file {self.dir / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # otherwise mosquitto drops to 'mosquitto' and cannot read dir
        if self._users:
            passwd = self.dir / "passwd"
            passwd.touch(mode=0o600)
            for user, password in self._users.items():
                _run("mosquitto_passwd", "-b", str(passwd), user, password, cwd=self.dir)
            lines.append(f"password_file {passwd}")
        if self._acl is not None:
            (self.dir / "acl").write_text(self._acl)
            lines.append(f"acl_file {self.dir / 'acl'}")
        if self._tls:
            if not (self.dir / "ca.crt").exists():
                _make_certs(self.dir)
            lines += [
                f"listener {self.tls_port} {HOST}",
                f"cafile {self.dir / 'ca.crt'}",
                f"certfile {self.dir / 'server.crt'}",
                f"keyfile {self.dir / 'server.key'}",
                f"require_certificate {'true' if self._require_certificate else 'false'}",
            ]
        (self.dir / "mosquitto.conf").write_text("\n".join(lines) + "\n")

    def start(self) -> Mosquitto:
        """Start (on fresh ports the first time, the same ports after) and wait until it accepts."""
        if self.running:
            return self
        attempts = 1 if self._configured else 3  # a fresh port can be taken between pick and bind
        for attempt in range(attempts):
            if not self._configured:
                self.port = _free_tcp_port()
                self.tls_port = _free_tcp_port() if self._tls else None
                self._configure()
            assert MOSQUITTO is not None
            with open(self.dir / "stderr.log", "ab") as stderr:
                self._proc = subprocess.Popen(
                    [MOSQUITTO, "-c", str(self.dir / "mosquitto.conf")],
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                )
            try:
                self._wait_accepting()
            except RuntimeError:
                self._configured = False
                if attempt == attempts - 1:
                    raise
                continue
            self._configured = True
            return self
        raise AssertionError("unreachable")

    def _wait_accepting(self) -> None:
        deadline = time.monotonic() + self._start_timeout
        ports = [p for p in (self.port, self.tls_port) if p]
        while ports:
            assert self._proc is not None
            if self._proc.poll() is not None:
                stderr = (self.dir / "stderr.log").read_text(errors="replace")
                self._proc = None
                raise RuntimeError(f"mosquitto exited at start:\n{stderr}\n{self.log_text()}")
            try:
                socket.create_connection((HOST, ports[0]), timeout=0.2).close()
                ports.pop(0)
                continue
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"mosquitto did not accept on {HOST}:{ports[0]} in {self._start_timeout} s"
                )
            time.sleep(0.005)  # polling a condition with a deadline, not a blind wait

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate gracefully (clients see their TCP link close) and reap the process."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout)
        self._proc = None

    def kill(self) -> None:
        """SIGKILL: the broker vanishes without closing anything cleanly."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait(5)
            self._proc = None

    def restart(self) -> Mosquitto:
        """Stop and start again on the same ports (sessions and retained state are not persisted)."""
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
