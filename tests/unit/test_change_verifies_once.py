"""issue 16: a password change verifies the old password once, not twice.

``courierpasswd -c``, ``authkit test NAME OLD NEW`` and courierpassd's change
step hand the uid policy to the source as ``check_account`` instead of
authenticating first; the source verifies the old password inside its locked
change.  Each test counts the calls of the scheme registry's
``verify_password`` (what every userdb check goes through) on a real
UserdbSource, and checks that a uid below ``min_uid`` is still refused with
nothing written.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from authkit import schemes
from authkit.checkpassword import parse_request
from authkit.cli import admin, courierpassd, courierpasswd
from authkit.cli._log import EventLog
from authkit.config import Settings
from authkit.errors import BadPassword, PolicyRefused
from authkit.schemes import make_password_hash
from authkit.userdb.source import UserdbSource

OLD = b"Old-Passw0rd-1"
NEW = b"New-Passw0rd-2"


def write_userdb(path: Path, uid: int) -> Path:
    sha = make_password_hash(OLD, "sha512-crypt")
    path.write_text(f"bob\tuid={uid}|gid={uid}|home=/home/bob|systempw={sha}\n")
    os.chmod(path, 0o600)
    return path


@pytest.fixture
def verifies(monkeypatch: pytest.MonkeyPatch) -> list:
    """The calls of ``authkit.schemes.verify_password`` during the test."""
    calls: list = []
    real = schemes.verify_password
    monkeypatch.setattr(schemes, "verify_password", lambda *args: calls.append(args) or real(*args))
    return calls


def settings_for(userdb: Path, min_uid: int = 1000) -> Settings:
    return Settings(userdb=str(userdb), min_uid=min_uid, bad_pass_delay=0).choose("userdb")


def source_for(userdb: Path) -> UserdbSource:
    return UserdbSource(str(userdb), refusal_floor=0)


def old_password_works(userdb: Path) -> bool:
    try:
        source_for(userdb).authenticate("bob", OLD)
        return True
    except BadPassword:
        return False


# -- courierpasswd -c ----------------------------------------------------------


def courierpasswd_change(userdb: Path, settings: Settings, old: bytes = OLD) -> None:
    request = parse_request(b"bob\0" + old + b"\0" + NEW + b"\0", change=True)
    courierpasswd._run(request, courierpasswd.parse_args(["-c"]), source_for(userdb), settings)


def test_courierpasswd_change_verifies_the_old_password_once(tmp_path: Path, verifies: list) -> None:
    userdb = write_userdb(tmp_path / "userdb", 5000)
    courierpasswd_change(userdb, settings_for(userdb))
    assert len(verifies) == 1
    assert not old_password_works(userdb)


@pytest.mark.parametrize("old", [OLD, b"wrong-password"])
def test_courierpasswd_change_below_min_uid_is_refused_and_writes_nothing(
        tmp_path: Path, verifies: list, old: bytes) -> None:
    userdb = write_userdb(tmp_path / "userdb", 500)
    before = userdb.read_bytes()
    # a wrong old password is a wrong password, whatever the uid: the policy's
    # answer is given only to one who knows the password
    with pytest.raises(PolicyRefused if old == OLD else BadPassword):
        courierpasswd_change(userdb, settings_for(userdb), old)
    assert len(verifies) == 1
    assert userdb.read_bytes() == before


# -- authkit test NAME OLD NEW -------------------------------------------------


def test_authkit_test_change_verifies_the_old_password_once(tmp_path: Path, verifies: list) -> None:
    userdb = write_userdb(tmp_path / "userdb", 5000)
    admin._change(source_for(userdb), "bob", OLD, NEW, "login", settings_for(userdb))
    assert len(verifies) == 1
    assert not old_password_works(userdb)


def test_authkit_test_change_below_min_uid_is_refused_and_writes_nothing(tmp_path: Path, verifies: list) -> None:
    userdb = write_userdb(tmp_path / "userdb", 500)
    before = userdb.read_bytes()
    with pytest.raises(PolicyRefused):
        admin._change(source_for(userdb), "bob", OLD, NEW, "login", settings_for(userdb))
    assert len(verifies) == 1
    assert userdb.read_bytes() == before


# -- courierpassd ----------------------------------------------------------------


class ScriptTransport(courierpassd.Transport):
    """The client's lines, one chunk a recv; ``before_newpass`` runs just before
    the NEWPASS line is handed over; then EOF."""

    def __init__(self, chunks: list[bytes], before_newpass=lambda: None) -> None:  # noqa: ANN001
        self.chunks = list(chunks)
        self.before_newpass = before_newpass
        self.sent = bytearray()

    def recv(self, timeout: float) -> bytes:
        if not self.chunks:
            return b""
        if self.chunks[0].lower().startswith(b"newpass"):
            self.before_newpass()
        return self.chunks.pop(0)

    def send(self, data: bytes) -> None:
        self.sent += data

    def close(self) -> None:
        pass


DIALOGUE = [b"user bob\r\n", b"pass " + OLD + b"\r\n", b"newpass " + NEW + b"\r\n", b"quit\r\n"]


def courierpassd_dialogue(userdb: Path, transport: ScriptTransport) -> str:
    settings = settings_for(userdb)
    server = courierpassd.Server(settings, source_for(userdb), "login", EventLog("courierpassd", True))
    return server.handle(transport, None)


def test_courierpassd_verifies_once_per_step(tmp_path: Path, verifies: list) -> None:
    """One verification answers PASS (the dialogue needs its verdict), one is
    the locked change's at NEWPASS; no third one before the change."""
    userdb = write_userdb(tmp_path / "userdb", 5000)
    transport = ScriptTransport(DIALOGUE)
    courierpassd_dialogue(userdb, transport)
    assert b"200 Password changed\r\n" in transport.sent
    assert len(verifies) == 2
    assert not old_password_works(userdb)


def test_courierpassd_change_applies_the_uid_policy_at_the_write(tmp_path: Path, verifies: list) -> None:
    """The account's uid drops below min_uid between PASS and NEWPASS: the
    change itself refuses it, and nothing is written."""
    userdb = write_userdb(tmp_path / "userdb", 5000)
    lowered = []

    def lower_uid() -> None:
        write_userdb(userdb, 500)
        lowered.append(userdb.read_bytes())

    transport = ScriptTransport(DIALOGUE, lower_uid)
    courierpassd_dialogue(userdb, transport)
    assert b"200 Your new password please\r\n" in transport.sent
    assert b"200 Password changed\r\n" not in transport.sent
    assert lowered and userdb.read_bytes() == lowered[0]
    assert old_password_works(userdb)
