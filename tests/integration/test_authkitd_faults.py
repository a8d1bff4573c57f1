"""authkitd under faults (docs/authkitd.8, TIMEOUTS and DIAGNOSTICS): clients
that vanish, dribble, send too much or nothing; a source that hangs; a SIGKILL of
the daemon.  Clients must get a temporary failure (nothing sent, exit 111 from
authkit's programs), never a rejection, and the daemon must go on serving."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from authkitdlab import Authkitd, lab_config

from authkit.authdaemon import protocol
from authkit.authdaemon.source import AuthdaemonSource
from authkit.errors import TemporaryFailure

pytestmark = pytest.mark.integration

COURIERPASSWD = Path(__file__).resolve().parents[2] / "bin" / "courierpasswd"
GOOD = protocol.login_request("imap", "andrew@example.com", b"andrew-secret")


def exchange(path, data: bytes, timeout: float = 60) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def courierpasswd(socket_path, data: bytes) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "AUTHKIT_AUTHDAEMON": str(socket_path)}
    return subprocess.run(["/bin/sh", "-c", 'exec "$0" "$@" 3<&0', str(COURIERPASSWD), "--stderr",
                           "-s", "imap", "--", "/bin/true"],
                          input=data, capture_output=True, env=env, timeout=120)


@pytest.fixture
def lab(courier_lab):
    # courierpasswd becomes uid 5000 and chdirs to the home: one it may enter
    courier_lab.add_user("andrew@example.com", "andrew-secret", home="/")
    courier_lab.makeuserdb()
    return courier_lab


@pytest.fixture
def daemon(lab):
    kitd = Authkitd(lab.root / "authkitd", lab.socket_path, lab_config(lab)).start()
    yield kitd
    kitd.stop()


def serves(path) -> bool:
    return exchange(path, GOOD).endswith(b"\n.\n")


def test_clients_vanishing_mid_request_and_before_the_reply(lab, daemon):
    for data in (b"AUTH 40\nimap\nlog", b"PRE . imap and", b"TCPREMOTEIP=1.2.3.4\n", GOOD):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(lab.socket_path))
        sock.sendall(data)
        sock.close()  # gone before the request is whole, or before the reply
    assert serves(lab.socket_path)
    assert daemon.running()


def test_partial_request_is_closed_after_the_read_timeout_while_others_are_served(lab, daemon):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(str(lab.socket_path))
    sock.sendall(b"AUTH 30\nimap\nlogin\n")          # 18 of 30 bytes, then nothing
    start = time.monotonic()
    assert serves(lab.socket_path)                   # not queued behind it
    assert sock.recv(100) == b""                     # Courier's 10 s, then closed, nothing sent
    elapsed = time.monotonic() - start
    sock.close()
    assert 8 < elapsed < 25, elapsed


def test_dribbling_client_costs_a_timer_not_a_worker(lab):
    kitd = Authkitd(lab.root / "authkitd1", lab.socket_path, lab_config(lab, "workers = 1\n")).start()
    try:
        socks = []
        for _ in range(5):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(lab.socket_path))
            socks.append(sock)
        for byte in b"PRE . im":
            for sock in socks:
                sock.send(bytes([byte]))
            start = time.monotonic()
            assert serves(lab.socket_path)
            assert time.monotonic() - start < 5
        for sock in socks:
            sock.close()
    finally:
        kitd.stop()


@pytest.mark.parametrize("data", [
    b"x" * 1_000_000,                                   # no newline at all
    b"PRE . login " + b"y" * 100_000 + b"\n",           # an over-long line
    b"AUTH 99999\n" + b"z" * 20000,                     # AUTH body too long
    b"X=1\n" * 1000 + b"ENUMERATE\n",                   # endless header lines
    bytes(range(256)) * 64,                             # binary junk
])
def test_oversized_or_malformed_requests_are_closed_with_nothing_sent(lab, daemon, data):
    assert exchange(lab.socket_path, data) == b""
    assert serves(lab.socket_path)


def hanging_socket(path: Path) -> socket.socket:
    """A unix socket that accepts connections (into its backlog) and never
    answers: an authdaemond that hangs."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(64)
    return sock


