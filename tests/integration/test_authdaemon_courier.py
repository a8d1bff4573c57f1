"""AuthdaemonSource against the real authdaemond of Debian's courier-authdaemon
(authuserdb module), in a CourierLab: a private mount namespace whose
/etc/courier and /run/courier/authdaemon are directories of the test's tmp_path,
so the machine's are never touched.  The socket is reached from the host at
``lab.socket_path``.

Every fixture is made by Courier's own tools inside the lab: ``userdbpw``
(md5-crypt, DES crypt, HMAC secrets), ``userdb NAME set``, ``makeuserdb``; the
cross-checks run Courier's ``authtest`` and ``authenumerate``.
"""

from __future__ import annotations

import hashlib
import hmac
import os

import pytest
from authkitdlab import courier_or_authkitd

from authkit.account import Account
from authkit.authdaemon.source import AuthdaemonSource
from authkit.errors import BadPassword, Rejected, TemporaryFailure, UnknownUser

pytestmark = pytest.mark.integration

CHALLENGE = b"<1896.697170952@lab.example>"


def populate(lab) -> None:
    """andrew: md5-crypt systempw, DES imappw, HMAC-MD5 secret of the systempw
    password; dhahn: HMAC-SHA1 and HMAC-SHA256 secrets, pop3-only HMAC-MD5;
    hmaconly: only an HMAC-MD5 secret; des: DES systempw."""
    lab.add_user("andrew@example.com", "andrew-secret",
                 mail="/home/vmail/example.com/andrew/Maildir",
                 gecos="Andrew Example,Room 1,555-0100", quota="10000000S",
                 options="disableshared=1")
    lab.add_user("andrew@example.com", "andrew-imap", pw_field="imappw", pw_flags=())
    lab.add_user("andrew@example.com", "andrew-secret", pw_field="hmac-md5pw",
                 pw_flags=("-hmac-md5",))
    lab.add_user("dhahn@example.org", "dhahn-pw")
    lab.add_user("dhahn@example.org", "dhahn-sha1", pw_field="hmac-sha1pw",
                 pw_flags=("-hmac-sha1",))
    lab.add_user("dhahn@example.org", "dhahn-sha256", pw_field="hmac-sha256pw",
                 pw_flags=("-hmac-sha256",))
    lab.add_user("dhahn@example.org", "dhahn-pop3", pw_field="pop3-hmac-md5pw",
                 pw_flags=("-hmac-md5",))
    lab.add_user("hmaconly@example.org", "hmac-pw", pw_field="hmac-md5pw",
                 pw_flags=("-hmac-md5",), uid="5001", gid="5002")
    lab.add_user("des@example.org", "pw-descrypt", pw_flags=())


@pytest.fixture(params=["courier", "authkitd"])
def lab(request, courier_lab):
    # the same tests against Courier's authdaemond and against authkitd (tests/authkitdlab.py)
    courier_or_authkitd(request, courier_lab)
    populate(courier_lab)
    courier_lab.makeuserdb()
    courier_lab.start_daemon()
    return courier_lab


@pytest.fixture
def src(lab) -> AuthdaemonSource:
    return AuthdaemonSource(str(lab.socket_path), remote_ip="192.0.2.10")


def authtest_fields(lab, *args: str, env: dict | None = None) -> dict[str, str]:
    """Courier's ``authtest ARGS`` output as {label: value}; asserts rc 0."""
    proc = lab.authtest(*args, env=env)
    assert proc.returncode == 0, proc.stderr
    fields = {}
    for line in proc.stdout.decode().splitlines():
        label, sep, value = line.partition(": ")
        if sep:
            fields[label.strip()] = value.strip()
    return fields


def cram_response(secret: bytes, algorithm: str) -> str:
    return hmac.new(secret, CHALLENGE, getattr(hashlib, algorithm)).hexdigest()


# --- lookups ---------------------------------------------------------------

