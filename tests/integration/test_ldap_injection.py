"""Login names that are LDAP filter syntax match only themselves (RFC 4515
escaping in authkit.ldap.filters), on a real slapd; Courier's authldap (which
escapes ``*()\\``) agrees wherever it can be asked."""

from __future__ import annotations

import pytest

from authkit.authdaemon.source import AuthdaemonSource
from authkit.config import Settings, parse_config
from authkit.errors import BadPassword, Rejected, UnknownUser
from authkit.ldap.source import LdapSource

import ldapdirectory as d

pytestmark = pytest.mark.integration

#: logins that must match no entry, though each would match some (or all) if
#: its bytes reached the filter unescaped
NOT_ACCOUNTS = [
    "*", "*@example.com", "s*", "star*", "star**@example.com", "*)(mail=*",
    "ssha@example.com)(objectClass=*", "paren(x", "paren(x)@example.co*", ")",
    "back\\5cslash@example.com", "back\\2a", "\\2a", "(mail=*)",
]


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory):
    yield from d.populated_slapd(tmp_path_factory)


def _source(values: "dict[str, str]") -> LdapSource:
    return LdapSource.from_settings(Settings(**parse_config(d.authkit_conf(values))))


def test_metacharacters_match_only_themselves(slapd, courier_lab) -> None:
    values = d.settings([slapd.uri])
    ours = _source(values)
    d.start_courier_authldap(courier_lab, values)
    courier = AuthdaemonSource(courier_lab.socket_path, remote_ip="")
    for name in ("star*@example.com", "paren(x)@example.com", "back\\slash@example.com"):
        assert ours.authenticate(name, d.PASSWORDS[name].encode()).address == name
        with pytest.raises(BadPassword):
            ours.authenticate(name, b"Ssha-Pass-1")
    for name in NOT_ACCOUNTS:
        with pytest.raises(UnknownUser):
            ours.lookup(name)
        with pytest.raises(UnknownUser):
            ours.authenticate(name, b"Ssha-Pass-1")
        with pytest.raises(Rejected):
            courier.lookup(name)
        with pytest.raises(Rejected):
            courier.authenticate(name, b"Ssha-Pass-1")


def test_nul_and_bytes_that_are_not_utf8_match_nothing(slapd) -> None:
    ours = _source(d.settings([slapd.uri]))
    # Courier's C strings cut these at the NUL, and so does slapd's IA5 matching even
    # for an escaped \\00: authkit refuses a NUL without asking
    for name in ("ssha@example.com\0", "ssha@example.com\0*", "\0", "ssha\0@example.com"):
        with pytest.raises(UnknownUser):
            ours.authenticate(name, b"Ssha-Pass-1")
    for name in ("ssha@example.com\udcff", "\udcc3\udca9*"):
        with pytest.raises(UnknownUser):
            ours.lookup(name)


def test_non_ascii_login_matches_only_itself(slapd) -> None:
    # description (a directoryString) holds "jürgen@example.com" in UTF-8
    ours = _source(d.settings([slapd.uri], LDAP_MAIL="description"))
    name = "j\u00fcrgen@example.com"
    account = ours.authenticate(name, b"Jurgen-Pass-1")
    assert (account.address, account.home) == (name, "/home/vmail/jurgen")
    # the same letter as Latin-1 (a byte that is not UTF-8), an ASCII lookalike,
    # and wildcards around the non-ASCII part: none of them is that entry
    for other in ("j\udcfcrgen@example.com", "jurgen@example.com", "j*rgen@example.com",
                  "j\u00fc*", "j\u00fcrgen@example.com\0", "J\u00dcRGEN@example.co"):
        with pytest.raises(UnknownUser):
            ours.lookup(other)
