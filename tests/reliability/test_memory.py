"""Memory of a login against a large text userdb (issue 17, item 3).

A text userdb of 1,000,000 lines (239 MB, 239 bytes a line as in
bench/bench_userdb_scale.py; generated in about 2 s) is read by streaming
(authkit.userdb.find: chunked preadv into one 256 KiB buffer, then the record's
line), so:

* one ``bin/courierpasswd`` login, right or wrong password, or an unknown user,
  peaks (GNU time's maximum RSS of the whole process) far below the file's size;
* ``courierpassd --listen`` serving 16 concurrent wrong-password sessions peaks
  (the server's VmHWM) about where it does after one session.

Before the streaming reader, one login peaked at 251 MB and the listener reached
3 GB with 16 sessions.  The figures go to $AUTHKIT_RELIABILITY_REPORT and
docs/reliability.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from _rel import BIN, Client, Listener, env, record, write_config

from authkit.schemes import make_password_hash

LINES = 1_000_000
PASSWORD = b"the-right-password"
LAST = b"u%07d@example.com" % (LINES - 1)
MIB = 1 << 20


def _vm(pid: int, field: str) -> int:
    """A ``Vm*`` figure of /proc/PID/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@pytest.fixture(scope="module")
def big_userdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1M lines, generated in about a second: every line the same shape, the
    account logged in last (so that every lookup scans the whole file)."""
    path = tmp_path_factory.mktemp("memory") / "userdb"
    hashed = make_password_hash(PASSWORD, "sha512-crypt").encode()
    template = (b"u%07d@example.com\tuid=1000|gid=1000|home=/home/vmail/example.com/u%07d|"
                b"mail=/home/vmail/example.com/u%07d/Maildir|systempw=" + hashed + b"\n")
    with open(path, "wb") as out:
        step = 100_000
        for base in range(0, LINES, step):
            out.write(b"".join([template % (i, i, i) for i in range(base, base + step)]))
    path.chmod(0o600)
    return path


def _peak_kib(argv: list[str], data: bytes, tmp_path: Path) -> tuple[int, int]:
    """(exit status, maximum RSS in KiB) of ``argv`` run under GNU time."""
    report = tmp_path / "time.out"
    proc = subprocess.run(["/usr/bin/time", "-o", str(report), "-f", "%M", *argv], input=data,
                          capture_output=True, env=env(), timeout=300)
    return proc.returncode, int(report.read_text().split()[-1])


@pytest.mark.skipif(not os.access("/usr/bin/time", os.X_OK), reason="GNU time (Debian: time) missing")
def test_one_courierpasswd_login_on_a_1m_line_text_stays_small(big_userdb: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "authkit.conf", big_userdb)
    size = big_userdb.stat().st_size
    argv = [sys.executable, "-S", str(BIN / "courierpasswd"), "--stdin", "--stderr", "--config", str(config)]
    peaks = {}
    for case, data, status in (("right_password", LAST + b"\0" + PASSWORD + b"\0", 0),
                               ("wrong_password", LAST + b"\0wrong\0", 1),
                               ("unknown_user", b"nobody@example.com\0wrong\0", 1)):
        code, peaks[case] = _peak_kib(argv, data, tmp_path)
        assert code == status, case
    # the interpreter and authkit's modules take ~10-20 MB; the file is ~240 MB
    assert max(peaks.values()) * 1024 < size / 8, (peaks, size)
    record("memory-courierpasswd-1m-text", lines=LINES, text_mb=round(size / 1e6, 1),
           **{f"peak_rss_mb_{case}": round(kib / 1024, 1) for case, kib in peaks.items()})


def _wrong_password_sessions(port: int, count: int) -> None:
    """``count`` sessions at once: all connect and send user + pass before any
    reply to a pass is read, so that their lookups overlap in the server."""
    clients = [Client(port, timeout=120) for _ in range(count)]
    try:
        for client in clients:
            assert client.line().startswith(b"200 ")
            client.send(b"user " + LAST + b"\r\n")
        for client in clients:
            assert client.line() == b"200 Your password please"
            client.send(b"pass wrong-password\r\n")
        for client in clients:
            assert client.line() == b"500 Old password is incorrect"
    finally:
        for client in clients:
            client.close()


def test_courierpassd_listen_memory_is_flat_in_sessions(big_userdb: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "authkit.conf", big_userdb, bad_pass_delay=0, idle_timeout=60)
    server = Listener(config, tmp_path / "courierpassd.log")
    size = big_userdb.stat().st_size
    try:
        _wrong_password_sessions(server.port, 1)
        one = _vm(server.proc.pid, "VmHWM")
        _wrong_password_sessions(server.port, 16)
        sixteen = _vm(server.proc.pid, "VmHWM")
    finally:
        server.close()
    # flat: 16 overlapping lookups add one 256 KiB read buffer each, and threads
    assert sixteen * 1024 < one * 1024 + 16 * MIB, (one, sixteen)
    assert sixteen * 1024 < size / 4, (sixteen, size)
    record("memory-courierpassd-listen-1m-text", lines=LINES, text_mb=round(size / 1e6, 1),
           vmhwm_mb_after_1_session=round(one / 1024, 1), vmhwm_mb_after_16_sessions=round(sixteen / 1024, 1))
