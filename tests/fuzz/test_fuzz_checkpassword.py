"""Fuzzing the checkpassword fd-3 framing (authkit.checkpassword) and the real
courierpasswd program behind it.

Properties: any bytes, in any chunking, either parse to a request whose fields
are NUL-free slices of the input or raise exactly ``Misuse`` (exit 2) or
``Rejected`` (exit 1, only for more than 512 bytes); the program exits 1, 2 or
111 for an unknown account and never writes to stdout.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from _budget import Counter, run_fuzz
from authkit.checkpassword import (
    MAX_INPUT,
    CramLogin,
    InputCollector,
    Lookup,
    PasswordChange,
    PlainLogin,
    parse_request,
)
from authkit.errors import Misuse, Rejected

ROOT = Path(__file__).resolve().parents[2]

# fd-3 inputs: mostly NUL-separated fields (so that every branch is reached),
# sometimes raw bytes, sometimes longer than 512.
_field = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"", b"<1896.697170952@postoffice.example.net>", b"Y123456",
                     b"b913a602c7eda7a495b4e6e7334d3890", b"0" * 40, b"f" * 64,
                     b"andrew@example.com", b"\xff\xfe", b"a|b=c\td"]),
)
fd3_input = st.one_of(
    st.lists(_field, max_size=5).map(lambda fs: b"\0".join(fs) + b"\0"),
    st.lists(_field, max_size=5).map(b"\0".join),
    st.binary(max_size=600),
    st.binary(min_size=1, max_size=64).map(lambda b: (b * (600 // len(b) + 1))[: 500 + len(b) % 30]),
)


def test_parse_request_raises_only_misuse_or_rejected() -> None:
    count = Counter()

    @given(data=fd3_input, change=st.booleans(),
           cram=st.sampled_from([None, "md5", "sha1", "sha256"]), authorized=st.booleans())
    def target(data: bytes, change: bool, cram: str | None, authorized: bool) -> None:
        count()
        try:
            request = parse_request(data, change=change, cram=cram, authorized=authorized)
        except Rejected as exc:
            assert exc.exit_code == 1
            assert len(data) > MAX_INPUT, "only oversized input is Rejected by the framing"
            return
        except Misuse as exc:
            assert exc.exit_code == 2
            assert len(data) <= MAX_INPUT
            assert data.count(b"\0") < (3 if change else 2)
            return
        assert len(data) <= MAX_INPUT and data.count(b"\0") >= 2
        assert b"\0" not in request.user and data.startswith(request.user + b"\0")
        if change:
            assert isinstance(request, PasswordChange)
            assert data.startswith(request.user + b"\0" + request.old + b"\0" + request.new + b"\0")
        elif isinstance(request, Lookup):
            assert authorized and data.startswith(request.user + b"\0\0")
        elif isinstance(request, CramLogin):
            assert cram == request.algorithm
            assert request.challenge.startswith(b"<") and request.challenge.endswith(b">")
        else:
            assert isinstance(request, PlainLogin)
            assert b"\0" not in request.password and b"\0" not in request.timestamp
            secret = getattr(request, "password")
            if len(secret) >= 6 and secret not in request.user:
                assert repr(secret) not in repr(request)

    run_fuzz("fd3-parse_request", target, count)


def test_input_collector_refuses_the_513th_byte_in_any_chunking() -> None:
    count = Counter()

    @given(chunks=st.lists(st.binary(min_size=1, max_size=200), max_size=8))
    def target(chunks: list[bytes]) -> None:
        count()
        collector = InputCollector()
        total = 0
        try:
            for chunk in chunks:
                total += len(chunk)
                assert collector.receive_data(chunk) is False
        except Rejected:
            assert total > MAX_INPUT
            return
        assert total <= MAX_INPUT
        assert collector.receive_data(b"") is True
        assert collector.data == b"".join(chunks)

    run_fuzz("fd3-InputCollector", target, count)


def _run_courierpasswd(data: bytes, userdb: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "AUTHKIT_USERDB": str(userdb)}
    return subprocess.run(
        [sys.executable, "-S", str(ROOT / "bin" / "courierpasswd"), "--stdin", "--stderr", *args],
        input=data, capture_output=True, env=env, timeout=30,
    )


def test_courierpasswd_maps_every_hostile_input_to_a_documented_exit(tmp_path: Path) -> None:
    userdb = tmp_path / "userdb"
    # one account whose password nobody sends: every example is a rejection
    userdb.write_bytes(b"known@example.com\tuid=1000|gid=1000|home=/home/k|"
                       b"systempw={SHA}AAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
    userdb.chmod(0o600)
    before = userdb.read_bytes()
    count = Counter()

    @given(data=fd3_input, flags=st.sampled_from([(), ("-c",), ("-C", "md5")]))
    def target(data: bytes, flags: tuple) -> None:
        count()
        proc = _run_courierpasswd(data, userdb, *flags)
        assert proc.returncode in (1, 2, 111), (proc.returncode, proc.stderr[-300:])
        assert proc.stdout == b"", "stdout is the client's socket: nothing may go there"
        assert b"Traceback" not in proc.stderr
        lines = proc.stderr.splitlines()
        assert len(lines) == 1, "one log line per attempt"
        if len(data) > MAX_INPUT:
            assert proc.returncode == 1

    run_fuzz("courierpasswd-program", target, count, scale=0.25)
    assert userdb.read_bytes() == before
