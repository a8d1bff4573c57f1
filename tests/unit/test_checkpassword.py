"""authkit.checkpassword: the fd-3 framing, byte by byte (docs/courierpasswd.8, INPUT).

The shapes are the bytes real callers sent (spec real-clients.md section 0) and
djb's checkpassword.c edge cases (spec original-tools.md section 7).  Every input
is fed to InputCollector whole, byte by byte and in two halves before parsing.
"""

from __future__ import annotations

import hmac

import pytest

from authkit.checkpassword import (
    CRAM_HEX_LENGTHS,
    MAX_INPUT,
    CramLogin,
    InputCollector,
    Lookup,
    PasswordChange,
    PlainLogin,
    is_challenge,
    is_response,
    parse_request,
    split_credentials,
)
from authkit.errors import Misuse, Rejected


def chunkings(data: bytes) -> list[list[bytes]]:
    """The ways each input is fed: whole, one byte at a time, two halves."""
    half = len(data) // 2
    return [[data], [data[i : i + 1] for i in range(len(data))], [data[:half], data[half:]]]


def collect(chunks: list[bytes]) -> bytes:
    collector = InputCollector()
    for chunk in chunks:
        if chunk:
            assert collector.receive_data(chunk) is False
    assert collector.receive_data(b"") is True
    return collector.data


def parse_all_ways(data: bytes, **kwargs: object) -> object:
    """Parse ``data`` fed every way; all ways must agree; return the request."""
    results = {repr(parse_request(collect(chunks), **kwargs)) for chunks in chunkings(data)}
    request = parse_request(collect([data]), **kwargs)
    assert len(results) == 1
    return request


def cram(alg: str, challenge: bytes, password: bytes = b"secret") -> str:
    return hmac.new(password, challenge, alg).hexdigest()


CHALLENGE = b"<27914.1795651359@lab.example>"

# ------------------------------------------------------------------- plain logins

PLAIN_SHAPES = [
    # (bytes as the caller sent them, expected timestamp field)
    (b"alice\x00s3cret\x00", b""),  # TMDA, qmail-smtpd SMTPAUTH=""
    (b"alice\x00s3cret\x00\x00", b""),  # Dovecot, qmail-smtpd +cram LOGIN/PLAIN
    (b"alice\x00s3cret\x00Y123456\x00", b"Y123456"),  # qpsmtpd's fake timestamp
    (b"alice\x00s3cret\x00<1.2@host>\x00", b"<1.2@host>"),  # qmail-popup APOP timestamp
    (b"alice\x00s3cret\x00ts\x00more data\x00", b"ts"),  # djb: "possibly more data"
    (b"alice\x00s3cret\x00unterminated", b"unterminated"),  # djb ignores what follows
]


@pytest.mark.parametrize("data,timestamp", PLAIN_SHAPES)
def test_plain_login_shapes_of_every_caller_parse(data: bytes, timestamp: bytes) -> None:
    request = parse_all_ways(data)
    assert request == PlainLogin(b"alice", b"s3cret", timestamp)
    assert request.kind == "login"


def test_password_bytes_are_kept_raw() -> None:
    request = parse_all_ways(b"user@example.com\x00p\xc3\xa4 ss \x00\x00")
    assert request.user == b"user@example.com"
    assert request.password == b"p\xc3\xa4 ss "


def test_empty_password_is_a_plain_login_with_empty_password() -> None:
    assert parse_all_ways(b"alice\x00\x00\x00") == PlainLogin(b"alice", b"", b"")


def test_empty_login_name_parses_and_is_left_to_the_source() -> None:
    assert parse_all_ways(b"\x00pw\x00") == PlainLogin(b"", b"pw", b"")


def test_repr_never_shows_the_password() -> None:
    text = repr(PlainLogin(b"alice", b"hunter2", b"ts")) + repr(PasswordChange(b"a", b"hunter2", b"n3wpass99"))
    assert "hunter2" not in text and "n3wpass99" not in text
    assert "alice" in text


# ------------------------------------------------------------------------ misuse