def test_lookup_agrees_with_authtest(lab, src) -> None:
    account = src.lookup("andrew@example.com", "imap")
    shown = authtest_fields(lab, "-s", "imap", "andrew@example.com")
    assert shown["Authenticated"] == (
        f"{account.address}  (uid {account.uid}, gid {account.gid})")
    assert shown["Home Directory"] == account.home
    assert shown["Maildir"] == account.maildir
    assert shown["Quota"] == account.quota
    assert shown["Encrypted Password"] == account.encrypted_password
    assert shown["Options"] == account.options
    assert account == Account(
        address="andrew@example.com", uid=5000, gid=5000, home="/home/vmail/andrew@example.com",
        maildir="/home/vmail/example.com/andrew/Maildir", quota="10000000S",
        fullname="Andrew Example", options="disableshared=1")


def test_lookup_passwd_is_the_service_password_hash(src) -> None:
    imap = src.lookup("andrew@example.com", "imap").encrypted_password
    login = src.lookup("andrew@example.com", "login").encrypted_password
    assert len(imap) == 13 and login.startswith("$1$")  # DES imappw, md5-crypt systempw


def test_lookup_of_hmac_only_user_has_no_passwd(src) -> None:
    account = src.lookup("hmaconly@example.org")
    assert (account.uid, account.gid, account.encrypted_password) == (5001, 5002, "")


@pytest.mark.parametrize("name", ["nobody@example.com", "Andrew@Example.com",
                                  "andrew@example.com ", "x" * 8178])
def test_lookup_of_unknown_name_is_unknown_user(src, name: str) -> None:
    # "x" * 8178 makes the longest line the daemon reads (8190 bytes): FAIL, not a close
    with pytest.raises(UnknownUser):
        src.lookup(name)


# --- logins ----------------------------------------------------------------

@pytest.mark.parametrize("service,password", [
    ("imap", b"andrew-imap"), ("pop3", b"andrew-secret"), ("login", b"andrew-secret"),
    ("webmail", b"andrew-secret"), ("esmtp", b"andrew-secret"),
])
def test_login_for_several_services(src, service: str, password: bytes) -> None:
    account = src.authenticate("andrew@example.com", password, service)
    assert account.address == "andrew@example.com"
    assert account.fullname == "Andrew Example"


@pytest.mark.parametrize("service,password", [
    ("imap", b"andrew-secret"),   # imappw exists, so systempw is not tried
    ("pop3", b"andrew-imap"),
    ("login", b"wrong"),
])
def test_wrong_password_for_the_service_is_bad_password(src, service: str,
                                                        password: bytes) -> None:
    with pytest.raises(BadPassword):
        src.authenticate("andrew@example.com", password, service)


def test_des_crypt_login(src) -> None:
    assert src.authenticate("des@example.org", b"pw-descrypt").uid == 5000


def test_unknown_user_and_hmac_only_user_cannot_log_in(src) -> None:
    with pytest.raises(BadPassword):
        src.authenticate("nobody@example.com", b"x")
    with pytest.raises(BadPassword):
        src.authenticate("hmaconly@example.org", b"hmac-pw")


def test_longest_auth_request_gets_an_answer(src) -> None:
    overhead = len(b"login\nlogin\nandrew@example.com\n\n")
    with pytest.raises(BadPassword):  # AUTH 8191: FAIL from the daemon, not a close
        src.authenticate("andrew@example.com", b"p" * (8191 - overhead))


def test_defdomain_login_agrees_with_courier(lab) -> None:
    src = AuthdaemonSource(str(lab.socket_path), defdomain="@example.com", remote_ip="")
    assert src.authenticate("andrew", b"andrew-secret").address == "andrew@example.com"
    assert lab.authtest("andrew", "andrew-secret",
                        env={"DEFDOMAIN": "@example.com"}).returncode == 0
    # Courier applies no DEFDOMAIN to a lookup
    with pytest.raises(UnknownUser):
        src.lookup("andrew")
    assert lab.authtest("andrew", env={"DEFDOMAIN": "@example.com"}).returncode != 0


