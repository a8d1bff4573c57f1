"""With ``source = ldap`` configured, the per-login programs never import
ldap3 or authkit.ldap: they reach the directory through authkitd's socket
(authkit.config.open_source without daemon=True).  A fake authdaemond on a
private socket answers, so an answer proves the socket was used."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

REPLY = (b"UID=5001\nGID=6001\nHOME=/tmp\nADDRESS=ssha@example.com\n"
         b"NAME=User ssha\nMAILDIR=/home/vmail/ssha/Maildir\n.\n")


@pytest.fixture
def fake_authkitd(tmp_path: Path):
    path = str(tmp_path / "socket")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(8)
    requests: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(10)
                data = conn.recv(8192)
                requests.append(data)
                conn.sendall(REPLY)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, requests
    stop.set()
    thread.join(5)
    server.close()


def _conf(tmp_path: Path, socket_path: str) -> Path:
    conf = tmp_path / "authkit.conf"
    conf.write_text(f"source = ldap\nauthdaemon_socket = {socket_path}\n"
                    "ldap_uri = ldap://127.0.0.1:1\nldap_basedn = o=authkit\n")
    return conf


def _imported(stderr: bytes) -> set[str]:
    return {line.split("|")[-1].strip() for line in stderr.decode().splitlines()
            if line.startswith("import time:")}


def test_courieruserinfo_with_source_ldap_goes_through_the_socket(tmp_path, fake_authkitd) -> None:
    path, requests = fake_authkitd
    env = {"PATH": "/usr/bin:/bin", "AUTHKIT_CONFIG": str(_conf(tmp_path, path))}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "authkit.cli.courieruserinfo",
                           "ssha@example.com"], capture_output=True, env=env, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert b"/tmp" in proc.stdout
    assert requests and requests[0].startswith(b"PRE . ")
    imported = _imported(proc.stderr)
    assert "authkit.authdaemon.source" in imported
    assert not {m for m in imported if m.startswith(("ldap3", "authkit.ldap", "pyasn1"))}


def test_courierpasswd_with_source_ldap_goes_through_the_socket(tmp_path, fake_authkitd) -> None:
    path, requests = fake_authkitd
    env = {"PATH": "/usr/bin:/bin", "AUTHKIT_CONFIG": str(_conf(tmp_path, path))}
    # the launcher, under the test's Python (which has ldap3 installed)
    proc = subprocess.run([sys.executable, "-X", "importtime", str(REPO / "bin/courierpasswd"),
                           "--stdin", "--stderr", "/bin/true"],
                          input=b"ssha@example.com\0Ssha-Pass-1\0\0", capture_output=True,
                          env=env, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert requests and requests[0].startswith(b"AUTH ")
    imported = _imported(proc.stderr)
    assert not {m for m in imported if m.startswith(("ldap3", "authkit.ldap", "pyasn1"))}