@pytest.mark.parametrize(
    "data,message",
    [
        (b"", "no data"),
        (b"alice", "no NUL after the login name"),
        (b"alice\x00", "no NUL after the password"),
        (b"alice\x00s3cret", "no NUL after the password"),
        (b"\x00", "no NUL after the password"),
    ],
)
def test_missing_nul_or_no_data_is_misuse(data: bytes, message: str) -> None:
    for chunks in chunkings(data):
        with pytest.raises(Misuse, match=message) as info:
            parse_request(collect(chunks))
        assert info.value.exit_code == 2


def test_missing_nul_after_password_is_misuse_even_with_cram_or_change() -> None:
    with pytest.raises(Misuse):
        parse_request(b"alice\x00abc", cram="md5")
    with pytest.raises(Misuse):
        parse_request(b"alice\x00old", change=True)


def test_unknown_cram_type_is_misuse() -> None:
    with pytest.raises(Misuse, match="CRAM"):
        parse_request(b"alice\x00pw\x00", cram="md4")


# ---------------------------------------------------------------- size limit (djb)


def test_exactly_512_bytes_are_accepted() -> None:
    data = b"u\x00" + b"p" * (MAX_INPUT - 3) + b"\x00"
    assert len(data) == 512
    assert parse_all_ways(data).password == b"p" * 509


@pytest.mark.parametrize("size", [513, 514, 4096])
def test_513_bytes_or_more_are_rejected_with_exit_1_like_djb(size: int) -> None:
    data = b"u\x00" + b"p" * (size - 3) + b"\x00"
    for chunks in chunkings(data):
        collector = InputCollector()
        with pytest.raises(Rejected) as info:
            for chunk in chunks + [b""]:
                collector.receive_data(chunk)
        assert info.value.exit_code == 1
        assert not isinstance(info.value, Misuse)
    with pytest.raises(Rejected):
        parse_request(data)


def test_collector_refuses_the_513th_byte_before_end_of_file() -> None:
    collector = InputCollector()
    collector.receive_data(b"x" * 512)
    with pytest.raises(Rejected):
        collector.receive_data(b"y")


def test_collector_refuses_data_after_end_of_file() -> None:
    collector = InputCollector()
    collector.receive_data(b"")
    with pytest.raises(RuntimeError):
        collector.receive_data(b"more")


# ------------------------------------------------------------------------- CRAM


@pytest.mark.parametrize("alg", sorted(CRAM_HEX_LENGTHS))
def test_cram_response_then_challenge_hoffmann_order(alg: str) -> None:
    response = cram(alg, CHALLENGE)
    request = parse_all_ways(b"alice\x00" + response.encode() + b"\x00" + CHALLENGE + b"\x00", cram=alg)
    assert request == CramLogin(b"alice", CHALLENGE, response, alg, False)
    assert request.kind == "cram"


@pytest.mark.parametrize("alg", sorted(CRAM_HEX_LENGTHS))
def test_cram_challenge_then_response_dabrowski_order(alg: str) -> None:
    response = cram(alg, CHALLENGE)
    request = parse_all_ways(b"alice\x00" + CHALLENGE + b"\x00" + response.encode() + b"\x00", cram=alg)
    assert request == CramLogin(b"alice", CHALLENGE, response, alg, True)


def test_cram_captured_from_qmail_smtpd_parses() -> None:
    data = b"alice\x001660ef558b0aca4994e8083c945f0600\x00<27914.1795651359@lab.example>\x00"
    request = parse_all_ways(data, cram="md5")
    assert request == CramLogin(b"alice", CHALLENGE, "1660ef558b0aca4994e8083c945f0600", "md5")


def test_cram_upper_case_hex_response_is_kept_as_sent() -> None:
    response = cram("sha1", CHALLENGE).upper()
    request = parse_all_ways(b"bob\x00" + response.encode() + b"\x00" + CHALLENGE + b"\x00", cram="sha1")
    assert request.response == response


def test_cramtype_with_plain_login_input_is_a_plain_login() -> None:
    # qmail-smtpd offering CRAM-MD5 and LOGIN runs the same program for both
    assert parse_all_ways(b"alice\x00s3cret\x00\x00", cram="md5") == PlainLogin(b"alice", b"s3cret", b"")
    assert parse_all_ways(b"alice\x00s3cret\x00", cram="md5") == PlainLogin(b"alice", b"s3cret", b"")


