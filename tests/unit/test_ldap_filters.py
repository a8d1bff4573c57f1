"""authkit.ldap.filters and authkit.ldap.mapping: Courier's filter and attribute
rules, RFC 4515 escaping (pure functions, no directory)."""

from __future__ import annotations

import pytest

from authkit.errors import ConfigError, TemporaryFailure, UnknownUser
from authkit.ldap.filters import enumerate_filter, escape_value, login_filter
from authkit.ldap.mapping import DirectoryLayout, parse_auxoptions, resolve_global_id


@pytest.mark.parametrize("value,escaped", [
    ("andrew@example.com", "andrew@example.com"),
    ("*", "\\2a"),
    ("a(b)c", "a\\28b\\29c"),
    ("back\\slash", "back\\5cslash"),
    ("nul\0byte", "nul\\00byte"),
    ("caf\u00e9", "caf\\c3\\a9"),
    ("raw\udcff", "raw\\ff"),  # a byte that was not UTF-8, carried as a surrogate
    ("tab\tnl\n", "tab\\09nl\\0a"),
    ("del\x7f", "del\\7f"),
])
def test_escape_value(value: str, escaped: str) -> None:
    assert escape_value(value) == escaped


def test_escaped_value_holds_no_filter_syntax() -> None:
    nasty = "*)(uid=*))(|(mail=*\\\0\u00e9"
    escaped = escape_value(nasty)
    assert not set(escaped) & set("*()\0") and escaped.isascii()
    # every backslash starts a two-digit hex escape
    parts = escaped.split("\\")[1:]
    assert all(len(p) >= 2 and all(c in "0123456789abcdef" for c in p[:2]) for p in parts)


def test_login_filter_courier_forms() -> None:
    assert login_filter("mail", "andrew@example.com") == "(mail=andrew@example.com)"
    assert login_filter("mail", "andrew", "example.com") == "(mail=andrew@example.com)"
    assert login_filter("mail", "andrew@other.org", "example.com") == "(mail=andrew@other.org)"
    assert (login_filter("mail", "a*", "", "(objectClass=CourierMailAccount)")
            == "(&(objectClass=CourierMailAccount)(mail=a\\2a))")
    assert login_filter("uid", "x", "", "objectClass=x") == "(&(objectClass=x)(uid=x))"


def test_enumerate_filter_precedence() -> None:
    assert enumerate_filter("mail") == "(mail=*)"
    assert enumerate_filter("mail", "(a=1)") == "(a=1)"
    assert enumerate_filter("mail", "(a=1)", "(b=2)") == "(b=2)"


def test_auxoptions_parsing() -> None:
    assert parse_auxoptions("shared=sharedgroup,disableimap=disableimap") == [
        ("shared", "sharedgroup"), ("disableimap", "disableimap")]
    assert parse_auxoptions(",x,,") == [("x", "")]
    assert parse_auxoptions("") == []


def test_global_ids() -> None:
    assert resolve_global_id("", "uid") == 0
    assert resolve_global_id("5000", "gid") == 5000
    assert resolve_global_id("root", "uid") == 0
    assert resolve_global_id("root", "gid") == 0
    with pytest.raises(ConfigError):
        resolve_global_id("no-such-user-authkit", "uid")


def _entry(**attrs: object) -> dict[str, list[bytes]]:
    return {k.lower(): [v.encode() for v in (vals if isinstance(vals, list) else [vals])]
            for k, vals in attrs.items()}


LAYOUT = DirectoryLayout(uid="uidNumber", gid="gidNumber", clearpw="clearPassword",
                         maildirquota="quota", auxoptions="disableimap=disableimap,shared=sharedgroup",
                         mailroot="/var/mail", default_options="wbnodsn=1,disableimap=0")


def test_account_mapping() -> None:
    entry = _entry(homeDirectory="example.com/andrew", mailbox="Maildir/", cn="Andrew, Room 1",
                   uidNumber="5001", gidNumber="5002xyz", quota="1000S", disableimap="1",
                   userPassword=["{SSHA}first", "{SSHA}second"], defaultDelivery="| prog")
    account = LAYOUT.account(entry, "andrew", "imap")
    assert (account.address, account.uid, account.gid) == ("andrew", 5001, 5002)
    assert account.home == "/var/mail/example.com/andrew"
    assert (account.maildir, account.quota, account.fullname) == ("Maildir/", "1000S", "Andrew")
    assert account.options == "disableimap=1,wbnodsn=1"  # DEFAULTOPTIONS merged after
    assert account.encrypted_password == "{SSHA}first"
    # service "courier" takes the default-delivery attribute
    assert LAYOUT.account(entry, "andrew", "courier").maildir == "| prog"


def test_account_global_ids_and_refusals() -> None:
    layout = DirectoryLayout(uid="uidNumber", gid="gidNumber", glob_uid=7000, glob_gid=7001)
    account = layout.account(_entry(homeDirectory="/h"), "a", "login")
    assert (account.uid, account.gid) == (7000, 7001)
    with pytest.raises(TemporaryFailure):
        DirectoryLayout().account(_entry(homeDirectory="/h"), "a", "login")  # uid 0
    with pytest.raises(TemporaryFailure):
        layout.account(_entry(homeDirectory="/h", uidNumber="0"), "a", "login")
    with pytest.raises(UnknownUser):
        layout.account(_entry(mail="a"), "a", "login")


def test_enumerated_one_per_mail_value_and_skips_homeless() -> None:
    layout = DirectoryLayout(glob_uid=1, glob_gid=2)
    entry = _entry(mail=["a@x", "b@x"], homeDirectory="/h", mailbox="M")
    assert [a.address for a in layout.enumerated(entry)] == ["a@x", "b@x"]
    assert list(layout.enumerated(_entry(mail="c@x"))) == []


def test_lookup_attributes_unique_and_service_dependent() -> None:
    names = LAYOUT.lookup_attributes("imap")
    assert len({n.lower() for n in names}) == len(names)
    assert "mailbox" in names and "defaultDelivery" not in names
    assert "defaultDelivery" in LAYOUT.lookup_attributes("courier")
