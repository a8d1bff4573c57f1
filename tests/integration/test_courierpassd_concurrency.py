"""courierpassd changes under load and under SIGKILL, on a userdb compiled by
Courier's makeuserdb with Courier's authdaemond running (tests/courierlab.py).

* No lost update: 20 concurrent changes of 20 users (20 courierpassd processes, as
  tcpserver runs them; and 20 connections to one ``--listen`` server) all persist,
  while a reader looping over the text userdb and the compiled pair never sees a
  broken or partial file.
* SIGKILL at any point of a change leaves the old or the new password (never a
  mix, text and compiled files agreeing), and never a lock that blocks the next
  change.
"""

from __future__ import annotations

import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_courierpassd_cli import BIN  # noqa: E402

from authkit.userdb import gdbm
from authkit.userdb.text import decode, first_values, parse_fields
from authkit.schemes import verify_password

pytestmark = pytest.mark.integration

OLD, NEW = "Concur-Old-1", "Concur-New-2"
USERS = [f"user{i:02d}@example.com" for i in range(20)]


def setup_lab(lab, users=USERS) -> Path:  # noqa: ANN001
    """20 users with a ``userdbpw -md5`` hash of OLD, compiled by makeuserdb,
    authdaemond started; returns a courierpassd config."""
    hashed = lab.userdbpw(OLD, "-md5")
    lines = ["# concurrency test\n"] + [
        f"{name}\tuid={5000 + i}|gid=5000|home=/home/vmail/{name}|systempw={hashed}\n" for i, name in enumerate(users)]
    lab.userdb_path.write_text("".join(lines))
    lab.userdb_path.chmod(0o600)
    lab.makeuserdb()
    lab.start_daemon()
    config = lab.root / "authkit.conf"
    config.write_text(f"userdb = {lab.userdb_path}\nbad_pass_delay = 0\n")
    return config


def script(name: str, old: str, new: str) -> bytes:
    return f"user {name}\r\npass {old}\r\nnewpass {new}\r\nquit\r\n".encode()


class Reader(threading.Thread):
    """Loops over the text userdb and the compiled pair until stopped; records
    every inconsistency it sees."""

    def __init__(self, lab, names: list[str]) -> None:  # noqa: ANN001
        super().__init__(daemon=True)
        self.lab, self.names = lab, set(names)
        self.stop = threading.Event()
        self.problems: list[str] = []
        self.rounds = 0

    def run(self) -> None:
        while not self.stop.is_set():
            data = self.lab.userdb_path.read_bytes()
            seen = set()
            for line in data.splitlines():
                if not line or line.startswith(b"#"):
                    continue
                name, tab, fields = line.partition(b"\t")
                values = first_values(parse_fields(decode(fields)))
                if not tab or not values.get("systempw", "").startswith("$") or "home" not in values:
                    self.problems.append(f"broken text line {line[:60]!r}")
                seen.add(decode(name))
            if seen != self.names:
                self.problems.append(f"text has {len(seen)} users")
            for path in (self.lab.dat_path, self.lab.shadow_path):
                try:
                    with gdbm.open_reader(str(path)) as db:
                        keys = {decode(k) for k in db.keys()}
                        for key in keys:
                            if db.get(key.encode()) is None:
                                self.problems.append(f"{path.name}: {key} vanished mid-read")
                except Exception as exc:  # noqa: BLE001
                    self.problems.append(f"{path.name}: {type(exc).__name__}: {exc}")
                    continue
                if keys != self.names:
                    self.problems.append(f"{path.name} has {len(keys)} users")
            self.rounds += 1


def check_all_changed(lab, names: list[str]) -> None:  # noqa: ANN001
    for name in names:
        assert lab.authtest("-s", "imap", name, NEW).returncode == 0, name
    text = lab.userdb_path.read_text()
    assert text.count("systempw=$6$") == len(names)  # every record has its new sha512 hash


