"""authkit.authdaemon.protocol: every request and reply shape of spec
courier-authlib.md section 4, without sockets.

Wire fixtures are the real dialogues recorded in the spec (Debian 12
courier-authdaemon 0.71.4 with authuserdb, captured with ``strace`` of
``authtest`` and raw socket requests); each reader is fed the reply whole, byte
by byte, and split in two (h11's ``tr()``), and must give the same answer.
"""

from __future__ import annotations

import binascii

import pytest

from authkit.account import Account
from authkit.authdaemon import protocol
from authkit.authdaemon.protocol import (
    FAIL,
    AccountReplyReader,
    EnumerateReader,
    PasswdReplyReader,
    ProtocolError,
    account_from_reply,
    apply_defdomain,
    cram_request,
    login_request,
    metadata,
    passwd_request,
    pre_request,
)
from authkit.errors import (
    BadPassword,
    Misuse,
    PolicyRefused,
    Rejected,
    TemporaryFailure,
    UnknownUser,
)

# --- replies recorded from the real daemon (spec section 4) -----------------

ANDREW_HASH = "$1$XvgBrLvh$k/Fs0X9fbiRCpmvIvfRos1"
PRE_ANDREW = (
    b"UID=5000\nGID=5000\nHOME=/home/vmail/example.com/andrew\nADDRESS=andrew@example.com\n"
    b"NAME=Andrew Example\nMAILDIR=/home/vmail/example.com/andrew/Maildir\nQUOTA=10000000S\n"
    b"PASSWD=$1$XvgBrLvh$k/Fs0X9fbiRCpmvIvfRos1\nOPTIONS=disableshared=1\n.\n"
)
PRE_HMACONLY = (
    b"UID=5000\nGID=5000\nHOME=/home/vmail/example.org/hmaconly\n"
    b"ADDRESS=hmaconly@example.org\n.\n"
)
AUTH_LOGIN_ANDREW = (
    b"UID=5000\nGID=5000\nHOME=/home/vmail/example.com/andrew\nADDRESS=andrew@example.com\n"
    b"NAME=Andrew Example\nMAILDIR=/home/vmail/example.com/andrew/Maildir\nQUOTA=10000000S\n"
    b"PASSWD=iDIGoFe1Xzt7Q\nPASSWD2=andrew-imap\nOPTIONS=disableshared=1\n.\n"
)
AUTH_CRAM_ANDREW = (
    b"UID=5000\nGID=5000\nHOME=/home/vmail/example.com/andrew\nADDRESS=andrew@example.com\n"
    b"MAILDIR=/home/vmail/example.com/andrew/Maildir\nOPTIONS=disableshared=1\n.\n"
)
ENUMERATE_REPLY = (
    b"# authuserdb\n\nt2y@example.org\t5000\t5000\t/h\t\t\n"
    b"andrew@example.com\t5000\t5000\t/home/vmail/example.com/andrew\t"
    b"/home/vmail/example.com/andrew/Maildir\tdisableshared=1\n.\n"
)


def feeds(data: bytes) -> list[list[bytes]]:
    """The same bytes whole, byte by byte, and split in two."""
    middle = len(data) // 2
    return [[data], [data[i:i + 1] for i in range(len(data))], [data[:middle], data[middle:]]]


def read_reply(reader_class: type, chunks: list[bytes], eof: bool = False) -> object:
    """Feed ``chunks`` to a new reader; the first non-None result (then EOF if
    asked).  Returns None if the reply never completed."""
    reader = reader_class()
    result = None
    for chunk in chunks:
        got = reader.receive_data(chunk)
        if got is not None:
            result = got
    if eof:
        result = reader.receive_data(b"")
    return result


# --- requests ----------------------------------------------------------------

def test_pre_request_is_the_bytes_authtest_sends() -> None:
    # strace of `authtest andrew@example.com` (authtest sets TCPREMOTEIP=::1)
    assert pre_request("login", "andrew@example.com", "::1") == (
        b"TCPREMOTEIP=::1\nPRE . login andrew@example.com\n")


