"""courierpasswd under qpsmtpd's ``auth/auth_checkpassword`` plugin, driven by swaks.

Debian's qpsmtpd 0.94 is started on 127.0.0.1 as user ``qpsmtpd`` with the
config of spec real-clients.md section 2.2 in a private ``QPSMTPD_CONFIG``
directory (``/etc/qpsmtpd`` is not read).  The plugin runs
``sh -c '<checkpw> /bin/true 3<&0'`` with ``user\\0pass\\0Y123456\\0`` on fds 0
and 3 and **the SMTP client's socket on fd 1**.  ``checkpw`` must be one
executable path, so it is bin/courierpasswd itself (the userdb comes from
``AUTHKIT_USERDB`` in qpsmtpd's environment) or, for ``-s imap``, a generated
two-line wrapper script.

The userdb is compiled by Courier's own tools in a CourierLab (``userdb ...
set``, ``userdbpw -md5``, ``makeuserdb``) and the pair copied to a directory the
``qpsmtpd`` user can read.

Checked (docs/courierpasswd.8): AUTH PLAIN and AUTH LOGIN with the right
password get ``235``, a wrong password or unknown user ``535``; every line swaks
receives is an SMTP reply (courierpasswd wrote nothing on the stream); after 235
the session may relay.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from stacktools import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
COURIERPASSWD = REPO / "bin" / "courierpasswd"
FORKSERVER = "/usr/bin/qpsmtpd-forkserver"
SWAKS = "/usr/bin/swaks"
PLUGINS = "/usr/share/qpsmtpd/plugins"

ALICE, ALICE_PW = "alice@example.org", "s3cret-alice"
BOB, BOB_PW = "bob", "imap-only-pw"  # only an imappw field


def _missing() -> list[str]:
    reasons = []
    if os.geteuid() != 0:
        reasons.append("not root")
    for path in (FORKSERVER, SWAKS, f"{PLUGINS}/auth/auth_checkpassword", "/usr/bin/python3"):
        if not os.path.exists(path):
            reasons.append(f"{path} missing (qpsmtpd, swaks)")
    try:
        pwd.getpwnam("qpsmtpd")
    except KeyError:
        reasons.append("no qpsmtpd user")
    return reasons


@pytest.fixture
def compiled_userdb(courier_lab_factory: object) -> "Path":
    """``<dir>/userdb`` whose compiled pair was made by Courier's makeuserdb, in a
    directory readable by the qpsmtpd user; removed afterwards."""
    reasons = _missing()
    if reasons:
        pytest.skip("; ".join(reasons))
    root = Path(tempfile.mkdtemp(prefix="cpw-qpsmtpd-", dir="/tmp"))
    try:
        os.chmod(root, 0o755)
        courier = courier_lab_factory()
        courier.add_user(ALICE, ALICE_PW, uid="5000", gid="5000", home="/home/vmail/alice")
        courier.add_user(BOB, BOB_PW, uid="5001", gid="5000", home="/home/vmail/bob", pw_field="imappw")
        courier.makeuserdb()
        for src, name in ((courier.dat_path, "userdb.dat"), (courier.shadow_path, "userdbshadow.dat")):
            shutil.copyfile(src, root / name)
            os.chmod(root / name, 0o644)  # readable by the qpsmtpd user (test only)
        yield root / "userdb"
    finally:
        shutil.rmtree(root, ignore_errors=True)


class Qpsmtpd:
    def __init__(self, lab: Path, checkpw: Path, userdb: Path) -> None:
        self.lab = lab
        self.port = free_port()
        config = lab / "config"
        config.mkdir()
        spool = lab / "spool"
        spool.mkdir(mode=0o700)
        maildir = lab / "maildir"
        for sub in ("", "new", "cur", "tmp"):
            (maildir / sub).mkdir(exist_ok=True)
        entry = pwd.getpwnam("qpsmtpd")
        for path in (spool, maildir, maildir / "new", maildir / "cur", maildir / "tmp"):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        files = {
            "plugin_dirs": PLUGINS,
            "spool_dir": str(spool),
            "me": "lab.example",
            "rcpthosts": "example.org",
            "loglevel": "7",
            "plugins": f"auth/auth_checkpassword checkpw {checkpw} true /bin/true\n"
                       f"rcpt_ok\nqueue/maildir {maildir}",
        }
        for name, text in files.items():
            (config / name).write_text(text + "\n")
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "QPSMTPD_CONFIG": str(config),
               "AUTHKIT_USERDB": str(userdb)}
        self.log = open(lab / "qpsmtpd.log", "wb")
        self.proc = subprocess.Popen(
            [FORKSERVER, "-l", "127.0.0.1", "-p", str(self.port), "-u", "qpsmtpd", "-H",
             "--pid-file", str(lab / "qpsmtpd.pid")],
            cwd=lab, env=env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    pytest.fail(f"qpsmtpd did not start: {self.read_log()}")
                time.sleep(0.1)

    def read_log(self) -> str:
        return (self.lab / "qpsmtpd.log").read_text(errors="replace")

    def swaks(self, method: str, user: str, password: str, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [SWAKS, "--server", "127.0.0.1", "--port", str(self.port), "--helo", "client.example",
             "--auth", method, "--auth-user", user, "--auth-password", password,
             "--from", "sender@example.net", "--to", "rcpt@elsewhere.example", *extra],
            capture_output=True, text=True, timeout=60,
        )

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        # forked children of the session group, if any survived
        try:
            os.killpg(self.proc.pid, 9)
        except OSError:
            pass
        self.log.close()


@pytest.fixture
def qpsmtpd_factory(compiled_userdb: Path):
    labs: list[tuple[Path, Qpsmtpd]] = []

    def make(checkpw: Path | None = None) -> Qpsmtpd:
        lab = Path(tempfile.mkdtemp(prefix="cpw-qpsmtpd-lab-", dir="/tmp"))
        os.chmod(lab, 0o755)
        server = Qpsmtpd(lab, checkpw or COURIERPASSWD, compiled_userdb)
        labs.append((lab, server))
        return server

    yield make
    for lab, server in labs:
        server.close()
        shutil.rmtree(lab, ignore_errors=True)


REPLY = re.compile(r"^\d{3}[ -]")


def server_lines(output: str) -> list[str]:
    """What the server sent, as swaks shows it (``<-`` and ``<**`` lines)."""
    lines = []
    for line in output.splitlines():
        match = re.match(r"^\s*<(?:-|\*\*|~)\s+(.*)$", line)
        if match:
            lines.append(match.group(1))
    return lines


def auth_reply(output: str) -> str:
    """The server's answer to AUTH: the first reply that is not 334."""
    seen_auth = False
    for line in output.splitlines():
        if re.match(r"^\s*[-~*]*>\s+AUTH ", line):
            seen_auth = True
            continue
        if seen_auth:
            match = re.match(r"^\s*<(?:-|\*\*|~)\s+(\d{3}.*)$", line)
            if match and not match.group(1).startswith("334"):
                return match.group(1)
    raise AssertionError(f"no AUTH reply in:\n{output}")