# --- CRAM ------------------------------------------------------------------

@pytest.mark.parametrize("name,secret,algorithm,service", [
    ("andrew@example.com", b"andrew-secret", "md5", "imap"),
    ("dhahn@example.org", b"dhahn-sha1", "sha1", "imap"),
    ("dhahn@example.org", b"dhahn-sha256", "sha256", "imap"),
    ("dhahn@example.org", b"dhahn-pop3", "md5", "pop3"),      # pop3-hmac-md5pw
    ("hmaconly@example.org", b"hmac-pw", "md5", "login"),
])
def test_cram_login_for_each_algorithm(src, name: str, secret: bytes, algorithm: str,
                                       service: str) -> None:
    account = src.authenticate_cram(CHALLENGE, name, cram_response(secret, algorithm),
                                    algorithm, service)
    assert account.address == name
    assert account.encrypted_password == "" and account.fullname == ""


@pytest.mark.parametrize("name,secret,algorithm,service", [
    ("andrew@example.com", b"wrong", "md5", "imap"),
    ("andrew@example.com", b"andrew-secret", "sha1", "imap"),  # no sha1 secret
    ("dhahn@example.org", b"dhahn-pop3", "md5", "imap"),       # pop3 secret only for pop3
    ("des@example.org", b"pw-descrypt", "md5", "login"),        # systempw is never a secret
])
def test_cram_with_the_wrong_secret_is_bad_password(src, name: str, secret: bytes,
                                                    algorithm: str, service: str) -> None:
    with pytest.raises(BadPassword):
        src.authenticate_cram(CHALLENGE, name, cram_response(secret, algorithm),
                              algorithm, service)


# --- password change -------------------------------------------------------

def test_password_change_is_confirmed_by_authtest(lab, src) -> None:
    account = src.change_password("andrew@example.com", b"andrew-secret", b"N3w-andrew")
    assert account.address == "andrew@example.com"
    # authuserdb writes md5-crypt; authkitd its hash_scheme (sha512-crypt)
    assert account.encrypted_password.startswith("$1$" if lab.daemon_kind == "courier" else "$6$")
    assert lab.authtest("andrew@example.com", "N3w-andrew").returncode == 0
    assert lab.authtest("andrew@example.com", "andrew-secret").returncode != 0
    assert src.authenticate("andrew@example.com", b"N3w-andrew").uid == 5000
    # the HMAC-MD5 secret of the old password was replaced too
    response = cram_response(b"N3w-andrew", "md5")
    assert src.authenticate_cram(CHALLENGE, "andrew@example.com", response, "md5").uid == 5000


def test_password_change_of_the_service_password(lab, src) -> None:
    src.change_password("andrew@example.com", b"andrew-imap", b"Imap-2", "imap")
    assert lab.authtest("-s", "imap", "andrew@example.com", "Imap-2").returncode == 0
    assert lab.authtest("-s", "imap", "andrew@example.com", "andrew-imap").returncode != 0
    assert lab.authtest("andrew@example.com", "andrew-secret").returncode == 0  # systempw kept


def test_password_change_with_wrong_old_password_is_bad_password(lab, src) -> None:
    with pytest.raises(BadPassword):
        src.change_password("andrew@example.com", b"wrong", b"N3w-andrew")
    with pytest.raises(BadPassword):
        src.change_password("nobody@example.com", b"x", b"N3w-x")
    assert lab.authtest("andrew@example.com", "andrew-secret").returncode == 0


# --- enumeration -------------------------------------------------------------

def authenumerate_rows(lab) -> set[tuple[str, ...]]:
    proc = lab.authenumerate("-o")
    assert proc.returncode == 0, proc.stderr
    return {tuple(line.split("\t")) for line in proc.stdout.decode().splitlines() if line}