def test_pre_request_without_remote_ip_has_no_metadata_line() -> None:
    assert pre_request("imap", "andrew@example.com") == b"PRE . imap andrew@example.com\n"
    assert pre_request("imap", "andrew@example.com", "") == b"PRE . imap andrew@example.com\n"


def test_login_request_is_the_bytes_authtest_sends() -> None:
    # strace of `authtest -s imap andrew@example.com andrew-imap`
    assert login_request("imap", "andrew@example.com", b"andrew-imap", "::1") == (
        b"TCPREMOTEIP=::1\nAUTH 42\nimap\nlogin\nandrew@example.com\nandrew-imap\n")


def test_auth_length_counts_every_byte_after_the_first_line() -> None:
    request = login_request("pop3", "\u00e9l\u00e8ve", "pässwörd".encode())
    head, _, body = request.partition(b"\n")
    assert head == b"AUTH %d" % len(body)


def test_cram_md5_request_is_the_spec_capture() -> None:
    challenge = binascii.a2b_base64(b"PDE4OTYuNjk3MTcwOTUyQGxhYi5leGFtcGxlPg==")
    assert cram_request("imap", "md5", challenge, "andrew@example.com",
                        "4337ecb1d1e370feb703491982038f79") == (
        b"AUTH 124\nimap\ncram-md5\nPDE4OTYuNjk3MTcwOTUyQGxhYi5leGFtcGxlPg==\n"
        b"YW5kcmV3QGV4YW1wbGUuY29tIDQzMzdlY2IxZDFlMzcwZmViNzAzNDkxOTgyMDM4Zjc5\n")


@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
def test_cram_request_names_the_algorithm_in_the_authtype(algorithm: str) -> None:
    request = cram_request("pop3", algorithm, b"<1.2@h>", "u", "ab" * 10)
    assert request.split(b"\n")[1:3] == [b"pop3", b"cram-" + algorithm.encode()]
    response = binascii.a2b_base64(request.split(b"\n")[4])
    assert response == b"u " + b"ab" * 10


def test_cram_request_with_unknown_algorithm_is_misuse() -> None:
    with pytest.raises(Misuse):
        cram_request("imap", "sha512", b"c", "u", "00")
    with pytest.raises(Misuse):
        cram_request("imap", "MD5", b"c", "u", "00")


@pytest.mark.parametrize("response", ["", "ab cd", "ab\ncd", "ab\tcd"])
def test_cram_response_that_would_shift_the_name_is_refused(response: str) -> None:
    with pytest.raises(BadPassword):
        cram_request("imap", "md5", b"c", "u", response)


def test_passwd_request_is_the_spec_capture() -> None:
    assert passwd_request("login", "andrew@example.com", b"andrew-secret", b"N3w-andrew") == (
        b"PASSWD login\tandrew@example.com\tandrew-secret\tN3w-andrew\n")


def test_passwd_request_carries_tcpremoteip_when_known() -> None:
    assert passwd_request("imap", "a", b"o", b"n", "192.0.2.1") == (
        b"TCPREMOTEIP=192.0.2.1\nPASSWD imap\ta\to\tn\n")


def test_enumerate_request() -> None:
    assert protocol.ENUMERATE_REQUEST == b"ENUMERATE\n"


@pytest.mark.parametrize("name", ["a\nPRE . login root", "a\rb", "a\x00b", "", " andrew",
                                  "x" * 8190])
def test_lookup_of_a_name_the_framing_cannot_carry_is_unknown_user(name: str) -> None:
    with pytest.raises(UnknownUser):
        pre_request("login", name)


@pytest.mark.parametrize("name,password", [
    ("a\nb", b"pw"), ("a", b"pw\nAUTH 1"), ("a", b"p\tw"), ("", b"pw"), ("a", b""),
    ("a", b"x" * 8200),
])
def test_login_the_framing_cannot_carry_is_bad_password(name: str, password: bytes) -> None:
    with pytest.raises(BadPassword):
        login_request("login", name, password)


