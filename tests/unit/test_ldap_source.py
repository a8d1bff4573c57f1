"""authkit.ldap.source.LdapSource over ldap3's offline mock directory
(MOCK_SYNC): verdicts, password change, enumerate, pool and failover logic.
The real slapd is in tests/integration/test_ldap_*.py."""

from __future__ import annotations

import threading

import ldap3
import pytest
from ldap3.core import exceptions as ldap_errors

from authkit.errors import BadPassword, ConfigError, Misuse, PolicyRefused, TemporaryFailure, UnknownUser
from authkit.ldap.mapping import DirectoryLayout
from authkit.ldap.source import LdapSource, split_uris
from authkit.schemes import make_password_hash, verify_password
from authkit.schemes.hmacstate import hmac_state

BASE = "ou=people,o=test"


class MockLdapSource(LdapSource):
    """LdapSource whose connections are ldap3 mock connections on one shared
    in-memory directory; ``down`` makes opening fail, ``broken`` makes each
    pooled connection's next request fail once."""

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.server = ldap3.Server("mock", get_info=ldap3.NONE)
        self.opened = 0
        self.down = False
        seed = ldap3.Connection(self.server, client_strategy=ldap3.MOCK_SYNC)
        self.dit = seed.strategy

    def _connect(self, as_binddn: bool, skip: frozenset = frozenset()) -> ldap3.Connection:
        if self.down:
            raise TemporaryFailure("ldap: no server usable: mock down")
        self.opened += 1
        conn = ldap3.Connection(self.server, client_strategy=ldap3.MOCK_SYNC,
                                raise_exceptions=False, check_names=False)
        conn.open()
        conn.authkit_uri = "mock"
        return conn


def _source(**kw: object) -> MockLdapSource:
    layout = kw.pop("layout", None) or DirectoryLayout(uid="uidNumber", gid="gidNumber",
                                                       clearpw="clearPassword")
    src = MockLdapSource(["ldap://127.0.0.1:1"], BASE, layout=layout, **kw)  # type: ignore[arg-type]
    add = src.dit.add_entry
    add(f"uid=crypt,{BASE}", {"objectClass": ["top"], "mail": "crypt@example.com",
                              "homeDirectory": "/home/crypt", "uidNumber": "5000",
                              "gidNumber": "5000", "cn": "Crypt User",
                              "userPassword": make_password_hash(b"crypt-pw", "SSHA")})
    add(f"uid=clear,{BASE}", {"objectClass": ["top"], "mail": "clear@example.com",
                              "homeDirectory": "/home/clear", "uidNumber": "5001",
                              "gidNumber": "5001", "clearPassword": "clear-pw"})
    add(f"uid=star,{BASE}", {"objectClass": ["top"], "mail": "a*@example.com",
                             "homeDirectory": "/home/star", "uidNumber": "5002",
                             "gidNumber": "5002", "clearPassword": "star-pw"})
    add(f"uid=nopw,{BASE}", {"objectClass": ["top"], "mail": "nopw@example.com",
                             "homeDirectory": "/home/nopw", "uidNumber": "5003", "gidNumber": "5003"})
    add(f"uid=root,{BASE}", {"objectClass": ["top"], "mail": "root@example.com",
                             "homeDirectory": "/root", "uidNumber": "0", "gidNumber": "0",
                             "clearPassword": "root-pw"})
    return src


def test_lookup_and_login_with_crypted_and_clear_passwords() -> None:
    src = _source()
    account = src.lookup("crypt@example.com", "imap")
    assert (account.uid, account.home, account.fullname) == (5000, "/home/crypt", "Crypt User")
    assert account.encrypted_password.startswith("{SSHA}")
    assert src.authenticate("crypt@example.com", b"crypt-pw", "imap") == account
    assert src.authenticate("clear@example.com", b"clear-pw").uid == 5001
    for name, wrong in (("crypt@example.com", b"Crypt-pw"), ("clear@example.com", b"clear-p"),
                        ("nopw@example.com", b"anything")):
        with pytest.raises(BadPassword):
            src.authenticate(name, wrong)
    with pytest.raises(BadPassword):
        src.authenticate("crypt@example.com", b"")
    with pytest.raises(UnknownUser):
        src.authenticate("nobody@example.com", b"crypt-pw")
    with pytest.raises(UnknownUser):
        src.lookup("nobody@example.com")


