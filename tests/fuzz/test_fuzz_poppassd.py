"""Fuzzing the poppassd dialogue (authkit.poppassd) and the real courierpassd.

The session is fed arbitrary byte chunks (a mix of dialogue lines and raw
bytes), with random verdicts for every VerifyOld/ChangePassword it asks for.
Properties: it never raises; it only ever emits the documented actions; every
reply is one ``200 ``/``500 `` line ending in CRLF with no other CR or LF; a
``500`` is always followed by Close; nothing comes after Close; at EOF it
closes (unless a verdict is pending); a ChangePassword carries a new password
the policy accepted.  The program (stdin/stdout mode) answers the same way.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from _budget import Counter, run_fuzz
from authkit.config import Settings
from authkit.poppassd import (
    CLOSED,
    MAX_LINE,
    ChangePassword,
    Close,
    Delay,
    PoppassdSession,
    Reply,
    VerifyOld,
)

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = Settings(bad_pass_delay=3.0, min_password_length=8, max_password_length=128,
                    max_username_length=64, min_uid=100)
REPLY_LINE = re.compile(rb"\A(200|500) [^\r\n]*\r\n\Z")

_word = st.sampled_from([b"user", b"USER", b"pass", b"Pass", b"newpass", b"quit", b"QUIT",
                         b"", b"help", b"user\t", b"\xff", b"newpass "])
_arg = st.one_of(st.binary(max_size=30), st.sampled_from([
    b"alice", b"secret123", b"n3w-Secret!", b"a|b=c", b"x" * 70, b"y" * 130, b"\r", b"\0",
    b"  spaced  ", b"\xc3\xa9t\xc3\xa9-password"]))
_line = st.builds(lambda w, sep, a, end: w + sep + a + end, _word,
                  st.sampled_from([b" ", b"\t", b"   ", b""]), _arg,
                  st.sampled_from([b"\r\n", b"\n", b"\r", b"", b"\n\n"]))
client_bytes = st.one_of(
    st.lists(_line, max_size=8).map(b"".join),
    st.binary(max_size=300),
    st.integers(min_value=MAX_LINE - 2, max_value=MAX_LINE + 3).map(lambda n: b"user " + b"a" * n),
)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:]) if b > a]


def check_actions(actions: list, log: list) -> None:
    for action in actions:
        assert isinstance(action, (Reply, Delay, VerifyOld, ChangePassword, Close)), action
        if log and isinstance(log[-1], Close):
            raise AssertionError(f"{action!r} after Close")
        if isinstance(action, Reply):
            assert action.code in (200, 500)
            assert REPLY_LINE.match(action.data), action.data
        if isinstance(action, ChangePassword):
            assert SETTINGS.min_password_length <= len(action.new) <= SETTINGS.max_password_length
            assert not any(b < 0x20 or b == 0x7F for b in action.new)
            assert action.new != action.old
        if isinstance(action, (VerifyOld, ChangePassword)):
            assert "old=" not in repr(action) and "new=" not in repr(action)
        log.append(action)
    replies = [a for a in log if isinstance(a, Reply)]
    for index, reply in enumerate(replies):
        if reply.code == 500:
            assert index == len(replies) - 1, "nothing is sent after a 500"
            assert isinstance(log[-1], Close) or log[-1] is reply


def test_session_survives_any_byte_stream_and_speaks_only_200_and_500() -> None:
    count = Counter()

    @given(data=client_bytes, cuts=st.lists(st.integers(0, 2000), max_size=6),
           verdicts=st.lists(st.sampled_from(["ok", "refused", "error", "policy"]), max_size=4),
           timeout_at=st.none() | st.integers(0, 6))
    def target(data: bytes, cuts: list[int], verdicts: list[str], timeout_at: int | None) -> None:
        count()
        session = PoppassdSession(SETTINGS, "1.0")
        log: list = []
        check_actions(session.start(), log)
        pending: list = []
        verdicts = list(verdicts)

        def settle(actions: list) -> None:
            check_actions(actions, log)
            pending.extend(a for a in actions if isinstance(a, (VerifyOld, ChangePassword)))
            while pending:
                action = pending.pop(0)
                verdict = verdicts.pop(0) if verdicts else "refused"
                if verdict == "ok":
                    more = session.old_password_ok() if isinstance(action, VerifyOld) else session.password_changed()
                elif verdict == "refused":
                    more = session.old_password_refused()
                elif verdict == "policy" and isinstance(action, ChangePassword):
                    more = session.change_refused("New password\nis weak\r\0")
                else:
                    more = session.server_error("disk full")
                check_actions(more, log)
                pending.extend(a for a in more if isinstance(a, (VerifyOld, ChangePassword)))

        for index, chunk in enumerate(_chunks(data, cuts)):
            if timeout_at == index:
                settle(session.timeout())
            settle(session.receive_data(chunk))
        settle(session.receive_data(b""))
        assert session.state == CLOSED, "EOF closes the session once no verdict is pending"
        assert isinstance(log[-1], Close)
        assert session.receive_data(b"user bob\r\n") == [] and session.timeout() == []

    run_fuzz("poppassd-session", target, count)


def test_courierpassd_program_answers_any_bytes_with_crlf_lines(tmp_path: Path) -> None:
    userdb = tmp_path / "userdb"
    userdb.write_bytes(b"alice\tuid=1000|gid=1000|home=/home/a|systempw={SHA}AAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
    userdb.chmod(0o600)
    config = tmp_path / "authkit.conf"
    config.write_text(f"userdb = {userdb}\nbad_pass_delay = 0\nidle_timeout = 2\n")
    before = userdb.read_bytes()
    count = Counter()

    @given(data=client_bytes)
    def target(data: bytes) -> None:
        count()
        proc = subprocess.run(
            [sys.executable, "-S", str(ROOT / "bin" / "courierpassd"), "--stderr", "--config", str(config)],
            input=data, capture_output=True, timeout=30, env={"PATH": "/usr/bin:/bin"},
        )
        assert proc.returncode in (1, 111), (proc.returncode, proc.stderr[-300:])
        assert b"Traceback" not in proc.stderr
        lines = proc.stdout.split(b"\r\n")
        assert lines[-1] == b"", "every reply ends in CRLF"
        for line in lines[:-1]:
            assert REPLY_LINE.match(line + b"\r\n"), line
        assert lines[0].startswith(b"200 courierpassd v")
        assert sum(line.startswith(b"500 ") for line in lines) <= 1

    run_fuzz("courierpassd-program", target, count, scale=0.25)
    assert userdb.read_bytes() == before