def test_auth_body_of_8191_bytes_is_sent_and_8192_refused() -> None:
    overhead = len(b"login\nlogin\nu\n\n")
    request = login_request("login", "u", b"p" * (8191 - overhead))
    assert request.startswith(b"AUTH 8191\n")
    with pytest.raises(BadPassword):
        login_request("login", "u", b"p" * (8192 - overhead))


@pytest.mark.parametrize("service", ["", "im ap", "imap\n", "im\tap"])
def test_service_name_that_cannot_be_sent_is_misuse(service: str) -> None:
    for build in (lambda: pre_request(service, "a"),
                  lambda: login_request(service, "a", b"pw"),
                  lambda: passwd_request(service, "a", b"o", b"n")):
        with pytest.raises(Misuse):
            build()


@pytest.mark.parametrize("name,old,new", [
    ("a\tb", b"o", b"n"), ("a", b"o\tx", b"n"), ("a", b"o", b"n\n"), ("a|b", b"o", b"n"),
    ("a", b"o=", b"n"), ("a", b"o", b"it's"), ("a", b"o", b'say "x"'), ("a", b"o", b""),
    ("a", b"o", b"n" * 8200),
])
def test_password_change_authuserdb_would_refuse_is_policy_refused(
        name: str, old: bytes, new: bytes) -> None:
    with pytest.raises(PolicyRefused):
        passwd_request("login", name, old, new)


def test_password_change_with_empty_name_or_old_password_is_rejected() -> None:
    with pytest.raises(UnknownUser):
        passwd_request("login", "", b"o", b"n")
    with pytest.raises(BadPassword):
        passwd_request("login", "a", b"", b"n")


def test_passwd_allows_spaces_like_authuserdb() -> None:
    assert passwd_request("login", "a b", b"old pw", b"new pw") == (
        b"PASSWD login\ta b\told pw\tnew pw\n")


def test_remote_ip_with_a_control_byte_is_a_temporary_failure() -> None:
    with pytest.raises(TemporaryFailure):
        metadata("1.2.3.4\nPRE . login root")


def test_non_utf8_name_goes_out_as_the_same_bytes() -> None:
    name = b"caf\xe9@example.com".decode("utf-8", "surrogateescape")
    assert pre_request("login", name) == b"PRE . login caf\xe9@example.com\n"


# --- DEFDOMAIN (authmoduser3.c strdupdefdomain) ------------------------------

@pytest.mark.parametrize("name,defdomain,domainsep,expected", [
    ("andrew", "@example.com", None, "andrew@example.com"),
    ("andrew@example.org", "@example.com", None, "andrew@example.org"),
    ("andrew", "", None, "andrew"),
    ("andrew%example.org", "@example.com", "%@", "andrew%example.org"),
    ("andrew@example.org", "@example.com", "%", "andrew@example.org@example.com"),
    ("andrew", "@example.com", "", "andrew@example.com"),
    # DEFDOMAIN without '@': Courier tests for its first character, 'e'
    ("andrew", "example.com", None, "andrew"),
    ("bob", "example.com", None, "bobexample.com"),
])
def test_defdomain_is_appended_like_courier(name: str, defdomain: str,
                                            domainsep: str | None, expected: str) -> None:
    assert apply_defdomain(name, defdomain, domainsep) == expected


# --- PRE / AUTH replies -------------------------------------------------------

@pytest.mark.parametrize("chunks", feeds(PRE_ANDREW))
def test_pre_reply_gives_every_field(chunks: list[bytes]) -> None:
    fields = read_reply(AccountReplyReader, chunks)
    account = account_from_reply(fields, "andrew@example.com")
    assert account == Account(
        address="andrew@example.com", uid=5000, gid=5000,
        home="/home/vmail/example.com/andrew",
        maildir="/home/vmail/example.com/andrew/Maildir", quota="10000000S",
        fullname="Andrew Example", options="disableshared=1")
    assert account.encrypted_password == ANDREW_HASH
    assert account.passwords == {}
    assert account.shell == ""