def test_source_that_hangs_is_a_temporary_failure(lab, tmp_path):
    hang = hanging_socket(tmp_path / "hang.sock")
    kitd_socket = tmp_path / "kitd" / "socket"
    config = (f"source = authdaemon\nauthdaemon_socket = {tmp_path / 'hang.sock'}\n"
              "authdaemon_read_timeout = 300\nsource_timeout = 2\nworkers = 2\n")
    kitd = Authkitd(tmp_path / "kitd", kitd_socket, config).start()
    try:
        start = time.monotonic()
        assert exchange(kitd_socket, GOOD) == b""               # closed, nothing sent
        assert time.monotonic() - start < 20
        proc = courierpasswd(kitd_socket, b"andrew@example.com\0andrew-secret\0")
        assert proc.returncode == 111, proc.stderr
        with pytest.raises(TemporaryFailure):
            AuthdaemonSource(str(kitd_socket)).lookup("andrew@example.com")
        assert kitd.wait_for_log("source_timeout")
        # more hung requests than workers: still each a temporary failure in time
        assert all(exchange(kitd_socket, GOOD) == b"" for _ in range(3))
    finally:
        kitd.stop()
        hang.close()


def test_own_socket_as_source_is_refused(tmp_path):
    sock_path = tmp_path / "run" / "socket"
    config = f"source = authdaemon\nauthdaemon_socket = {sock_path}\n"
    kitd = Authkitd(tmp_path, sock_path, config)
    proc = subprocess.run(kitd.argv(), capture_output=True, env=kitd.env, timeout=60)
    assert proc.returncode == 111
    assert b"own socket" in proc.stderr
    assert not sock_path.exists()


def test_sigkill_gives_temporary_failures_and_a_restart_serves_as_before(lab):
    kitd = Authkitd(lab.root / "authkitd", lab.socket_path, lab_config(lab))
    kitd.start()
    before = exchange(lab.socket_path, GOOD)
    assert before.endswith(b"\n.\n")
    waiting = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    waiting.settimeout(30)
    waiting.connect(str(lab.socket_path))
    waiting.sendall(b"AUTH 40\n")                     # mid-request when the daemon dies
    kitd.kill()
    try:                                               # EOF or reset: a temporary failure
        assert waiting.recv(100) == b""
    except ConnectionResetError:
        pass
    waiting.close()
    with pytest.raises(TemporaryFailure):
        AuthdaemonSource(str(lab.socket_path)).authenticate("andrew@example.com", b"andrew-secret", "imap")
    down = courierpasswd(lab.socket_path, b"andrew@example.com\0andrew-secret\0")
    assert down.returncode == 111 and b"authdaemon" in down.stderr, down.stderr
    assert lab.authtest("-s", "imap", "andrew@example.com", "andrew-secret").returncode != 0
    kitd.start()                                       # over the stale socket file
    try:
        assert exchange(lab.socket_path, GOOD) == before
        assert courierpasswd(lab.socket_path, b"andrew@example.com\0andrew-secret\0").returncode == 0
        assert courierpasswd(lab.socket_path, b"andrew@example.com\0wrong\0").returncode == 1
        assert lab.authtest("-s", "imap", "andrew@example.com", "andrew-secret").returncode == 0
    finally:
        kitd.stop()


def test_sigterm_lets_the_answer_in_flight_go_out(lab, tmp_path):
    hang = hanging_socket(tmp_path / "slow.sock")   # a source slow enough to be in flight
    kitd_socket = tmp_path / "kitd" / "socket"
    config = (f"source = authdaemon\nauthdaemon_socket = {tmp_path / 'slow.sock'}\n"
              "authdaemon_read_timeout = 300\nsource_timeout = 3\n")
    kitd = Authkitd(tmp_path / "kitd", kitd_socket, config).start()
    try:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.settimeout(30)
        client.connect(str(kitd_socket))
        client.sendall(GOOD)
        idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        idle.settimeout(30)
        idle.connect(str(kitd_socket))
        # the request is in a worker once the slow source has its connection
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not _has_pending(hang):
            time.sleep(0.02)
        kitd.signal(signal.SIGTERM)
        assert idle.recv(10) == b""                  # not in flight: closed at once
        assert client.recv(10) == b""                # in flight until source_timeout, then closed
        proc = kitd.proc
        assert proc is not None and proc.wait(30) == 0
        assert "stopped" in kitd.log()
        idle.close()
        client.close()
    finally:
        kitd.stop()
        hang.close()


def _has_pending(listener: socket.socket) -> bool:
    """True when a connection waits in ``listener``'s backlog."""
    listener.setblocking(False)
    try:
        conn, _ = listener.accept()
    except BlockingIOError:
        return False
    finally:
        listener.setblocking(True)
    _kept.append(conn)  # keep it open (and unanswered)
    return True


_kept: list[socket.socket] = []