def test_twenty_concurrent_processes_lose_no_update(courier_lab) -> None:
    config = setup_lab(courier_lab)
    reader = Reader(courier_lab, USERS)
    reader.start()
    procs = [subprocess.Popen([sys.executable, str(BIN), "--config", str(config), "--stderr"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in USERS]
    outputs = [p.communicate(script(name, OLD, NEW), timeout=120) for p, name in zip(procs, USERS)]
    reader.stop.set()
    reader.join(30)
    for (out, err), proc in zip(outputs, procs):
        assert out.endswith(b"200 Password changed\r\n200 Bye\r\n"), err
        assert proc.returncode == 0
    assert reader.rounds > 0 and reader.problems == []
    check_all_changed(courier_lab, USERS)


def test_twenty_concurrent_connections_to_listen_mode_lose_no_update(courier_lab) -> None:
    config = setup_lab(courier_lab)
    server = subprocess.Popen([sys.executable, str(BIN), "--config", str(config), "--stderr",
                               "--listen", "127.0.0.1:0"], stderr=subprocess.PIPE)
    port = int(re.search(rb":(\d+)", server.stderr.readline()).group(1))
    reader = Reader(courier_lab, USERS)
    reader.start()
    replies: dict[str, bytes] = {}

    def client(name: str) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(script(name, OLD, NEW))
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
            replies[name] = b"".join(chunks)

    threads = [threading.Thread(target=client, args=(name,)) for name in USERS]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        reader.stop.set()
        reader.join(30)
        server.send_signal(signal.SIGTERM)
        assert server.wait(15) == 0
    for name in USERS:
        assert replies[name].endswith(b"200 Password changed\r\n200 Bye\r\n"), name
    assert reader.rounds > 0 and reader.problems == []
    check_all_changed(courier_lab, USERS)


def _current(lab, name: str) -> tuple[str | None, str | None]:  # noqa: ANN001
    """Which of OLD/NEW the text record and the compiled shadow hold (None: neither)."""
    def which(stored: str | None) -> str | None:
        for candidate in (OLD, NEW):
            if stored and verify_password(candidate.encode(), stored):
                return candidate
        return None

    text = None
    for line in lab.userdb_path.read_bytes().splitlines():
        if line.startswith(name.encode() + b"\t"):
            text = first_values(parse_fields(decode(line.partition(b"\t")[2]))).get("systempw")
    with gdbm.open_reader(str(lab.shadow_path)) as db:
        raw = db.get(name.encode())
    compiled = first_values(parse_fields(decode(raw))).get("systempw") if raw else None
    return which(text), which(compiled)


def _kill_during_changes(lab, name: str, attempts: int, check, resync: bool = False,  # noqa: ANN001
                         follow: str = "text") -> None:
    """``attempts`` times: start a change of ``name`` between OLD and NEW, SIGKILL
    it at a random moment after it began the change, then ``check(text, compiled)``
    (which of OLD/NEW each holds).  ``resync`` runs Courier's makeuserdb after each
    kill; ``follow`` says which file's password the next attempt uses as the old
    one ("text", or "compiled": what Courier accepts)."""
    rng = random.Random(4)
    current = OLD
    config = lab.root / "authkit.conf"
    for attempt in range(attempts):
        target = NEW if current == OLD else OLD
        proc = subprocess.Popen([sys.executable, str(BIN), "--config", str(config), "--stderr", "-v"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.stdin.write(script(name, current, target))
        proc.stdin.flush()
        line = b"x"
        while line and b"C: newpass" not in line:  # the change has begun
            line = proc.stderr.readline()
        time.sleep(rng.uniform(0, 0.03))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        text, compiled = _current(lab, name)
        check(attempt, text, compiled)
        if resync:
            lab.makeuserdb()
        current = compiled if follow == "compiled" else text


def test_sigkill_during_the_change_leaves_old_or_new_and_no_stale_lock(courier_lab) -> None:
    from authkit.userdb.locks import FileLock, compiled_lock_path, text_lock_path

    name = "victim@example.com"
    setup_lab(courier_lab, [name, "bystander@example.com"])
    seen = set()

    def check(attempt: int, text: str | None, compiled: str | None) -> None:
        assert text in (OLD, NEW) and compiled in (OLD, NEW), (attempt, text, compiled)
        seen.add(text)
        for lock in (text_lock_path(str(courier_lab.userdb_path)), compiled_lock_path(str(courier_lab.userdb_path))):
            with FileLock(lock, timeout=1.0):  # TemporaryFailure if a dead process still held it
                pass
        assert courier_lab.authtest("-s", "imap", "bystander@example.com", OLD).returncode == 0

    _kill_during_changes(courier_lab, name, 30, check, resync=True)
    assert seen == {OLD, NEW}  # the kills landed both before and after the commit
    # the next change goes through at once
    text, _ = _current(courier_lab, name)
    final = NEW if text == OLD else OLD
    start = time.monotonic()
    done = subprocess.run([sys.executable, str(BIN), "--config", str(courier_lab.root / "authkit.conf"), "--stderr"],
                          input=script(name, text, final), capture_output=True, timeout=60)
    assert done.stdout.endswith(b"200 Password changed\r\n200 Bye\r\n"), done.stderr
    assert time.monotonic() - start < 10
    assert courier_lab.authtest("-s", "imap", name, final).returncode == 0


def test_after_a_kill_courier_sees_old_or_new_and_the_next_change_levels_the_files(courier_lab) -> None:
    """Text and compiled pair are two files: a kill between the two renames leaves
    the compiled pair (what Courier's authdaemond reads) one change behind, i.e.
    still on the password the client never saw changed.  The user retries with
    that password; the next change must go through and leave both files equal."""
    name = "victim@example.com"
    setup_lab(courier_lab, [name, "bystander@example.com"])
    config = courier_lab.root / "authkit.conf"

    def check(attempt: int, text: str | None, compiled: str | None) -> None:
        assert text in (OLD, NEW) and compiled in (OLD, NEW), (attempt, text, compiled)

    _kill_during_changes(courier_lab, name, 30, check, follow="compiled")
    _, compiled = _current(courier_lab, name)
    final = NEW if compiled == OLD else OLD
    done = subprocess.run([sys.executable, str(BIN), "--config", str(config), "--stderr"],
                          input=script(name, compiled, final), capture_output=True, timeout=60)
    assert done.stdout.endswith(b"200 Password changed\r\n200 Bye\r\n"), done.stderr
    assert _current(courier_lab, name) == (final, final)
    assert courier_lab.authtest("-s", "imap", name, final).returncode == 0
