"""authkit.authdaemon.server: the daemon side of spec courier-authlib.md section 4.

Requests are the ones the client builders of ``protocol`` make (and the raw
shapes Courier's ``authdaemond.c`` accepts or refuses); each is fed whole, byte
by byte and split at every point, and must give the same request.  Replies are
checked against the bytes recorded from Courier's daemon (the fixtures of
test_authdaemon_protocol) and read back with the client's readers.
"""

from __future__ import annotations

import binascii

import pytest

from authkit.account import Account
from authkit.authdaemon import protocol, server
from authkit.authdaemon.server import (
    FAIL_REPLY,
    CramRequest,
    EnumerateRequest,
    LoginRequest,
    PasswdRequest,
    PreRequest,
    Refusal,
    RequestParser,
    account_reply,
    c_atoi,
    cram_reply,
    enumerate_header,
    enumerate_line,
    parse_request,
    sasl_frombase64,
)

from test_authdaemon_protocol import AUTH_CRAM_ANDREW, AUTH_LOGIN_ANDREW, PRE_ANDREW, PRE_HMACONLY


def feeds(data: bytes):
    """The ways to deliver ``data``: whole, byte by byte, split at each point."""
    yield [data]
    yield [data[i:i + 1] for i in range(len(data))]
    for cut in range(1, len(data)):
        yield [data[:cut], data[cut:]]


def parse_all_ways(data: bytes, eof: bool = True) -> server.Request:
    """The request parsed from every delivery of ``data``; all must agree."""
    results = set()
    for chunks in feeds(data):
        parser = RequestParser()
        result = None
        for chunk in chunks:
            result = parser.receive_data(chunk)
            if result is not None:
                break
        if result is None and eof:
            result = parser.receive_data(b"")
        results.add(result)
    assert len(results) == 1, results
    return results.pop()


ANDREW = Account(
    address="andrew@example.com", uid=5000, gid=5000, home="/home/vmail/example.com/andrew",
    maildir="/home/vmail/example.com/andrew/Maildir", quota="10000000S",
    fullname="Andrew Example", options="disableshared=1",
    encrypted_password="$1$XvgBrLvh$k/Fs0X9fbiRCpmvIvfRos1")


# --- requests -----------------------------------------------------------------

def test_pre_from_the_client_builder():
    request = parse_all_ways(protocol.pre_request("imap", "andrew@example.com", "192.0.2.7"))
    assert request == PreRequest("192.0.2.7", ".", "imap", "andrew@example.com")


def test_pre_raw_shapes():
    assert parse_request(b"PRE   authuserdb   login   bob smith\n") == PreRequest(
        "", "authuserdb", "login", "bob smith")
    # the name is the rest of the line: a trailing \r is part of it
    assert parse_request(b"PRE . login md5@example.org\r\n").name == "md5@example.org\r"
    assert parse_request(b"PRE . login \n") == PreRequest("", ".", "login", "")
    assert parse_request(b"PRE . login\n").reply == b""
    assert parse_request(b"PRE .\n").reply == b""


def test_login_from_the_client_builder():
    data = protocol.login_request("imap", "andrew@example.com", b"andrew-imap", "::1")
    assert data == b"TCPREMOTEIP=::1\nAUTH 42\nimap\nlogin\nandrew@example.com\nandrew-imap\n"
    request = parse_all_ways(data)
    assert request == LoginRequest("::1", "imap", "andrew@example.com", b"andrew-imap")
    assert "andrew-imap" not in repr(request)


def test_login_needs_two_non_empty_lines():
    # strtok skips empty lines, as Courier's auth_userdb does
    body = b"login\nlogin\n\nbob\n\nsecret\n"
    assert parse_request(b"AUTH %d\n" % len(body) + body) == LoginRequest(
        "", "login", "bob", b"secret")
    empty = parse_request(b"AUTH 29\nlogin\nlogin\nmd5@example.org\n\n")
    assert isinstance(empty, Refusal) and empty.reply == FAIL_REPLY


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "sha256"])
def test_cram_from_the_client_builder(algorithm):
    data = protocol.cram_request("imap", algorithm, b"<1896.697170952@lab.example>",
                                 "andrew@example.com", "4337ecb1d1e370feb703491982038f79")
    request = parse_all_ways(data)
    assert request == CramRequest("", "imap", algorithm, b"<1896.697170952@lab.example>",
                                  "andrew@example.com", "4337ecb1d1e370feb703491982038f79")