@pytest.mark.parametrize("method", ["PLAIN", "LOGIN"])
def test_good_password_gets_235_and_may_relay(qpsmtpd_factory, method: str) -> None:
    server = qpsmtpd_factory()
    result = server.swaks(method, ALICE, ALICE_PW)
    out = result.stdout + result.stderr
    assert auth_reply(out).startswith("235"), out + server.read_log()
    assert result.returncode == 0, out
    assert any(line.startswith("250") and "Queued" in line for line in server_lines(out)), out
    assert all(REPLY.match(line) for line in server_lines(out)), out


@pytest.mark.parametrize("method", ["PLAIN", "LOGIN"])
def test_wrong_password_gets_535(qpsmtpd_factory, method: str) -> None:
    server = qpsmtpd_factory()
    result = server.swaks(method, ALICE, "wrong-password", "--quit-after", "AUTH")
    out = result.stdout + result.stderr
    assert auth_reply(out).startswith("535"), out
    assert all(REPLY.match(line) for line in server_lines(out)), out
    assert "auth failed: 256" in server.read_log()  # exit status 1, not 111


def test_unknown_user_gets_535_with_exit_1(qpsmtpd_factory) -> None:
    server = qpsmtpd_factory()
    result = server.swaks("PLAIN", "ghost@example.org", ALICE_PW, "--quit-after", "AUTH")
    out = result.stdout + result.stderr
    assert auth_reply(out).startswith("535"), out
    assert "auth failed: 256" in server.read_log()


def test_wrapper_script_passes_service_option(qpsmtpd_factory, compiled_userdb: Path) -> None:
    wrapper = compiled_userdb.parent / "courierpasswd-imap"
    wrapper.write_text(f'#!/bin/sh\nexec {COURIERPASSWD} -s imap -- "$@"\n')
    os.chmod(wrapper, 0o755)
    server = qpsmtpd_factory(wrapper)
    ok = server.swaks("PLAIN", BOB, BOB_PW, "--quit-after", "AUTH")
    assert auth_reply(ok.stdout + ok.stderr).startswith("235"), ok.stdout + server.read_log()
    plain_service = qpsmtpd_factory()  # service login: bob has no systempw
    no = plain_service.swaks("PLAIN", BOB, BOB_PW, "--quit-after", "AUTH")
    assert auth_reply(no.stdout + no.stderr).startswith("535")
