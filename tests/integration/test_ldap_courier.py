"""LdapSource against Courier's own authldap, on one real slapd.

A private slapd (tests/slapdlab.py) holds the accounts of tests/ldapdirectory.py,
one per stored-password format.  Courier's authdaemond runs in a CourierLab with
authmodulelist="authldap" and an authldaprc of the same settings as authkit's
``ldap_*`` keys; authkit's answers come from :class:`authkit.ldap.source.LdapSource`.
Courier is asked through authkit's authdaemond client (AuthdaemonSource on the
lab's socket), so both sides answer through one interface: PRE fields, logins per
service with the right and a wrong password, unknown users, PASSWD in both
directions, with LDAP_AUTHBIND off and on.

Known, deliberate differences (asserted, not hidden):
* Courier's ADDRESS is the login as escaped for its filter (``star\\2a@...``);
  authkit's is the login itself;
* ``{SMD5}``: Courier cannot verify it (checkpassword.c has no SMD5), authkit
  can; under LDAP_AUTHBIND slapd checks it and both accept;
* a new password: Courier re-hashes ``{CRYPT}$6$`` as ``{SSHA}``, authkit writes
  ``hash_scheme`` (sha512-crypt here) as ``{CRYPT}$6$...``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from authkit.authdaemon.source import AuthdaemonSource
from authkit.errors import Rejected, TemporaryFailure
from authkit.ldap.filters import escape_value
from authkit.ldap.source import LdapSource
from authkit.config import parse_config, Settings

import ldapdirectory as d
import slapdlab

pytestmark = pytest.mark.integration

SERVICES = ("imap", "pop3", "login", "courier")


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory):
    yield from d.populated_slapd(tmp_path_factory)


def authkit_source(values: "dict[str, str]", **more: str) -> LdapSource:
    settings = Settings(**parse_config(d.authkit_conf(values, **more)))
    return LdapSource.from_settings(settings)


def verdict(call, courier: bool = False):
    """("ok", account, passwd) / ("rejected",) / ("temporary",).  Courier's
    ADDRESS is the login with its filter escapes (``star\\2a@...``): for
    ``courier`` answers that is undone, after checking it is so."""
    try:
        account = call()
    except Rejected:
        return ("rejected",)
    except TemporaryFailure:
        return ("temporary",)
    if courier and "\\" in account.address:
        import re

        address = re.sub(r"\\([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), account.address)
        assert escape_value(address) == account.address
        account = account.replace(address=address)
    return ("ok", account, account.encrypted_password)


@pytest.fixture(params=[False, True], ids=["search", "authbind"])
def pair(request, slapd, courier_lab):
    """(courier, authkit) sources on the same directory with the same settings."""
    values = d.settings([slapd.uri], authbind=request.param)
    d.start_courier_authldap(courier_lab, values)
    courier = AuthdaemonSource(courier_lab.socket_path, remote_ip="")
    ours = authkit_source(values)
    yield request.param, courier, ours
    ours.close()


def test_pre_fields_are_courier_s_for_every_account_and_service(pair) -> None:
    _authbind, courier, ours = pair
    names = list(d.PASSWORDS) + [d.NO_PASSWORD, d.ZERO_UID, "nobody@example.com", "multi"]
    for name in names:
        for service in SERVICES:
            theirs = verdict(lambda: courier.lookup(name, service), courier=True)
            mine = verdict(lambda: ours.lookup(name, service))
            assert mine == theirs, (name, service, theirs, mine)
    rich = ours.lookup("rich@example.com", "imap")
    assert (rich.fullname, rich.quota) == ("Rich User", "1000000S")
    assert rich.options == "disableimap=0,disablepop3=1,sharedgroup=staff"
    assert ours.lookup("rich@example.com", "courier").maildir == "| /usr/bin/maildrop"


def test_logins_per_service_right_wrong_and_unknown(pair) -> None:
    authbind, courier, ours = pair
    for name, password in d.PASSWORDS.items():
        for service in ("imap", "pop3"):
            for attempt in (password, password + "x", password[:-1], password.swapcase()):
                theirs = verdict(lambda: courier.authenticate(name, attempt.encode(), service), courier=True)
                mine = verdict(lambda: ours.authenticate(name, attempt.encode(), service))
                if name == "smd5@example.com" and attempt == password and not authbind:
                    # Courier has no {SMD5}; authkit verifies it
                    assert theirs == ("rejected",) and mine[0] == "ok", (theirs, mine)
                    continue
                assert mine == theirs, (name, service, attempt, theirs, mine)
    for name in ("nobody@example.com", d.NO_PASSWORD):
        theirs = verdict(lambda: courier.authenticate(name, b"Whatever-1"))
        assert verdict(lambda: ours.authenticate(name, b"Whatever-1")) == theirs == ("rejected",)
    # uid 0: Courier's authldap refuses with a temporary error, so does authkit
    assert verdict(lambda: courier.authenticate(d.ZERO_UID, b"Zero-Pass-1")) == ("temporary",)
    assert verdict(lambda: ours.authenticate(d.ZERO_UID, b"Zero-Pass-1")) == ("temporary",)


def test_smd5_is_accepted_by_both_under_authbind_only(pair) -> None:
    authbind, courier, ours = pair
    theirs = verdict(lambda: courier.authenticate("smd5@example.com", b"Smd5-Pass-1", "imap"))
    assert ours.authenticate("smd5@example.com", b"Smd5-Pass-1", "imap").uid > 5000
    assert theirs[0] == ("ok" if authbind else "rejected")


def test_cram_md5_only_with_a_clear_password(pair) -> None:
    import hmac

    _authbind, courier, ours = pair
    challenge = b"<4711.1@example.com>"
    for name, secret, expect in (("clear@example.com", b"Clear-Pass-1", "ok"),
                                 ("ssha@example.com", b"Ssha-Pass-1", "rejected")):
        response = hmac.new(secret, challenge, "md5").hexdigest()
        theirs = verdict(lambda: courier.authenticate_cram(challenge, name, response, "md5", "imap"))
        mine = verdict(lambda: ours.authenticate_cram(challenge, name, response, "md5", "imap"))
        assert mine == theirs and mine[0] == expect, (name, theirs, mine)


def _restore(slapd, uid: str, attribute: str, value: str) -> None:
    slapd.set_password(f"uid={uid},{slapdlab.PEOPLE}", attribute, value)


def test_passwd_through_authkit_is_accepted_by_courier_and_back(pair, slapd) -> None:
    authbind, courier, ours = pair
    dn_crypt = f"uid=crypt6,{slapdlab.PEOPLE}"
    dn_clear = f"uid=clear,{slapdlab.PEOPLE}"
    saved_crypt = slapd.get(dn_crypt, "userPassword")[0]
    try:
        # authkit changes, Courier's authldap accepts the new password only
        account = ours.change_password("crypt6@example.com", b"Crypt6-Pass-1", b"Crypt6-New-2")
        stored = slapd.get(dn_crypt, "userPassword")[0]
        assert stored.startswith("{CRYPT}$6$") and account.encrypted_password == stored
        assert courier.authenticate("crypt6@example.com", b"Crypt6-New-2", "imap").uid == account.uid
        with pytest.raises(Rejected):
            courier.authenticate("crypt6@example.com", b"Crypt6-Pass-1", "imap")
        # Courier changes back, authkit accepts (Courier wrote {SSHA}: its downgrade)
        courier.change_password("crypt6@example.com", b"Crypt6-New-2", b"Crypt6-Back-3")
        assert slapd.get(dn_crypt, "userPassword")[0].startswith("{SSHA}")
        assert ours.authenticate("crypt6@example.com", b"Crypt6-Back-3", "imap").uid == account.uid
        # a wrong old password changes nothing, on either side
        for source in (ours, courier):
            with pytest.raises(Rejected):
                source.change_password("crypt6@example.com", b"Not-The-Old-1", b"Crypt6-Evil-4")
        assert ours.authenticate("crypt6@example.com", b"Crypt6-Back-3").uid == account.uid
        if not authbind:
            # the clear attribute is replaced too (under authbind slapd's ACL lets
            # the user write it as well; checked without authbind only)
            ours.change_password("clear@example.com", b"Clear-Pass-1", b"Clear-New-2")
            assert slapd.get(dn_clear, "clearPassword") == ["Clear-New-2"]
            assert courier.authenticate("clear@example.com", b"Clear-New-2").uid > 5000
    finally:
        _restore(slapd, "crypt6", "userPassword", saved_crypt)
        _restore(slapd, "clear", "clearPassword", "Clear-Pass-1")


def test_enumerate_lists_what_courier_lists(pair, courier_lab) -> None:
    _authbind, courier, ours = pair
    theirs = sorted((a.address, a.uid, a.gid, a.home, a.maildir) for a in courier.enumerate())
    mine = sorted((a.address, a.uid, a.gid, a.home, a.maildir) for a in ours.enumerate())
    assert mine == theirs
    ours.page_size = 3  # several RFC 2696 pages on the real slapd: the same list
    paged = sorted((a.address, a.uid, a.gid, a.home, a.maildir) for a in ours.enumerate())
    assert paged == theirs
    assert ("alias@example.com", ) in {(row[0],) for row in mine}
