"""contrib/systemd and contrib/xinetd: courierpassd on stdin/stdout, one process
per connection, the way each super-server starts it.

systemd (``Accept=yes``): PID 1 accepts on the ``ListenStream`` and runs the
service's ``ExecStart`` with the connection as stdin and stdout
(``StandardInput=socket``, ``StandardOutput=socket``).  The first test does just
that by hand: the command line is parsed out of courierpassd@.service, only the
program path is swapped for bin/courierpassd.  The second uses systemd's own
``systemd-socket-activate --accept --inetd``, which runs the same code path.
``systemd-analyze verify`` checks both unit files.

xinetd: Debian's xinetd runs in the foreground on a private config file that
holds only contrib/xinetd/courierpassd (``port`` and ``server`` changed), with its
pid file and log in the test's directory; the system's /etc/xinetd.conf is
never read.

courierpassd finds the account source through ``AUTHKIT_CONFIG`` (a copy of
examples/userdb).  After each change authkit's UserdbSource must accept the new
password and refuse the old one.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from stacktools import (first_connection, free_port, password_works, poppassd_dialogue,
                        systemd_verify)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CONTRIB = REPO / "contrib"
COURIERPASSD = REPO / "bin" / "courierpassd"
INSTALLED_PATH = "/usr/local/sbin/courierpassd"
USER, OLD = "andrew@example.com", "Andrew-Imap-1"


def unit_settings(path: Path) -> dict[str, dict[str, list[str]]]:
    """section -> key -> values of a systemd unit file (comments skipped)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        assert current is not None, f"{path}: setting outside a section"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def exec_start() -> list[str]:
    """ExecStart of courierpassd@.service, with the installed path swapped for
    this checkout's bin/courierpassd (the only change)."""
    service = unit_settings(CONTRIB / "systemd/courierpassd@.service")["Service"]
    assert service["StandardInput"] == ["socket"] and service["StandardOutput"] == ["socket"]
    (command,) = service["ExecStart"]
    argv = shlex.split(command)
    assert argv[0] == INSTALLED_PATH
    return [str(COURIERPASSD), *argv[1:]]


def setup_userdb(tmp_path: Path) -> tuple[Path, Path]:
    userdb = tmp_path / "userdb"
    shutil.copyfile(REPO / "examples/userdb", userdb)
    userdb.chmod(0o600)
    config = tmp_path / "authkit.conf"
    config.write_text(f"userdb = {userdb}\nbad_pass_delay = 0\n")
    return userdb, config


def assert_changed(replies: list[bytes]) -> None:
    assert replies[0].startswith(b"200 courierpassd v"), replies
    assert replies[1:5] == [b"200 Your password please\r\n", b"200 Your new password please\r\n",
                            b"200 Password changed\r\n", b"200 Bye\r\n"], replies
    assert replies[5] == b""


# -- systemd ---------------------------------------------------------------------------


def test_socket_unit_listens_on_loopback_106_with_one_process_per_connection() -> None:
    socket_unit = unit_settings(CONTRIB / "systemd/courierpassd.socket")["Socket"]
    assert socket_unit["ListenStream"] == ["127.0.0.1:106"]
    assert socket_unit["Accept"] == ["yes"]
    # the template's name must match the socket's for Accept=yes instances
    assert (CONTRIB / "systemd/courierpassd@.service").exists()


def test_exec_start_on_an_accepted_connection_changes_a_password(tmp_path: Path) -> None:
    """What systemd does for Accept=yes: accept, then run ExecStart with the
    connection as fds 0 and 1 (and REMOTE_ADDR/REMOTE_PORT set)."""
    userdb, config = setup_userdb(tmp_path)
    argv = exec_start()
    assert argv[1:] == ["-s", "imap"]
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = socket.create_connection(listener.getsockname(), timeout=20)
        conn, (addr, port) = listener.accept()
    with client:
        with conn:
            env = {"PATH": "/usr/bin:/bin", "AUTHKIT_CONFIG": str(config),
                   "REMOTE_ADDR": addr, "REMOTE_PORT": str(port)}
            proc = subprocess.Popen(argv, stdin=conn, stdout=conn, stderr=subprocess.PIPE, env=env)
        replies = poppassd_dialogue(client.makefile("rwb"), USER, OLD, "Systemd-Pw-2024", until_eof=True)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert_changed(replies)
    assert password_works(userdb, USER, "Systemd-Pw-2024")
    assert not password_works(userdb, USER, OLD)