def test_cram_response_of_another_algorithms_length_is_not_cram() -> None:
    response = cram("sha1", CHALLENGE).encode()
    request = parse_all_ways(b"alice\x00" + response + b"\x00" + CHALLENGE + b"\x00", cram="md5")
    assert request == PlainLogin(b"alice", response, CHALLENGE)


def test_password_shaped_like_a_challenge_with_empty_third_field_is_plain() -> None:
    request = parse_all_ways(b"alice\x00<secret>\x00\x00", cram="md5")
    assert request == PlainLogin(b"alice", b"<secret>", b"")


def test_cram_needs_the_third_field_terminated() -> None:
    response = cram("md5", CHALLENGE).encode()
    request = parse_request(b"alice\x00" + response + b"\x00" + CHALLENGE, cram="md5")
    assert request.kind == "login"


def test_without_cramtype_a_cram_shaped_input_is_a_plain_login() -> None:
    response = cram("md5", CHALLENGE).encode()
    request = parse_all_ways(b"alice\x00" + response + b"\x00" + CHALLENGE + b"\x00")
    assert request == PlainLogin(b"alice", response, CHALLENGE)


def test_challenge_and_response_shapes() -> None:
    assert is_challenge(b"<1.2@x>") and is_challenge(b"<a>")
    assert not is_challenge(b"<>") and not is_challenge(b"<abc") and not is_challenge(b"")
    assert is_response(b"0" * 32, "md5") and is_response(b"A" * 40, "sha1") and is_response(b"f" * 64, "sha256")
    assert not is_response(b"0" * 31, "md5") and not is_response(b"g" * 32, "md5")


# --------------------------------------------------------------- password change


def test_change_request_has_user_old_and_new() -> None:
    request = parse_all_ways(b"alice\x00old pass\x00new pass\x00", change=True)
    assert request == PasswordChange(b"alice", b"old pass", b"new pass")
    assert request.kind == "change"


def test_change_without_nul_after_new_password_is_misuse() -> None:
    with pytest.raises(Misuse, match="new password"):
        parse_request(b"alice\x00old\x00new", change=True)
    with pytest.raises(Misuse, match="new password"):
        parse_request(b"alice\x00old\x00", change=True)


def test_change_with_empty_new_password_parses_and_policy_refuses_later() -> None:
    assert parse_all_ways(b"alice\x00old\x00\x00", change=True) == PasswordChange(b"alice", b"old", b"")


def test_change_ignores_cramtype_and_authorized() -> None:
    response = cram("md5", CHALLENGE).encode()
    data = b"alice\x00" + response + b"\x00" + CHALLENGE + b"\x00"
    assert parse_request(data, change=True, cram="md5").kind == "change"
    assert parse_request(b"alice\x00\x00newpass1\x00", change=True, authorized=True).kind == "change"


# ---------------------------------------------------------------- Dovecot lookups


def test_authorized_with_empty_password_is_a_lookup() -> None:
    assert parse_all_ways(b"alice\x00\x00\x00", authorized=True) == Lookup(b"alice")


def test_authorized_lookup_needs_exactly_dovecots_three_nuls() -> None:
    """A stray AUTHORIZED=1 under another caller must not make an empty
    password a lookup: only Dovecot's ``user\\0\\0\\0`` is one."""
    assert parse_all_ways(b"alice\x00\x00", authorized=True) == PlainLogin(b"alice", b"", b"")
    assert parse_all_ways(b"alice\x00\x00Y123456\x00", authorized=True) == PlainLogin(b"alice", b"", b"Y123456")


def test_authorized_with_a_password_is_a_plain_login() -> None:
    assert parse_all_ways(b"alice\x00pw\x00\x00", authorized=True) == PlainLogin(b"alice", b"pw", b"")


def test_empty_password_without_authorized_is_not_a_lookup() -> None:
    assert parse_request(b"alice\x00\x00\x00").kind == "login"


def test_split_credentials_reports_whether_the_third_field_ended() -> None:
    assert split_credentials(b"u\x00p\x00t\x00") == (b"u", b"p", b"t", True)
    assert split_credentials(b"u\x00p\x00t") == (b"u", b"p", b"t", False)
    assert split_credentials(b"u\x00p\x00") == (b"u", b"p", b"", False)
