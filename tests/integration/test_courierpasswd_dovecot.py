"""courierpasswd under Dovecot 2.3's ``passdb { driver = checkpassword }``.

The real Dovecot from Debian (dovecot-core, dovecot-imapd 2.3.19.1) is started
on 127.0.0.1 with the config of spec real-clients.md section 1.1, from a private
directory (``dovecot -F -c $LAB/dovecot.conf``; nothing in /etc/dovecot is read
or touched), and Python's imaplib logs in with ``LOGIN``, ``AUTHENTICATE PLAIN``
and ``AUTHENTICATE LOGIN``.  Dovecot runs courierpasswd as the ``dovecot`` user
(its auth service user) with its reply program on descriptor 4.

The userdb is compiled by Courier's own tools in a CourierLab (``userdb alice
set ...``, ``userdbpw -md5``, ``makeuserdb``); the resulting ``userdb.dat`` and
``userdbshadow.dat`` are copied to a directory the ``dovecot`` user can read
(test only: in production make them readable by the auth user's group, or run
``service auth { user = root }``).

Checked (docs/courierpasswd.8, EXIT STATUS): a good password gives ``OK``; a
wrong password or an unknown user gives ``[AUTHENTICATIONFAILED]``, never
``[UNAVAILABLE]`` (which is what exit 111 would give); ``doveadm auth lookup``
(``AUTHORIZED=1``) finds a known user and not an unknown one.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from stacktools import free_port

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterator

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
COURIERPASSWD = REPO / "bin" / "courierpasswd"
DOVECOT = "/usr/sbin/dovecot"
DOVEADM = "/usr/bin/doveadm"
REPLY = "/usr/lib/dovecot/checkpassword-reply"

ALICE, ALICE_PW = "alice@example.org", "s3cret-alice"
BOB, BOB_PW = "bob", "b0b pa\u00df"  # a space and UTF-8 reach the program as raw bytes

CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {lab}/run
state_dir = {lab}/state
instance_name = authkit-cpw-{pid}
log_path = {lab}/dovecot.log
info_log_path = {lab}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
auth_debug = yes
auth_cache_size = 0
auth_failure_delay = 0
mail_location = maildir:{lab}/mail/%u
first_valid_uid = 1
passdb {{
  driver = checkpassword
  args = {courierpasswd} --config {lab}/authkit.conf -s imap
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={lab}/mail/%u
}}
service auth {{
  user = dovecot
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


def _missing() -> list[str]:
    reasons = []
    if os.geteuid() != 0:
        reasons.append("not root")
    for path in (DOVECOT, DOVEADM, REPLY, "/usr/lib/dovecot/imap", "/usr/bin/python3"):
        if not os.access(path, os.X_OK):
            reasons.append(f"{path} missing (dovecot-core, dovecot-imapd)")
    try:
        pwd.getpwnam("dovecot")
    except KeyError:
        reasons.append("no dovecot user")
    return reasons


class _IMAP(imaplib.IMAP4):
    """imaplib from a chosen 127.0.0.x source address: Dovecot's per-IP auth
    penalty then never delays the next test."""

    source_ip = "127.0.0.1"

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout, (self.source_ip, 0))


@pytest.fixture
def dovecot_lab(courier_lab_factory: object) -> "dict":
    """A compiled Courier userdb (alice, bob), an authkit.conf naming it and a
    running Dovecot; yields ``{"port", "lab", "conf", "log"}``."""
    reasons = _missing()
    if reasons:
        pytest.skip("; ".join(reasons))
    lab = Path(tempfile.mkdtemp(prefix="cpw-dovecot-", dir="/tmp"))
    try:
        os.chmod(lab, 0o755)
        courier = courier_lab_factory()
        # made with Courier's own tools: userdb set, userdbpw -md5, makeuserdb
        courier.add_user(ALICE, ALICE_PW, uid="5000", gid="5000", home=f"{lab}/home/alice")
        courier.add_user(BOB, BOB_PW, uid="5001", gid="5000", home=f"{lab}/home/bob",
                         pw_field="imappw")
        courier.makeuserdb()
        db = lab / "db"
        db.mkdir(mode=0o755)
        for src, name in ((courier.dat_path, "userdb.dat"), (courier.shadow_path, "userdbshadow.dat")):
            shutil.copyfile(src, db / name)
            os.chmod(db / name, 0o644)  # the dovecot user must read them (test only)
        assert not (db / "userdb").exists()  # only the compiled pair is there
        (lab / "authkit.conf").write_text(f"userdb = {db}/userdb\n")
        os.chmod(lab / "authkit.conf", 0o644)
        (lab / "mail").mkdir(mode=0o1777)
        os.chmod(lab / "mail", 0o1777)
        with running_dovecot(lab) as (port, conf):
            yield {"port": port, "lab": lab, "conf": conf, "log": lab / "dovecot.log"}
    finally:
        shutil.rmtree(lab, ignore_errors=True)


@contextlib.contextmanager
def running_dovecot(lab: Path) -> "Iterator[tuple[int, Path]]":
    """Dovecot on :data:`CONFIG` under ``lab`` (its passdb courierpasswd reads
    ``lab``/authkit.conf) on a free port, from when it accepts until it is
    stopped on leaving; yields ``(port, dovecot.conf)``."""
    port = free_port()
    conf = lab / "dovecot.conf"
    conf.write_text(CONFIG.format(lab=lab, pid=os.getpid(), port=port, courierpasswd=COURIERPASSWD))
    proc = subprocess.Popen([DOVECOT, "-F", "-c", str(conf)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read() if proc.poll() is not None else b""
                    pytest.fail(f"dovecot did not start: {err!r} {_read(lab / 'dovecot.log')}")
                time.sleep(0.05)
        yield port, conf
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        proc.stderr.close()


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


_next_ip = iter(range(2, 250))


def _client(lab: dict) -> _IMAP:
    _IMAP.source_ip = f"127.0.0.{next(_next_ip)}"
    return _IMAP("127.0.0.1", lab["port"])


def _login(lab: dict, how: str, user: str, password: str) -> tuple[str, str]:
    """('OK'|'NO', text) of one login by ``how`` (LOGIN, PLAIN, LOGIN-SASL)."""
    imap = _client(lab)
    try:
        if how == "LOGIN":
            typ, data = imap.login(user, password)
        elif how == "PLAIN":
            typ, data = imap.authenticate(
                "PLAIN", lambda _: b"\0" + user.encode() + b"\0" + password.encode())
        else:
            answers = iter([user.encode(), password.encode()])
            typ, data = imap.authenticate("LOGIN", lambda _: next(answers))
        if typ == "OK":
            assert imap.select("INBOX")[0] == "OK"
        return typ, b" ".join(d for d in data if isinstance(d, bytes)).decode(errors="replace")
    except imaplib.IMAP4.error as exc:
        return "NO", str(exc)
    finally:
        try:
            imap.logout()
        except Exception:
            pass


METHODS = ["LOGIN", "PLAIN", "LOGIN-SASL"]


@pytest.mark.parametrize("how", METHODS)
def test_good_password_logs_in(dovecot_lab: dict, how: str) -> None:
    typ, text = _login(dovecot_lab, how, ALICE, ALICE_PW)
    assert typ == "OK", f"{text}\n{_read(dovecot_lab['log'])}"


@pytest.mark.parametrize("how", METHODS)
def test_wrong_password_is_authenticationfailed_not_unavailable(dovecot_lab: dict, how: str) -> None:
    typ, text = _login(dovecot_lab, how, ALICE, "wrong-password")
    assert typ == "NO"
    assert "AUTHENTICATIONFAILED" in text and "UNAVAILABLE" not in text, text
    assert "Login failed (status=1)" in _read(dovecot_lab["log"])


def test_unknown_user_is_authenticationfailed(dovecot_lab: dict) -> None:
    typ, text = _login(dovecot_lab, "LOGIN", "nobody-here@example.org", ALICE_PW)
    assert typ == "NO" and "AUTHENTICATIONFAILED" in text, text


def test_service_password_with_space_and_utf8_logs_in(dovecot_lab: dict) -> None:
    # bob has only imappw: it works because Dovecot's args say -s imap
    typ, text = _login(dovecot_lab, "PLAIN", BOB, BOB_PW)
    assert typ == "OK", f"{text}\n{_read(dovecot_lab['log'])}"


def test_reply_program_got_user_and_home_on_fd4(dovecot_lab: dict) -> None:
    assert _login(dovecot_lab, "LOGIN", ALICE, ALICE_PW)[0] == "OK"
    log = _read(dovecot_lab["log"])
    assert f"user={ALICE}\tuserdb_home={dovecot_lab['lab']}/home/alice" in log.replace("\\t", "\t"), log


def test_doveadm_auth_lookup_uses_authorized_mode(dovecot_lab: dict) -> None:
    conf = str(dovecot_lab["conf"])
    found = subprocess.run([DOVEADM, "-c", conf, "auth", "lookup", ALICE], capture_output=True,
                           timeout=60, text=True)
    assert found.returncode == 0, found.stdout + found.stderr + _read(dovecot_lab["log"])
    assert ALICE in found.stdout
    missing = subprocess.run([DOVEADM, "-c", conf, "auth", "lookup", "ghost"], capture_output=True,
                             timeout=60, text=True)
    assert missing.returncode != 0
    assert "doesn't exist" in missing.stdout + missing.stderr