@pytest.mark.parametrize("chunks", feeds(PRE_HMACONLY))
def test_pre_reply_without_optional_fields(chunks: list[bytes]) -> None:
    account = account_from_reply(read_reply(AccountReplyReader, chunks), "hmaconly@example.org")
    assert (account.uid, account.gid, account.home) == (
        5000, 5000, "/home/vmail/example.org/hmaconly")
    assert (account.maildir, account.quota, account.fullname, account.options,
            account.encrypted_password) == ("", "", "", "", "")


@pytest.mark.parametrize("chunks", feeds(AUTH_LOGIN_ANDREW))
def test_login_reply_drops_the_clear_password(chunks: list[bytes]) -> None:
    fields = read_reply(AccountReplyReader, chunks)
    assert "PASSWD2" not in fields
    assert "andrew-imap" not in repr(fields)
    assert account_from_reply(fields, "x").encrypted_password == "iDIGoFe1Xzt7Q"


@pytest.mark.parametrize("chunks", feeds(AUTH_CRAM_ANDREW))
def test_cram_reply_has_no_name_quota_or_passwd(chunks: list[bytes]) -> None:
    account = account_from_reply(read_reply(AccountReplyReader, chunks), "x")
    assert account.address == "andrew@example.com"
    assert account.maildir == "/home/vmail/example.com/andrew/Maildir"
    assert (account.fullname, account.quota, account.encrypted_password) == ("", "", "")


@pytest.mark.parametrize("chunks", feeds(b"FAIL\n"))
def test_fail_reply_is_fail(chunks: list[bytes]) -> None:
    assert read_reply(AccountReplyReader, chunks) is FAIL
    assert read_reply(AccountReplyReader, chunks, eof=True) is FAIL


def test_reply_is_complete_before_eof() -> None:
    reader = AccountReplyReader()
    assert reader.receive_data(PRE_ANDREW[:-2]) is None
    assert reader.receive_data(b".\n") is not None


@pytest.mark.parametrize("data", [
    b"",                       # closed without a byte: temporary failure
    b"UID=5000\nGID=50",       # cut mid-line
    b"UID=5000\nGID=5000\n",   # cut after a line, no terminator
    b"FAI",                    # cut inside FAIL
    b"FAIL",                   # FAIL without its newline
    PRE_ANDREW[:-1],           # ".": terminator without newline
])
def test_reply_cut_short_is_a_temporary_failure_not_a_rejection(data: bytes) -> None:
    for chunks in feeds(data) if data else [[]]:
        reader = AccountReplyReader()
        for chunk in chunks:
            assert reader.receive_data(chunk) is None
        with pytest.raises(ProtocolError) as info:
            reader.receive_data(b"")
        assert not isinstance(info.value, Rejected)
        assert info.value.exit_code == 111


def test_reply_of_exactly_8191_bytes_is_accepted() -> None:
    head = b"UID=1\nGID=1\nHOME=/h\nOPTIONS="
    data = head + b"o" * (8191 - len(head) - 3) + b"\n.\n"
    assert len(data) == 8191
    assert read_reply(AccountReplyReader, [data])["OPTIONS"] == "o" * (8191 - len(head) - 3)


@pytest.mark.parametrize("size", [8192, 20000])
def test_reply_larger_than_courier_buffer_is_a_temporary_failure(size: int) -> None:
    head = b"UID=1\nGID=1\nHOME=/h\nOPTIONS="
    data = head + b"o" * (size - len(head) - 3) + b"\n.\n"
    for chunks in ([data], [data[:4000], data[4000:]]):
        reader = AccountReplyReader()
        with pytest.raises(ProtocolError, match="longer than 8191"):
            for chunk in chunks:
                reader.receive_data(chunk)


