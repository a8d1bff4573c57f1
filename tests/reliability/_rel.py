"""Helpers shared by tests/reliability: a userdb made with authkit's own hash
functions, a config file, the real programs (``bin/courierpasswd``,
``bin/courierpassd``) run as subprocesses, and a poppassd client.

Budgets: ``AUTHKIT_LONG=1`` selects the long runs (200 repetitions, 200
concurrent connections); :func:`count` picks the figure.  With
``AUTHKIT_RELIABILITY_REPORT=FILE`` the tests append their figures to FILE as
JSON lines (``bench/reliability_figures.py`` collects them for
docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from authkit.schemes import make_password_hash
from authkit.userdb.source import UserdbSource

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "bin"
LONG = os.environ.get("AUTHKIT_LONG") == "1"


def count(short: int, long: int) -> int:
    """``long`` under AUTHKIT_LONG=1, else ``short``."""
    return long if LONG else short


def record(name: str, **figures: object) -> None:
    """Append ``figures`` to $AUTHKIT_RELIABILITY_REPORT (if set) and print them."""
    line = json.dumps({"test": name, "long": LONG, **figures})
    print(line)
    path = os.environ.get("AUTHKIT_RELIABILITY_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")


def make_userdb(path: Path, accounts: dict[str, tuple[str, int]], scheme: str = "sha512-crypt",
                mode: int = 0o600, hmac: bool = False, home: "Path | None" = None) -> Path:
    """A text userdb at ``path``: ``name -> (password, uid)``; gid = uid; every
    home is ``home`` (default ``/``, which every uid can enter, so that
    courierpasswd running as root can setuid and chdir there)."""
    home = home or Path("/")
    lines = [b"# authkit reliability test userdb\n"]
    for name, (password, uid) in accounts.items():
        fields = f"uid={uid}|gid={uid}|home={home}|systempw={make_password_hash(password.encode(), scheme)}"
        if hmac:
            from authkit.schemes.hmacstate import hmac_state

            fields += f"|hmac-md5pw={hmac_state(password.encode(), 'md5')}"
        lines.append(name.encode() + b"\t" + fields.encode() + b"\n")
    path.write_bytes(b"".join(lines))
    path.chmod(mode)
    return path


def write_config(path: Path, userdb: Path, **settings: object) -> Path:
    """An authkit.conf naming ``userdb`` plus ``settings`` (key = value)."""
    values = {"userdb": str(userdb), **settings}
    path.write_text("".join(f"{k} = {v}\n" for k, v in values.items()))
    return path


def env(**extra: str) -> dict[str, str]:
    base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}
    base.update(extra)
    return base


def courierpasswd(data: bytes, config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """bin/courierpasswd --stdin --stderr --config CONFIG ARGS, ``data`` on stdin."""
    return subprocess.run(
        [sys.executable, "-S", str(BIN / "courierpasswd"), "--stdin", "--stderr", "--config", str(config), *args],
        input=data, capture_output=True, env=env(), timeout=timeout)


def courierpassd_stdio(data: bytes, config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """bin/courierpassd on stdin/stdout (one connection) with ``data`` as the client."""
    return subprocess.run(
        [sys.executable, "-S", str(BIN / "courierpassd"), "--stderr", "--config", str(config), *args],
        input=data, capture_output=True, env=env(), timeout=timeout)


def dialogue(user: bytes, old: bytes, new: bytes) -> bytes:
    return b"user " + user + b"\r\npass " + old + b"\r\nnewpass " + new + b"\r\nquit\r\n"


class Listener:
    """bin/courierpassd --listen 127.0.0.1:0 as a subprocess; ``port`` is the
    port it bound (read from its 'listening on' log line)."""

    def __init__(self, config: Path, log: Path, *args: str) -> None:
        self.log_path = log
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-S", str(BIN / "courierpassd"), "--stderr", "--config", str(config),
             "--listen", "127.0.0.1:0", *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._log, env=env())
        deadline = time.monotonic() + 20
        while True:
            match = re.search(rb"listening on 127\.0\.0\.1:(\d+)", log.read_bytes())
            if match:
                self.port = int(match.group(1))
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"courierpassd did not start: {log.read_bytes()[-500:]!r}")
            time.sleep(0.02)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Client:
    """A poppassd client on 127.0.0.1 that reads one CRLF line per reply."""

    def __init__(self, port: int, timeout: float = 30) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError(self.buffer)
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()


def change_over_tcp(port: int, user: bytes, old: bytes, new: bytes, timeout: float = 60) -> list[bytes]:
    """A whole change dialogue; returns the server's lines (stops at a 500)."""
    client = Client(port, timeout)
    try:
        lines = [client.line()]
        if not lines[0].startswith(b"200"):
            return lines
        for command in (b"user " + user, b"pass " + old, b"newpass " + new, b"quit"):
            client.send(command + b"\r\n")
            lines.append(client.line())
            if not lines[-1].startswith(b"200"):
                break
        return lines
    finally:
        client.close()


def authenticates(userdb: Path, name: str, password: "str | bytes") -> bool:
    """True if ``password`` is ``name``'s password in the userdb (authkit's reader)."""
    if isinstance(password, str):
        password = password.encode("utf-8", "surrogateescape")
    try:
        UserdbSource(str(userdb)).authenticate(name, password)
        return True
    except Exception:
        return False


def records(userdb: Path) -> list[tuple[bytes, list[bytes]]]:
    """``(name, field names)`` of every record line, for structure comparisons."""
    out = []
    for line in userdb.read_bytes().split(b"\n"):
        if not line or line.startswith(b"#"):
            continue
        name, _, fields = line.partition(b"\t")
        out.append((name, [item.partition(b"=")[0] for item in fields.split(b"|")]))
    return out


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, int(round(pct / 100 * len(ordered) + 0.5)) - 1))
    return ordered[index]