def test_domain_is_appended_to_bare_names() -> None:
    src = _source(domain="example.com")
    assert src.lookup("crypt").address == "crypt"
    assert src.authenticate("clear", b"clear-pw").home == "/home/clear"


def test_filter_metacharacters_match_only_themselves() -> None:
    src = _source()
    assert src.authenticate("a*@example.com", b"star-pw").uid == 5002
    for name in ("*", "a*", "*@example.com", "c*", "crypt@example.com)(mail=*", "crypt@example.com\0"):
        with pytest.raises(UnknownUser):
            src.lookup(name)


def test_zero_uid_is_a_temporary_failure_not_a_verdict() -> None:
    src = _source()
    with pytest.raises(TemporaryFailure):
        src.authenticate("root@example.com", b"root-pw")
    with pytest.raises(TemporaryFailure):
        src.authenticate("root@example.com", b"wrong")


def test_cram_needs_a_clear_password() -> None:
    import hmac as hmac_module

    src = _source()
    challenge = b"<1.2@example.com>"
    response = hmac_module.new(b"clear-pw", challenge, "md5").hexdigest()
    assert src.authenticate_cram(challenge, "clear@example.com", response, "md5").uid == 5001
    assert hmac_state(b"clear-pw", "md5")  # the state the check is built on
    with pytest.raises(BadPassword):
        src.authenticate_cram(challenge, "clear@example.com", "00" * 16, "md5")
    crypt_resp = hmac_module.new(b"crypt-pw", challenge, "md5").hexdigest()
    with pytest.raises(BadPassword):
        src.authenticate_cram(challenge, "crypt@example.com", crypt_resp, "md5")
    with pytest.raises(Misuse):
        src.authenticate_cram(challenge, "clear@example.com", response, "md4")


def _stored(src: MockLdapSource, uid: str, attribute: str) -> str:
    conn = src._connect(True)
    conn.search(BASE, f"(uid={uid})", attributes=[attribute])
    return conn.response[0]["raw_attributes"][attribute][0].decode()


def test_change_password_replaces_the_attributes_the_entry_has() -> None:
    src = _source(hash_scheme="sha512-crypt")
    account = src.change_password("crypt@example.com", b"crypt-pw", b"new-crypt-pw")
    stored = _stored(src, "crypt", "userPassword")
    assert stored.startswith("{CRYPT}$6$") and account.encrypted_password == stored
    assert verify_password(b"new-crypt-pw", stored)
    assert src.authenticate("crypt@example.com", b"new-crypt-pw").uid == 5000
    with pytest.raises(BadPassword):
        src.authenticate("crypt@example.com", b"crypt-pw")
    src.change_password("clear@example.com", b"clear-pw", b"new-clear-pw")
    assert _stored(src, "clear", "clearPassword") == "new-clear-pw"
    with pytest.raises(BadPassword):
        src.change_password("clear@example.com", b"clear-pw", b"again")
    with pytest.raises(PolicyRefused):
        src.change_password("clear@example.com", b"new-clear-pw", b"\xff\xfe")  # clear must be UTF-8
    assert _stored(src, "clear", "clearPassword") == "new-clear-pw"


def test_change_password_keeps_a_digest_scheme_when_asked() -> None:
    src = _source(hash_scheme="SSHA")
    src.change_password("crypt@example.com", b"crypt-pw", b"n3w")
    assert _stored(src, "crypt", "userPassword").startswith("{SSHA}")


def test_authbind_checks_by_binding_as_the_user() -> None:
    src = _source(authbind=True)
    # the mock directory compares userPassword as stored: give one a clear value
    src.dit.add_entry(f"uid=bind,{BASE}", {"objectClass": ["top"], "mail": "bind@example.com",
                                           "homeDirectory": "/home/bind", "uidNumber": "5010",
                                           "gidNumber": "5010", "userPassword": "bind-pw"})
    assert src.authenticate("bind@example.com", b"bind-pw").uid == 5010
    with pytest.raises(BadPassword):
        src.authenticate("bind@example.com", b"wrong")
    src.change_password("bind@example.com", b"bind-pw", b"bind-new")
    assert verify_password(b"bind-new", _stored(src, "bind", "userPassword"))


