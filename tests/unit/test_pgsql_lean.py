"""With ``source = pgsql`` the per-login programs stay lean: courierpasswd,
courierpassd and courieruserinfo reach the database through authkitd's socket (an authdaemond
client) and never import psycopg or authkit.pgsql.  The socket here is a small
fake authdaemond answering one account (unit test: a fake peer is allowed)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REPLY = b"UID=5000\nGID=5000\nHOME=/home/vmail/alice\nADDRESS=alice@example.com\nNAME=Alice\n.\n"

# Runs one program's main() in this venv's interpreter (which has psycopg
# installed, so an import would succeed) and reports the heavy modules loaded.
PROBE = r"""
import os, sys
module, argv = sys.argv[1], sys.argv[2:]
sys.argv = [module] + argv
import importlib
code = 0
try:
    code = importlib.import_module("authkit.cli." + module).main(argv)
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] == "psycopg" or m.startswith("authkit.pgsql"))
os.write(2, ("HEAVY=" + ",".join(heavy) + "\n").encode())
os.write(2, ("CODE=%s\n" % code).encode())
"""


@pytest.fixture
def fake_authkitd(tmp_path: Path):
    path = tmp_path / "authkitd.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)
    requests: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                data = b""
                while b"\n" not in data or (data.startswith(b"AUTH") and data.count(b"\n") < 4):
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                requests.append(data)
                conn.sendall(b"OK\n" if data.startswith(b"PASSWD ") else REPLY)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    conf = tmp_path / "authkit.conf"
    conf.write_text(f"source = pgsql\nauthdaemon_socket = {path}\npgsql_connection = host=/nonexistent\n")
    yield conf, requests
    stop.set()
    server.close()


def _probe(module: str, argv: list[str], conf: Path, fd3: bytes | None = None,
           stdin: bytes = b"") -> tuple[str, str]:
    """(heavy modules loaded, exit code) of ``authkit.cli.<module>.main(argv)``;
    ``fd3`` is what the program reads on descriptor 3 (given via stdin)."""
    env = {"PATH": "/usr/bin:/bin", "AUTHKIT_CONFIG": str(conf)}
    command = [sys.executable, "-c", PROBE, module, *argv]
    if fd3 is not None:
        command = ["/bin/sh", "-c", 'exec "$@" 3<&0 </dev/null', "sh", *command]
    proc = subprocess.run(command, env=env, input=fd3 or stdin, capture_output=True,
                          timeout=60, cwd=REPO)
    err = proc.stderr.decode()
    heavy = err.split("HEAVY=", 1)[1].split("\n", 1)[0]
    code = err.split("CODE=", 1)[1].split("\n", 1)[0]
    return heavy, code


def test_courieruserinfo_with_source_pgsql_asks_authkitd_and_never_imports_psycopg(fake_authkitd) -> None:
    conf, requests = fake_authkitd
    heavy, code = _probe("courieruserinfo", ["alice@example.com"], conf)
    assert code == "0"
    assert heavy == ""
    assert requests and requests[0].startswith(b"PRE . ")


def test_courierpasswd_with_source_pgsql_asks_authkitd_and_never_imports_psycopg(fake_authkitd) -> None:
    conf, requests = fake_authkitd
    heavy, code = _probe("courierpasswd", ["--stderr"], conf, fd3=b"alice@example.com\0secret\0\0")
    assert code == "0"
    assert heavy == ""
    assert requests and requests[0].startswith(b"AUTH ")


def test_courierpassd_with_source_pgsql_changes_through_authkitd_and_never_imports_psycopg(
        fake_authkitd) -> None:
    conf, requests = fake_authkitd
    script = b"user alice@example.com\r\npass Old-Pass-1\r\nnewpass New-Pass-22\r\nquit\r\n"
    heavy, code = _probe("courierpassd", ["--stderr"], conf, stdin=script)
    assert code == "0"
    assert heavy == ""
    assert any(r.startswith(b"PASSWD ") for r in requests)


def test_the_probe_would_see_psycopg_if_it_were_imported(fake_authkitd) -> None:
    """The check above can fail: a program that imports psycopg is reported."""
    conf, _ = fake_authkitd
    proc = subprocess.run([sys.executable, "-c", "import psycopg\n" + PROBE, "courieruserinfo",
                           "alice@example.com"], env={"AUTHKIT_CONFIG": str(conf)},
                          capture_output=True, timeout=60, cwd=REPO)
    assert "HEAVY=psycopg" in proc.stderr.decode()
