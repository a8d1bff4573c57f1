"""Fuzzing the authdaemond protocol (authkit.authdaemon.protocol).

Properties: the reply readers, fed any bytes in any chunking, return None,
FAIL, a dict / True, or a list of accounts, or raise ``ProtocolError`` (a
TemporaryFailure, exit 111) and nothing else; ``account_from_reply`` returns an
Account or raises TemporaryFailure; the request builders either refuse with a
typed authkit error or build bytes whose framing a hostile name or password
cannot break (one request line, the AUTH length right, PASSWD with exactly
three TABs).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from _budget import Counter, run_fuzz
from authkit.account import Account
from authkit.authdaemon import protocol as p
from authkit.errors import AuthError, TemporaryFailure

_reply_line = st.one_of(
    st.builds(lambda k, v: k + b"=" + v,
              st.sampled_from([b"UID", b"GID", b"HOME", b"ADDRESS", b"NAME", b"MAILDIR", b"QUOTA",
                               b"OPTIONS", b"PASSWD", b"PASSWD2", b"USERNAME", b"", b"X"]),
              st.one_of(st.binary(max_size=20), st.integers(0, 2**70).map(lambda i: str(i).encode()),
                        st.integers(4000, 5000).map(lambda n: b"7" * n))),
    st.sampled_from([b".", b"FAIL", b"OK", b"", b"#", b"# authuserdb"]),
    st.binary(max_size=30),
)
reply_bytes = st.one_of(
    st.lists(_reply_line, max_size=10).map(lambda ls: b"\n".join(ls) + b"\n"),
    st.lists(_reply_line, max_size=10).map(b"\n".join),
    st.binary(max_size=400),
)
enumerate_bytes = st.one_of(
    st.lists(st.one_of(
        st.lists(st.one_of(st.binary(max_size=12), st.sampled_from([b"1000", b"0", b"x", b"9" * 4400])),
                 min_size=1, max_size=7).map(b"\t".join),
        st.sampled_from([b"# authuserdb", b".", b""])), max_size=8).map(lambda ls: b"\n".join(ls) + b"\n"),
    st.binary(max_size=400),
)
cuts = st.lists(st.integers(0, 10000), max_size=5)


def _chunks(data: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({c % (len(data) + 1) for c in points} | {0, len(data)})
    return [data[a:b] for a, b in zip(marks, marks[1:]) if b > a]


def test_account_reply_reader_returns_a_reply_or_raises_protocol_error() -> None:
    count = Counter()

    @given(data=reply_bytes, points=cuts, eof=st.booleans())
    def target(data: bytes, points: list[int], eof: bool) -> None:
        count()
        reader = p.AccountReplyReader()
        result = None
        try:
            for chunk in _chunks(data, points):
                result = reader.receive_data(chunk)
            if eof or result is None:
                result = reader.receive_data(b"")
        except p.ProtocolError:
            return
        assert result is p.FAIL or isinstance(result, dict)
        if isinstance(result, dict):
            assert "PASSWD2" not in result
            try:
                account = p.account_from_reply(result, "andrew", getpwnam=lambda n: None)
            except TemporaryFailure:
                return
            assert isinstance(account, Account) and account.home

    run_fuzz("authdaemon-AccountReplyReader", target, count)


def test_passwd_reply_reader_returns_ok_fail_or_raises_protocol_error() -> None:
    count = Counter()

    @given(data=st.one_of(st.sampled_from([b"OK\n", b"FAIL\n", b"OK", b"OK\nOK\n", b"ok\n"]),
                          st.binary(max_size=100)), points=cuts)
    def target(data: bytes, points: list[int]) -> None:
        count()
        reader = p.PasswdReplyReader()
        try:
            result = None
            for chunk in _chunks(data, points):
                result = reader.receive_data(chunk)
            result = reader.receive_data(b"")
        except p.ProtocolError:
            assert data not in (b"OK\n", b"FAIL\n")
            return
        assert (data, result) in ((b"OK\n", True), (b"FAIL\n", p.FAIL))

    run_fuzz("authdaemon-PasswdReplyReader", target, count)


def test_enumerate_reader_returns_accounts_or_raises_protocol_error() -> None:
    count = Counter()

    @given(data=enumerate_bytes, points=cuts)
    def target(data: bytes, points: list[int]) -> None:
        count()
        reader = p.EnumerateReader()
        try:
            for chunk in _chunks(data, points):
                for account in reader.receive_data(chunk):
                    assert isinstance(account, Account) and account.uid > 0 and account.gid > 0
            reader.receive_data(b"")
        except p.ProtocolError:
            return
        assert reader.finished

    run_fuzz("authdaemon-EnumerateReader", target, count)


_text = st.one_of(st.text(max_size=20),
                  st.binary(max_size=20).map(lambda b: b.decode("utf-8", "surrogateescape")),
                  st.sampled_from(["a\nPASSWD x", "a\tb", "a b", " a", "a|b", "x=y", "\0", "é"]))
_secret = st.one_of(st.binary(max_size=20), st.sampled_from([b"a\nb", b"a\tb", b"a|b", b"a=b", b"'", b"\0"]))


def test_request_builders_refuse_or_keep_the_framing() -> None:
    count = Counter()

    @given(service=st.sampled_from(["imap", "login", "bad service", "x\n"]), name=_text,
           old=_secret, new=_secret, ip=st.none() | _text,
           kind=st.sampled_from(["pre", "login", "cram", "passwd"]))
    def target(service: str, name: str, old: bytes, new: bytes, ip: str | None, kind: str) -> None:
        count()
        try:
            if kind == "pre":
                request = p.pre_request(service, name, ip)
            elif kind == "login":
                request = p.login_request(service, name, old, ip)
            elif kind == "cram":
                request = p.cram_request(service, "md5", b"<1.2@x>", name, old.decode("latin-1"), ip)
            else:
                request = p.passwd_request(service, name, old, new, ip)
        except AuthError:
            return
        head = b""
        if request.startswith(b"TCPREMOTEIP="):
            head, _, request = request.partition(b"\n")
            assert not any(b < 0x20 for b in head)
        if kind == "pre":
            assert request.count(b"\n") == 1 and request.endswith(b"\n")
            assert request.startswith(b"PRE . " + service.encode() + b" ")
        elif kind == "passwd":
            assert request.count(b"\n") == 1 and request.endswith(b"\n")
            assert request.count(b"\t") == 3
            assert not any(c in request for c in (b"|", b"=", b"'", b'"'))
        else:
            first, _, body = request.partition(b"\n")
            assert first == b"AUTH %d" % len(body)
            assert body.count(b"\n") == 4 if kind == "login" else body.count(b"\n") == 4

    run_fuzz("authdaemon-request-builders", target, count)