def test_enumeration_agrees_with_authenumerate(lab, src) -> None:
    accounts = list(src.enumerate())
    ours = {(a.address, str(a.uid), str(a.gid), a.home, a.maildir, a.options)
            for a in accounts}
    assert sorted(a.address for a in accounts) == [
        "andrew@example.com", "des@example.org", "dhahn@example.org", "hmaconly@example.org"]
    assert ours == authenumerate_rows(lab)


def test_enumeration_longer_than_one_read(courier_lab_factory) -> None:
    lab = courier_lab_factory(defaultoptions="wbnoimages=1")
    with open(lab.userdb_path, "w") as userdb:  # the userdb text format, spec section 1
        for i in range(400):
            userdb.write(f"user{i:03d}@example.net\tuid={6000 + i}|gid=6000|"
                         f"home=/home/vmail/example.net/user{i:03d}|"
                         f"mail=/home/vmail/example.net/user{i:03d}/Maildir\n")
    os.chmod(lab.userdb_path, 0o600)
    lab.makeuserdb()
    lab.start_daemon()
    accounts = list(AuthdaemonSource(str(lab.socket_path), remote_ip="").enumerate())
    assert len(accounts) == 400
    assert {a.options for a in accounts} == {"wbnoimages=1"}  # DEFAULTOPTIONS merged
    assert {(a.address, str(a.uid), str(a.gid), a.home, a.maildir, a.options)
            for a in accounts} == authenumerate_rows(lab)


# --- faults with the real daemon --------------------------------------------

def test_daemon_stopped_is_a_temporary_failure(lab, src) -> None:
    assert src.lookup("andrew@example.com").uid == 5000
    lab.stop_daemon()
    for call in (lambda: src.lookup("andrew@example.com"),
                 lambda: src.authenticate("andrew@example.com", b"andrew-secret"),
                 lambda: src.change_password("andrew@example.com", b"andrew-secret", b"x2"),
                 lambda: list(src.enumerate())):
        with pytest.raises(TemporaryFailure) as info:
            call()
        assert not isinstance(info.value, Rejected)
        assert str(lab.socket_path) in str(info.value)


def test_socket_missing_before_the_daemon_starts_is_a_temporary_failure(courier_lab) -> None:
    src = AuthdaemonSource(str(courier_lab.socket_path), connect_timeout=1.0, remote_ip="")
    with pytest.raises(TemporaryFailure, match="does not exist"):
        src.lookup("andrew@example.com")


def test_daemon_started_again_answers_again(lab, src) -> None:
    lab.stop_daemon()
    with pytest.raises(TemporaryFailure):
        src.lookup("andrew@example.com")
    lab.start_daemon()
    assert src.lookup("andrew@example.com").uid == 5000


def test_our_request_limits_are_the_daemons(lab) -> None:
    """One byte past MAX_LINE / MAX_AUTH_BODY the real daemon drops the connection
    without a reply (a temporary failure), so the builders refuse there; at the
    limits it answers."""
    from authkit.authdaemon import client, protocol

    def send(request: bytes) -> object:
        return client.exchange(str(lab.socket_path), request, protocol.AccountReplyReader(),
                               read_timeout=15)

    assert send(b"PRE . login " + b"x" * (protocol.MAX_LINE - 12) + b"\n") is protocol.FAIL
    with pytest.raises(TemporaryFailure):
        send(b"PRE . login " + b"x" * (protocol.MAX_LINE - 11) + b"\n")
    body = b"login\nlogin\nandrew@example.com\n"
    body += b"p" * (protocol.MAX_AUTH_BODY - len(body) - 1) + b"\n"
    assert send(b"AUTH %d\n" % len(body) + body) is protocol.FAIL
    body = body[:-1] + b"p\n"
    with pytest.raises(TemporaryFailure):
        send(b"AUTH %d\n" % len(body) + body)
