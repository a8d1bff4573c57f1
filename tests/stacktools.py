"""Small helpers shared by the tests that run peers and the documented stack
(daemontools, systemd, xinetd, stunnel, Dovecot, qpsmtpd, TMDA): a free port, the
poppassd dialogue of a webmail client, "does this password work now" through
authkit, waiting for a port (:func:`wait_listening`, :func:`first_connection`),
stopping a peer (:func:`stop_process`), one raw request to a unix socket
(:func:`exchange`, :func:`pre_reply`) and ``systemd-analyze verify`` of unit
files (:func:`systemd_verify`)."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    """A 127.0.0.1 TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def poppassd_dialogue(stream, user: str, old: str, new: str, *, until_eof: bool = False) -> list[bytes]:  # noqa: ANN001
    """The raw replies (CRLF kept) to the greeting and user/pass/newpass/quit on
    ``stream`` (a binary read/write file object); with ``until_eof`` a last
    element holds whatever came before the server closed."""
    replies = [stream.readline()]
    for line in (f"user {user}", f"pass {old}", f"newpass {new}", "quit"):
        stream.write(line.encode() + b"\r\n")
        stream.flush()
        replies.append(stream.readline())
    if until_eof:
        replies.append(stream.read())
    return replies


def password_works(userdb: Path, user: str, password: str, service: str = "imap") -> bool:
    """Whether authkit's UserdbSource accepts user/password for service."""
    from authkit.errors import Rejected
    from authkit.userdb.source import UserdbSource

    try:
        UserdbSource(str(userdb)).authenticate(user, password.encode(), service)
    except Rejected:
        return False
    return True


def stop_process(proc: "subprocess.Popen | None", timeout: float = 10) -> None:
    """SIGTERM ``proc`` if it still runs, SIGKILL after ``timeout`` s; reap it."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_listening(port: int, proc: subprocess.Popen, what: str, timeout: float = 15) -> None:
    """Return once 127.0.0.1:port accepts; fail if ``proc`` exits or time runs out."""
    first_connection(port, proc, what, timeout=timeout, io_timeout=1).close()


def first_connection(port: int, proc: subprocess.Popen, what: str, output=None,  # noqa: ANN001
                     timeout: float = 15, io_timeout: float = 20) -> socket.socket:
    """The first connection to 127.0.0.1:port, made as soon as it accepts (kept
    open: under inetd-style activation it is the first client); fail if ``proc``
    exits (with what ``output``, its stderr or stdout, holds) or after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=io_timeout)
        except OSError:
            assert proc.poll() is None, (f"{what} exited {proc.returncode}",
                                         output.read() if output is not None else None)
            assert time.monotonic() < deadline, f"{what} does not listen on {port}"
            time.sleep(0.05)


def exchange(path: "str | Path", data: bytes, timeout: float = 60, *,
             reset_ends: bool = False) -> bytes:
    """Send ``data`` to the unix socket ``path`` (an authdaemond or authkitd
    socket: one request per connection) and return everything the peer writes
    until it closes.  With ``reset_ends``, a reset or broken pipe (Courier
    closes with our bytes unread) counts as the close."""
    chunks = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        try:
            sock.sendall(data)
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except (ConnectionResetError, BrokenPipeError):
            if not reset_ends:
                raise
    return b"".join(chunks)


def pre_reply(path: "str | Path", login: str, service: str = "login") -> bytes:
    """authdaemond's whole answer on ``path`` to ``PRE . <service> <login>``."""
    from authkit.authdaemon import protocol

    return exchange(path, protocol.pre_request(service, login))


def systemd_verify(units: "list[Path]", directory: Path, installed: str, binary: Path) -> str:
    """Copy the unit files ``units`` into ``directory`` with the installed
    program path ``installed`` pointed at ``binary`` (``systemd-analyze verify``
    insists that it exists), verify them, and return its stderr; assert that it
    exits 0.  Skips the test when systemd-analyze is not installed."""
    import shutil

    import pytest

    tool = shutil.which("systemd-analyze")
    if not tool:
        pytest.skip("systemd-analyze not installed")
    copies = []
    for unit in units:
        copy = directory / unit.name
        copy.write_text(unit.read_text().replace(installed, str(binary)))
        copies.append(str(copy))
    proc = subprocess.run([tool, "verify", "--man=no", *copies], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stderr