def test_cram_user_is_before_the_last_space():
    response = binascii.b2a_base64(b"bob smith abc123", newline=False)
    body = b"imap\ncram-md5\nQUJD\n" + response + b"\n"
    request = parse_request(b"AUTH %d\n" % len(body) + body)
    assert (request.name, request.response_hex, request.challenge) == ("bob smith", "abc123", b"ABC")


@pytest.mark.parametrize("body, why", [
    (b"imap\nCRAM-MD5\nQUJD\nYiBj\n", "authtype is case-sensitive"),
    (b"imap\nplain\nQUJD\nYiBj\n", "no such authtype"),
    (b"imap\ncram-sha512\nQUJD\nYiBj\n", "unknown algorithm"),
    (b"imap\ncram-md5\nQUJD\n", "no response"),
    (b"imap\ncram-md5\nQUJD\nYWJj\n", "response without a space"),
    (b"imap\ncram-md5\nQU*D\nYiBj\n", "bad base64"),
])
def test_auth_answered_fail(body, why):
    request = parse_all_ways(b"AUTH %d\n" % len(body) + body)
    assert isinstance(request, Refusal) and request.reply == FAIL_REPLY, why


@pytest.mark.parametrize("data, why", [
    (b"AUTH 8192\n", "length >= BUFSIZ"),
    (b"AUTH -1\n", "negative length"),
    (b"AUTH 4\nimap", "body without a newline"),
    (b"AUTH 10\nimap\nlogin", "body without the authtype newline"),
    (b"AUTH 30\nimap\nlogin\nbob\nsecret\n", "cut short"),
    (b"pre . login bob\n", "commands are case-sensitive"),
    (b"HELLO\n", "unknown command"),
    (b"CHECKPASSWORD x\n", "no such command in authdaemond"),
    (b"PASSWD login\tbob\told\n", "three fields"),
    (b"PRE . login bob", "no newline before EOF"),
    (b"", "nothing at all"),
])
def test_silent_close(data, why):
    request = parse_all_ways(data)
    assert isinstance(request, Refusal) and request.reply == b"", why


def test_line_limit_is_8190_bytes():
    name = b"x" * (protocol.MAX_LINE - len(b"PRE . login "))
    assert parse_request(b"PRE . login " + name + b"\n").name == name.decode()
    too_long = parse_all_ways(b"PRE . login " + name + b"y\n")
    assert isinstance(too_long, Refusal) and too_long.reply == b""
    # decided as soon as the 8191st byte arrives, without waiting for more
    parser = RequestParser()
    assert parser.receive_data(b"x" * protocol.MAX_LINE) is None
    assert parser.receive_data(b"x").reply == b""


def test_auth_length_limit():
    body = b"login\nlogin\nbob\n" + b"p" * (8191 - 16)
    assert len(body) == 8191
    request = parse_request(b"AUTH 8191\n" + body)
    assert isinstance(request, LoginRequest) and len(request.password) == 8191 - 16


def test_passwd():
    data = protocol.passwd_request("login", "andrew@example.com", b"andrew-secret", b"N3w-andrew")
    assert parse_all_ways(data) == PasswdRequest("", "login", "andrew@example.com",
                                                 b"andrew-secret", b"N3w-andrew")
    # extra fields are ignored; a control byte other than tab is FAIL
    assert parse_request(b"PASSWD s\tu\to\tn\textra\n").new == b"n"
    refused = parse_request(b"PASSWD s\tu\to\tn\r\n")
    assert refused.reply == FAIL_REPLY


def test_enumerate_and_headers():
    assert parse_all_ways(b"ENUMERATE\n") == EnumerateRequest("")
    assert parse_request(b"FOO=bar\nTCPREMOTEIP=10.0.0.1\nENUMERATE\n") == EnumerateRequest("10.0.0.1")
    long_ip = b"1" * 60
    assert parse_request(b"TCPREMOTEIP=" + long_ip + b"\nENUMERATE\n").remote_ip == "1" * 39


def test_nul_ends_a_line():
    assert parse_request(b"PRE . login bob\0junk\n").name == "bob"
    assert parse_request(b"PRE\0 . login bob\n").reply == b""