def test_enumerate_lists_every_mail_value_but_uid_zero() -> None:
    src = _source()
    names = sorted(a.address for a in src.enumerate())
    assert names == sorted(["crypt@example.com", "clear@example.com", "a*@example.com",
                            "nopw@example.com"])


def test_server_down_is_temporary() -> None:
    src = _source()
    src.down = True
    for call in (lambda: src.lookup("crypt@example.com"),
                 lambda: src.authenticate("crypt@example.com", b"crypt-pw"),
                 lambda: src.change_password("crypt@example.com", b"crypt-pw", b"x1234567"),
                 lambda: list(src.enumerate())):
        with pytest.raises(TemporaryFailure):
            call()


def test_a_broken_pooled_connection_is_replaced_and_the_request_retried(monkeypatch) -> None:
    src = _source()
    src.lookup("crypt@example.com")
    idle = list(src._search_pool._idle)
    assert idle, "the connection went back to the pool"

    def broken(*a: object, **k: object) -> None:
        raise ldap_errors.LDAPSessionTerminatedByServerError("connection reset")

    for conn in idle:
        monkeypatch.setattr(conn, "search", broken)
    opened = src.opened
    assert src.authenticate("crypt@example.com", b"crypt-pw").uid == 5000
    assert src.opened == opened + 1
    assert all(conn not in src._search_pool._idle for conn in idle)


def test_pool_serves_threads_each_on_its_own_connection() -> None:
    src = _source(pool_size=2)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(20):
                src.authenticate("clear@example.com", b"clear-pw")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(src._search_pool._idle) <= 2


def test_configuration_errors() -> None:
    assert split_uris("ldap://a, ldaps://b  ldap://c") == ["ldap://a", "ldaps://b", "ldap://c"]
    for args, kw in (([""], {}), (["http://x"], {}), (["ldap://x"], {"deref": "sometimes"}),
                     (["ldap://x"], {"timeout": 0})):
        with pytest.raises(ConfigError):
            LdapSource(args[0], BASE, **kw)
    with pytest.raises(ConfigError):
        LdapSource("ldap://x", "")


def test_from_settings_reads_the_ldap_keys(tmp_path) -> None:
    from authkit.config import load_settings

    conf = tmp_path / "authkit.conf"
    conf.write_text("source = ldap\nldap_uri = ldap://127.0.0.1:1, ldap://127.0.0.1:2\n"
                    "ldap_basedn = o=test\nldap_glob_uid = 5000\nldap_glob_gid = 5000\n"
                    "ldap_filter = (objectClass=CourierMailAccount)\nldap_authbind = 1\n"
                    "ldap_timeout = 2.5\nldap_auxoptions = disableimap=disableimap\n")
    src = LdapSource.from_settings(load_settings(str(conf), environ={}))
    assert src.uris == ["ldap://127.0.0.1:1", "ldap://127.0.0.1:2"]
    assert (src.authbind, src.timeout, src.layout.glob_uid) == (True, 2.5, 5000)
    assert src.layout.auxoptions == [("disableimap", "disableimap")]
    with pytest.raises(TemporaryFailure):  # nothing listens on those ports
        src.lookup("x")


def test_chain_with_ldap_opens_an_ldap_member_only_for_the_daemon(tmp_path) -> None:
    from authkit.authdaemon.source import AuthdaemonSource
    from authkit.config import load_settings, open_source

    (tmp_path / "userdb").write_text("")
    conf = tmp_path / "authkit.conf"
    conf.write_text(f"source = userdb, ldap\nuserdb = {tmp_path}/userdb\n"
                    "ldap_uri = ldap://127.0.0.1:1\nldap_basedn = o=test\n"
                    f"authdaemon_socket = {tmp_path}/socket\n")
    chain = open_source(load_settings(str(conf), environ={}), daemon=True)
    assert [type(m).__name__ for m in chain.members] == ["UserdbSource", "LdapSource"]
    assert isinstance(open_source(load_settings(str(conf), environ={})), AuthdaemonSource)