def test_exec_start_under_systemd_socket_activate_accept_inetd(tmp_path: Path) -> None:
    """systemd's own socket-activation code (systemd-socket-activate --accept
    --inetd) runs ExecStart once per connection on stdin/stdout."""
    tool = shutil.which("systemd-socket-activate")
    if not tool:
        pytest.skip("systemd-socket-activate not installed (Debian package systemd)")
    userdb, config = setup_userdb(tmp_path)
    port = free_port()
    activator = subprocess.Popen(
        [tool, "--listen", f"127.0.0.1:{port}", "--accept", "--inetd",
         "--setenv", f"AUTHKIT_CONFIG={config}", *exec_start()],
        env={"PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        with first_connection(port, activator, "systemd-socket-activate", activator.stderr) as client:
            replies = poppassd_dialogue(client.makefile("rwb"), USER, OLD, "Activate-Pw-2024", until_eof=True)
        assert_changed(replies)
        assert password_works(userdb, USER, "Activate-Pw-2024")
        with socket.create_connection(("127.0.0.1", port), timeout=20) as second:
            replies = poppassd_dialogue(second.makefile("rwb"), USER, "Activate-Pw-2024", "Activate-Pw-2025", until_eof=True)
        assert_changed(replies)
        assert password_works(userdb, USER, "Activate-Pw-2025")
    finally:
        os.killpg(activator.pid, signal.SIGTERM)
        activator.wait(10)


def test_systemd_analyze_verify_accepts_both_units(tmp_path: Path) -> None:
    units = [CONTRIB / "systemd" / name for name in ("courierpassd.socket", "courierpassd@.service")]
    stderr = systemd_verify(units, tmp_path, INSTALLED_PATH, COURIERPASSD)  # this checkout's binary
    assert "courierpassd" not in stderr, stderr


# -- xinetd ----------------------------------------------------------------------------


def xinetd_service(port: int) -> str:
    """contrib/xinetd/courierpassd with only ``port`` and ``server`` changed."""
    text = (CONTRIB / "xinetd/courierpassd").read_text()
    out = []
    changed = set()
    for line in text.splitlines():
        match = re.match(r"^(\s*)(port|server)(\s*)=", line)
        if match:
            key = match.group(2)
            value = str(port) if key == "port" else str(COURIERPASSD)
            line = f"{match.group(1)}{key}{match.group(3)}= {value}"
            changed.add(key)
        out.append(line)
    assert changed == {"port", "server"}
    return "\n".join(out) + "\n"


def test_xinetd_runs_the_contrib_service_and_a_password_changes(tmp_path: Path) -> None:
    xinetd = shutil.which("xinetd") or ("/usr/sbin/xinetd" if os.path.exists("/usr/sbin/xinetd") else None)
    if not xinetd:
        pytest.skip("xinetd not installed (Debian package xinetd)")
    if os.geteuid() != 0:
        pytest.skip("needs root: the service says user = root")
    service_text = (CONTRIB / "xinetd/courierpassd").read_text()
    assert re.search(r"^\s*bind\s*=\s*127\.0\.0\.1$", service_text, re.MULTILINE)
    assert re.search(r"^\s*server_args\s*=\s*-s imap$", service_text, re.MULTILINE)
    userdb, config = setup_userdb(tmp_path)
    port = free_port()
    log = tmp_path / "xinetd.log"
    conf = tmp_path / "xinetd.conf"
    conf.write_text(f"defaults\n{{\n\tlog_type = FILE {log}\n}}\n\n" + xinetd_service(port))
    daemon = subprocess.Popen(
        [xinetd, "-dontfork", "-f", str(conf), "-pidfile", str(tmp_path / "xinetd.pid")],
        env={"PATH": "/usr/bin:/bin", "AUTHKIT_CONFIG": str(config)},
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        with first_connection(port, daemon, "xinetd", daemon.stdout) as client:
            replies = poppassd_dialogue(client.makefile("rwb"), USER, OLD, "Xinetd-Pw-2024", until_eof=True)
        assert_changed(replies)
        assert password_works(userdb, USER, "Xinetd-Pw-2024")
        assert not password_works(userdb, USER, OLD)
        deadline = time.monotonic() + 10
        while b"EXIT: courierpassd" not in log.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.05)
        text = log.read_text()
        assert re.search(r"START: courierpassd pid=\d+ from=(::ffff:)?127\.0\.0\.1", text), text
        assert re.search(r"EXIT: courierpassd status=0 pid=\d+", text), text
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(10)