@pytest.mark.parametrize("data", [
    PRE_HMACONLY + b"X",      # bytes after the terminator
    b"FAIL\nUID=1\n",         # bytes after FAIL
    b"UID=1\nFAIL\n",         # FAIL inside a success reply
    b"UID=1\ngarbage\n.\n",   # a line that is not KEY=value
    b"=1\n.\n",               # empty key
    b"\n",                    # empty line
    b"fail\n",                # FAIL is case-sensitive
])
def test_malformed_reply_is_a_temporary_failure(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        read_reply(AccountReplyReader, [data], eof=True)


def test_data_after_a_complete_reply_is_a_temporary_failure() -> None:
    reader = AccountReplyReader()
    assert reader.receive_data(b"FAIL\n") is FAIL
    with pytest.raises(ProtocolError):
        reader.receive_data(b"more")


def test_protocol_error_does_not_quote_the_reply() -> None:
    with pytest.raises(ProtocolError) as info:
        read_reply(AccountReplyReader, [b"PASSWD=$1$secret$hash\nPASSWD2=clear-pw\nbad\n"])
    assert "secret" not in str(info.value) and "clear-pw" not in str(info.value)


# --- the account a reply describes -----------------------------------------

@pytest.mark.parametrize("missing", ["UID", "GID", "HOME"])
def test_success_reply_without_uid_gid_or_home_is_a_temporary_failure(missing: str) -> None:
    fields = read_reply(AccountReplyReader, [PRE_HMACONLY])
    del fields[missing]
    with pytest.raises(ProtocolError, match=missing):
        account_from_reply(fields, "hmaconly@example.org")


@pytest.mark.parametrize("uid", ["", "-1", "5000x", " 5000", "\u0665"])
def test_uid_that_is_not_a_number_is_a_temporary_failure(uid: str) -> None:
    with pytest.raises(ProtocolError):
        account_from_reply({"UID": uid, "GID": "1", "HOME": "/h"}, "a")


def test_empty_home_is_a_temporary_failure() -> None:
    with pytest.raises(ProtocolError):
        account_from_reply({"UID": "1", "GID": "1", "HOME": ""}, "a")


def test_address_defaults_to_the_name_sent() -> None:
    assert account_from_reply({"UID": "1", "GID": "2", "HOME": "/h"}, "who").address == "who"


def test_username_takes_the_uid_of_the_system_account() -> None:
    def getpwnam(name: str) -> tuple[int, int] | None:
        return {"vmail": (120, 130)}.get(name)

    fields = {"USERNAME": "vmail", "UID": "5000", "GID": "7", "HOME": "/h", "ADDRESS": "a"}
    assert (account_from_reply(fields, "a", getpwnam).uid,
            account_from_reply(fields, "a", getpwnam).gid) == (120, 7)
    del fields["GID"], fields["UID"]
    assert account_from_reply(fields, "a", getpwnam).gid == 130
    fields["USERNAME"] = "nosuch"
    with pytest.raises(TemporaryFailure, match="nosuch"):
        account_from_reply(fields, "a", getpwnam)


# --- PASSWD replies ----------------------------------------------------------

@pytest.mark.parametrize("data,expected", [(b"OK\n", True), (b"FAIL\n", FAIL)])
def test_passwd_reply(data: bytes, expected: object) -> None:
    for chunks in feeds(data):
        assert read_reply(PasswdReplyReader, chunks) is expected


@pytest.mark.parametrize("data", [b"", b"O", b"OK", b"FAIL", b"MAYBE\n", b"OK\nX", b"ok\n"])
def test_passwd_reply_not_ok_or_fail_is_a_temporary_failure(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        read_reply(PasswdReplyReader, [data] if data else [], eof=True)


def test_passwd_reply_longer_than_the_limit_is_a_temporary_failure() -> None:
    reader = PasswdReplyReader()
    with pytest.raises(ProtocolError):
        reader.receive_data(b"O" * 9000)


# --- ENUMERATE ---------------------------------------------------------------

def enumerate_all(chunks: list[bytes], eof: bool = True) -> tuple[list[Account], EnumerateReader]:
    reader = EnumerateReader()
    accounts: list[Account] = []
    for chunk in chunks:
        accounts += reader.receive_data(chunk)
    if eof:
        accounts += reader.receive_data(b"")
    return accounts, reader


@pytest.mark.parametrize("chunks", feeds(ENUMERATE_REPLY))
def test_enumerate_reply_is_the_spec_capture(chunks: list[bytes]) -> None:
    accounts, reader = enumerate_all(chunks)
    assert reader.finished and reader.module == "authuserdb"
    assert accounts == [
        Account(address="t2y@example.org", uid=5000, gid=5000, home="/h"),
        Account(address="andrew@example.com", uid=5000, gid=5000,
                home="/home/vmail/example.com/andrew",
                maildir="/home/vmail/example.com/andrew/Maildir", options="disableshared=1"),
    ]


def test_enumerate_yields_each_account_as_its_line_completes() -> None:
    reader = EnumerateReader()
    assert reader.receive_data(b"# authuserdb\n\na\t1\t1\t/a\n") == [
        Account(address="a", uid=1, gid=1, home="/a")]
    assert reader.receive_data(b"b\t2\t2\t/") == []
    assert [a.address for a in reader.receive_data(b"b\n.\n")] == ["b"]
    assert reader.finished


def test_enumerate_skips_lines_courier_skips_and_keeps_hash_inside_a_line() -> None:
    data = (b"# authuserdb\n\nroot\t0\t5\t/r\nwheel\t5\t0\t/w\nshort\t5\t5\n"
            b"nonnum\tx\t5\t/n\nhash#name\t5\t5\t/h#1\t\topt\textra\n# authpam\n\n.\n")
    accounts, reader = enumerate_all([data])
    assert accounts == [Account(address="hash#name", uid=5, gid=5, home="/h#1", options="opt")]
    assert reader.module == "authpam"


@pytest.mark.parametrize("data", [ENUMERATE_REPLY[:-2], ENUMERATE_REPLY[:-1], b""])
def test_enumeration_without_final_dot_is_aborted(data: bytes) -> None:
    reader = EnumerateReader()
    got = reader.receive_data(data) if data else []
    with pytest.raises(ProtocolError, match="aborted"):
        reader.receive_data(b"")
    if data:
        assert len(got) == 2   # what came before the break was already handed out


def test_enumeration_with_data_after_the_dot_is_a_temporary_failure() -> None:
    with pytest.raises(ProtocolError):
        enumerate_all([ENUMERATE_REPLY + b"x\t1\t1\t/x\n"])


def test_enumeration_line_longer_than_courier_linebuf_is_a_temporary_failure() -> None:
    reader = EnumerateReader()
    with pytest.raises(ProtocolError, match="longer"):
        reader.receive_data(b"a\t1\t1\t/" + b"h" * 9000)
    reader = EnumerateReader()
    with pytest.raises(ProtocolError, match="longer"):
        reader.receive_data(b"a\t1\t1\t/" + b"h" * 9000 + b"\n.\n")


# --- properties ------------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

READERS = [AccountReplyReader, PasswdReplyReader, EnumerateReader]


@settings(max_examples=300, deadline=None)
@given(reader_index=st.sampled_from(range(3)),
       chunks=st.lists(st.binary(max_size=40) | st.sampled_from(
           [b"\n", b".\n", b"FAIL\n", b"OK\n", b"UID=1\n", b"a\t1\t1\t/h\n", b"# m\n"]),
           max_size=12))
def test_readers_raise_nothing_but_protocol_error(reader_index: int, chunks: list[bytes]) -> None:
    reader = READERS[reader_index]()
    try:
        for chunk in chunks + [b""]:
            reader.receive_data(chunk)
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(name=st.text(max_size=30), password=st.binary(max_size=30))
def test_no_name_or_password_adds_a_request_line(name: str, password: bytes) -> None:
    try:
        request = pre_request("login", name)
    except Rejected:
        pass
    else:
        assert request.count(b"\n") == 1 and request.endswith(b"\n")
    try:
        request = login_request("login", name, password)
    except Rejected:
        pass
    else:
        head, _, body = request.partition(b"\n")
        assert int(head[5:]) == len(body) and body.count(b"\n") == 4
    try:
        request = passwd_request("login", name, password or b"x", b"new")
    except Rejected:
        pass
    else:
        assert request.count(b"\n") == 1 and request.count(b"\t") == 3