def test_too_many_headers():
    data = b"X=1\n" * (server.MAX_HEADERS + 1) + b"ENUMERATE\n"
    assert parse_request(data).reply == b""
    assert parse_request(b"X=1\n" * server.MAX_HEADERS + b"ENUMERATE\n") == EnumerateRequest("")


def test_result_is_final_and_trailing_bytes_ignored():
    parser = RequestParser()
    first = parser.receive_data(b"ENUMERATE\nPRE . login bob\n")
    assert first == EnumerateRequest("")
    assert parser.receive_data(b"more") is first
    assert parser.receive_data(b"") is first


def test_c_atoi_and_base64():
    assert [c_atoi(x) for x in (b"42", b"  7x", b"-3", b"+5", b"", b"abc")] == [42, 7, -3, 5, 0, 0]
    assert sasl_frombase64(b"QUJD") == b"ABC"
    assert sasl_frombase64(b"QQ==") == b"A"
    assert sasl_frombase64(b"QUJD*") == b"ABC"          # up to two junk bytes ignored
    assert sasl_frombase64(b"QUJD*yz") is None
    assert sasl_frombase64(b"QUJ") is None
    assert sasl_frombase64(b"") == b""


# --- replies --------------------------------------------------------------------

def test_pre_reply_is_courier_bytes():
    assert account_reply(ANDREW) == PRE_ANDREW
    hmaconly = Account(address="hmaconly@example.org", uid=5000, gid=5000,
                       home="/home/vmail/example.org/hmaconly")
    assert account_reply(hmaconly) == PRE_HMACONLY


def test_login_reply_is_courier_bytes():
    account = ANDREW.replace(encrypted_password="iDIGoFe1Xzt7Q")
    assert account_reply(account, clear_password=b"andrew-imap") == AUTH_LOGIN_ANDREW


def test_cram_reply_is_courier_bytes():
    assert cram_reply(ANDREW) == AUTH_CRAM_ANDREW


def test_name_cut_at_comma_and_options_merged():
    account = ANDREW.replace(fullname="Andrew Example,Room 1", options="disableimap=1")
    reply = account_reply(account, default_options="disableshared=1,disableimap=0")
    assert b"NAME=Andrew Example\n" in reply
    assert b"OPTIONS=disableimap=1,disableshared=1\n" in reply
    bare = ANDREW.replace(options="")
    assert b"OPTIONS=wbnodsn=1\n" in account_reply(bare, default_options="wbnodsn=1")
    assert b"OPTIONS" not in account_reply(bare)


@pytest.mark.parametrize("reply", [PRE_ANDREW, AUTH_LOGIN_ANDREW, AUTH_CRAM_ANDREW])
def test_round_trip_through_the_client_reader(reply):
    fields = protocol.AccountReplyReader().receive_data(reply)
    account = protocol.account_from_reply(fields, "andrew@example.com")
    clear = b"andrew-imap" if b"PASSWD2" in reply else None
    if reply is AUTH_CRAM_ANDREW:
        assert cram_reply(account) == reply
    else:
        assert account_reply(account, clear_password=clear) == reply


def test_newline_in_a_value_is_refused():
    with pytest.raises(ValueError):
        account_reply(ANDREW.replace(fullname="x\nUID=0"))
    with pytest.raises(ValueError):
        enumerate_line(ANDREW.replace(home="/h\n"))


def test_enumerate_format_round_trip():
    other = Account(address="t2y@example.org", uid=5000, gid=5000, home="/h")
    listing = (enumerate_header("authuserdb") + enumerate_line(other)
               + enumerate_line(ANDREW, default_options="wbnodsn=1") + server.END_LINE)
    assert listing == (
        b"# authuserdb\n\nt2y@example.org\t5000\t5000\t/h\t\t\n"
        b"andrew@example.com\t5000\t5000\t/home/vmail/example.com/andrew\t"
        b"/home/vmail/example.com/andrew/Maildir\tdisableshared=1,wbnodsn=1\n.\n")
    for chunks in feeds(listing):
        reader = protocol.EnumerateReader()
        got = [account for chunk in chunks for account in reader.receive_data(chunk)]
        assert reader.finished and reader.module == "authuserdb"
        assert [a.address for a in got] == ["t2y@example.org", "andrew@example.com"]
        assert got[1].options == "disableshared=1,wbnodsn=1"
