"""The authdaemond client against Courier's real authdaemond (CourierLab):
hostile names and passwords cannot add a field, record or line to the userdb
through PASSWD, and a daemon killed mid-request gives a temporary failure
(exit 111), never a wrong verdict.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from _rel import BIN, count, env, record

pytestmark = pytest.mark.integration

HOSTILE = [b"pw|uid=0", b"pw=x", b"pw\tuid=0", b"pw\rx", b"pw\nuid=0", b"pw\0x", b"pw\xff\xfe",
           b"pw'x", b'pw"x', b"|", b"x" * 9000]


def _userdb_records(lab) -> list:  # noqa: ANN001
    data = (lab.etc_dir / "userdb").read_bytes()
    # Courier's userdb script reorders a record's fields on every set: compare sets
    return [(line.partition(b"\t")[0], sorted(f.partition(b"=")[0] for f in line.partition(b"\t")[2].split(b"|")))
            for line in data.split(b"\n") if line and not line.startswith(b"#")]


def test_passwd_through_authdaemond_cannot_add_a_field_record_or_line(courier_lab) -> None:  # noqa: ANN001
    from authkit.authdaemon.source import AuthdaemonSource
    from authkit.errors import AuthError

    lab = courier_lab
    lab.add_user("alice", "alice-old-pw")
    lab.add_user("bob", "bob-old-pw1")
    lab.makeuserdb()
    lab.start_daemon()
    before = _userdb_records(lab)
    source = AuthdaemonSource(str(lab.socket_path))
    current = b"alice-old-pw"
    outcomes = {"refused": 0, "changed": 0}
    for new in HOSTILE:
        try:
            source.change_password("alice", current, new, "login")
            outcomes["changed"] += 1
            current = new
        except AuthError:
            outcomes["refused"] += 1
        for name in (b"alice|uid=0", b"alice\tx", b"alice\nbob", b"alice=x", b"alice\xff"):
            with pytest.raises(AuthError):
                source.change_password(name.decode("utf-8", "surrogateescape"), current, b"new-pass-123", "login")
        assert _userdb_records(lab) == before
    source.authenticate("alice", current, "login")
    source.authenticate("bob", b"bob-old-pw1", "login")
    record("injection-authdaemond-passwd", tried=len(HOSTILE) * 6, **outcomes)


def test_authdaemond_killed_mid_request_is_a_temporary_failure(courier_lab, tmp_path: Path) -> None:  # noqa: ANN001
    """courierpasswd logins run in a loop while authdaemond is SIGKILLed (with its
    children): every attempt exits 0 (right password) or 111, never 1."""
    lab = courier_lab
    lab.add_user("alice", "alice-old-pw", home="/")  # courierpasswd as root chdirs there
    lab.makeuserdb()
    lab.start_daemon()
    config = tmp_path / "authkit.conf"
    config.write_text(f"source = authdaemon\nauthdaemon_socket = {lab.socket_path}\n"
                      "authdaemon_connect_timeout = 2\nauthdaemon_read_timeout = 2\n")
    first = subprocess.run([sys.executable, "-S", str(BIN / "courierpasswd"), "--stdin", "--stderr",
                            "--config", str(config)], input=b"alice\0alice-old-pw\0", capture_output=True,
                           env=env(), timeout=60)
    assert first.returncode == 0, first.stderr
    results: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set() and len(results) < 2000:
            proc = subprocess.run([sys.executable, "-S", str(BIN / "courierpasswd"), "--stdin", "--stderr",
                                   "--config", str(config)], input=b"alice\0alice-old-pw\0",
                                  capture_output=True, env=env(), timeout=60)
            results.append(proc.returncode)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    kills = count(3, 10)
    try:
        for _ in range(kills):
            time.sleep(0.4)
            for pid in lab.namespace_pids():
                if pid != lab.holder_pid:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            time.sleep(0.3)
            lab._daemon = None  # noqa: SLF001 - it was killed behind the lab's back
            lab.start_daemon()
        time.sleep(0.4)
    finally:
        stop.set()
        for thread in threads:
            thread.join(120)
    assert results and set(results) <= {0, 111}, sorted(set(results))
    assert 0 in results
    record("fault-authdaemond-killed", kills=kills, attempts=len(results),
           ok=results.count(0), tempfail=results.count(111), wrong_verdict=results.count(1))
