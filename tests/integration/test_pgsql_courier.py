"""PgsqlSource against Courier's own authdaemond with authmodulelist="authpgsql",
both reading the same private PostgreSQL database (tests/pglab.py) with the same
authpgsqlrc keys: PRE fields, logins per service and password format, CRAM,
PASSWD both ways, ENUMERATE, the WHERE clause, DEFAULT_DOMAIN and the custom
SELECT/CHPASS/ENUMERATE clauses; then injection through names and passwords."""

from __future__ import annotations

import base64
import hmac
import itertools
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pglab import PgLab, authkit_settings, missing_requirements, write_authpgsqlrc  # noqa: E402

from authkit.errors import BadPassword, PolicyRefused, Rejected, UnknownUser  # noqa: E402
from authkit.schemes import make_password_hash  # noqa: E402

pytestmark = pytest.mark.integration

_counter = itertools.count()


@pytest.fixture(scope="module")
def pg():
    reasons = missing_requirements()
    if reasons:
        pytest.skip("PgLab unavailable: " + "; ".join(reasons))
    with PgLab() as lab:
        yield lab


def _hash(password: str, scheme: str) -> str:
    return make_password_hash(password.encode(), scheme)


#: (login, crypt value, clear value, the right password).  Every format Courier's
#: authpgsql verifies, a clear-only account, crypt+clear (crypt decides), none.
def _accounts() -> list:
    rows = []
    for scheme in ("sha512-crypt", "sha256-crypt", "md5-crypt", "bcrypt", "yescrypt",
                   "des-crypt", "MD5", "SHA", "SSHA", "SHA256", "SHA512"):
        password = f"pw-{scheme}"
        rows.append((f"{scheme.lower()}@example.com", _hash(password, scheme), "", password))
    rows.append(("crypt-prefix@example.com", "{CRYPT}" + _hash("pw-crypt", "sha512-crypt"), "", "pw-crypt"))
    rows.append(("lower-prefix@example.com", "{md5}" + _hash("pw-lower", "MD5")[5:], "", "pw-lower"))
    rows.append(("clearonly@example.com", "", "pw-clear", "pw-clear"))
    rows.append(("both@example.com", _hash("pw-crypt-wins", "sha512-crypt"), "pw-clear-loses",
                 "pw-crypt-wins"))
    rows.append(("nopassword@example.com", "", "", "anything"))
    return rows


RC = {
    "PGSQL_USER_TABLE": "passwd",
    "PGSQL_CRYPT_PWFIELD": "crypt",
    "PGSQL_CLEAR_PWFIELD": "clear",
    "PGSQL_UID_FIELD": "uid",
    "PGSQL_GID_FIELD": "gid",
    "PGSQL_LOGIN_FIELD": "id",
    "PGSQL_HOME_FIELD": "home",
    "PGSQL_NAME_FIELD": "name",
    "PGSQL_MAILDIR_FIELD": "maildir",
    "PGSQL_DEFAULTDELIVERY": "defaultdelivery",
    "PGSQL_QUOTA_FIELD": "quota",
    "PGSQL_AUXOPTIONS_FIELD": "options",
    "PGSQL_WHERE_CLAUSE": "server='mail1'",
    "DEFAULT_DOMAIN": "example.com",
}


class Pair:
    """Courier's authdaemond (AuthdaemonSource on the lab's socket) and authkit's
    PgsqlSource on one database."""

    def __init__(self, pg: PgLab, lab, dbname: str, rc: dict, defaultoptions: str = "") -> None:
        from authkit.authdaemon.source import AuthdaemonSource
        from authkit.pgsql.source import PgsqlSource

        self.pg, self.lab, self.dbname = pg, lab, dbname
        keys = {"PGSQL_CONNECTION": pg.conninfo(dbname), **rc}
        write_authpgsqlrc(lab.etc_dir, keys)
        lab.write_authdaemonrc(authmodulelist="authpgsql")
        lab.start_daemon()
        self.courier = AuthdaemonSource(str(lab.socket_path), remote_ip="")
        self.authkit = PgsqlSource.from_settings(authkit_settings(keys, default_options=defaultoptions))

    def rows(self) -> list:
        return self.pg.execute("SELECT * FROM passwd ORDER BY id", dbname=self.dbname)

    def lookups(self, name: str, service: str) -> "tuple | None":
        """``(authkit's, Courier's)`` accounts for ``name`` and ``service``, or
        None when Courier answers UnknownUser (asserting that authkit does too)."""
        try:
            theirs = self.courier.lookup(name, service)
        except UnknownUser:
            with pytest.raises(UnknownUser):
                self.authkit.lookup(name, service)
            return None
        return self.authkit.lookup(name, service), theirs

    def close(self) -> None:
        self.authkit.close()


def _verdict(source, *args) -> object:
    try:
        account = source.authenticate(*args)
    except Rejected:
        return "rejected"
    return account


@pytest.fixture
def pair(pg: PgLab, courier_lab_factory) -> Pair:
    dbname = f"courier{next(_counter)}"
    pg.create_courier_schema(dbname)
    for login, crypt, clear, _pw in _accounts():
        pg.add_account(dbname, id=login, crypt=crypt, clear=clear, uid=5000, gid=5000,
                       home=f"/home/vmail/{login}", name=f"User {login}, Room 1",
                       maildir=f"/home/vmail/{login}/Maildir", defaultdelivery="| /usr/bin/maildrop",
                       quota="1000000S", options="disableshared=0")
    pg.add_account(dbname, id="elsewhere@example.com", crypt=_hash("pw-else", "sha512-crypt"),
                   uid=5001, gid=5001, home="/home/vmail/else", server="mail2")
    pg.add_account(dbname, id="nohome@example.com", crypt=_hash("pw-nohome", "sha512-crypt"),
                   uid=5001, gid=5001, home="")
    pair = Pair(pg, courier_lab_factory(defaultoptions="disableshared=1,wbnodsn=1"), dbname, RC,
                defaultoptions="disableshared=1,wbnodsn=1")
    yield pair
    pair.close()


def test_pre_fields_equal_courier_authpgsql_for_every_account_and_service(pair: Pair) -> None:
    names = [login for login, *_ in _accounts()]
    names += ["sha512-crypt", "elsewhere@example.com", "nohome@example.com", "nobody@example.com",
              "nobody"]
    for name, service in itertools.product(names, ("imap", "pop3", "courier", "login")):
        both = pair.lookups(name, service)
        if both is None:
            continue
        ours, theirs = both
        assert ours == theirs, (name, service)
        assert ours.encrypted_password == theirs.encrypted_password, (name, service)
    # what the comparison covered: DEFAULT_DOMAIN, ADDRESS from the row, NAME cut,
    # DEFAULTOPTIONS merged, defaultdelivery for service courier, WHERE clause
    account = pair.authkit.lookup("sha512-crypt", "courier")
    assert account.address == "sha512-crypt@example.com"
    assert account.fullname == "User sha512-crypt@example.com"
    assert account.maildir == "| /usr/bin/maildrop"
    assert account.options == "disableshared=0,wbnodsn=1"
    assert pair.authkit.lookup("md5@example.com", "imap").maildir.endswith("/Maildir")
    for hidden in ("elsewhere@example.com", "nohome@example.com"):
        with pytest.raises(UnknownUser):
            pair.authkit.lookup(hidden)


def test_login_verdicts_equal_courier_for_every_format_and_service(pair: Pair) -> None:
    checked = 0
    for (login, _crypt, clear, password), service in itertools.product(_accounts(), ("imap", "pop3")):
        local = login.split("@")[0]
        for name in (login, local):
            for attempt in (password, password + "x", "x" + password, clear or "pw-clear", "pw-clear-loses"):
                theirs = _verdict(pair.courier, name, attempt.encode(), service)
                ours = _verdict(pair.authkit, name, attempt.encode(), service)
                assert ours == theirs, (name, attempt, service)
                if theirs != "rejected":
                    assert ours.encrypted_password == theirs.encrypted_password
                checked += 1
    assert checked > 100
    # the table's facts the comparison stands on
    assert _verdict(pair.authkit, "both", b"pw-clear-loses", "imap") == "rejected"
    assert _verdict(pair.authkit, "clearonly", b"pw-clear", "imap") != "rejected"
    with pytest.raises(BadPassword):
        pair.authkit.authenticate("nopassword", b"anything")
    with pytest.raises(UnknownUser):
        pair.authkit.authenticate("nobody", b"anything")
    assert _verdict(pair.courier, "elsewhere@example.com", b"pw-else", "imap") == "rejected"
    assert _verdict(pair.authkit, "elsewhere@example.com", b"pw-else", "imap") == "rejected"


def _cram_response(secret: str, challenge: bytes, algorithm: str) -> str:
    return hmac.new(secret.encode(), challenge, algorithm).hexdigest()


def test_cram_needs_the_clear_column_as_in_courier(pair: Pair) -> None:
    challenge = b"<1896.697170952@example.com>"
    for algorithm in ("md5", "sha1", "sha256"):
        for login, secret in (("clearonly", "pw-clear"), ("both", "pw-clear-loses"),
                              ("both", "pw-crypt-wins"), ("sha512-crypt", "pw-sha512-crypt"),
                              ("clearonly", "wrong"), ("nobody", "x")):
            response = _cram_response(secret, challenge, algorithm)
            verdicts = []
            for source in (pair.courier, pair.authkit):
                try:
                    verdicts.append(source.authenticate_cram(challenge, login, response, algorithm, "imap"))
                except Rejected:
                    verdicts.append("rejected")
            assert verdicts[0] == verdicts[1], (login, secret, algorithm)
    ok = pair.authkit.authenticate_cram(challenge, "clearonly",
                                        _cram_response("pw-clear", challenge, "md5"), "md5")
    assert ok.address == "clearonly@example.com"
    assert base64.b64encode(challenge)  # the challenge travels base64 to Courier


def test_password_changed_by_authkit_is_accepted_by_courier_and_the_reverse(pair: Pair) -> None:
    before = {row[0]: row for row in pair.rows()}
    account = pair.authkit.change_password("sha512-crypt", b"pw-sha512-crypt", b"new 'secret' \\%_", "imap")
    assert account.address == "sha512-crypt@example.com"
    assert _verdict(pair.courier, "sha512-crypt", b"new 'secret' \\%_", "imap") != "rejected"
    assert _verdict(pair.courier, "sha512-crypt", b"pw-sha512-crypt", "imap") == "rejected"
    after = {row[0]: row for row in pair.rows()}
    changed = after["sha512-crypt@example.com"]
    assert changed[1].startswith("$6$")              # hash_scheme (sha512-crypt)
    assert changed[2] == "new 'secret' \\%_"          # the clear column is configured
    assert {k: v for k, v in after.items() if k != changed[0]} == \
        {k: v for k, v in before.items() if k != changed[0]}

    # Courier's PASSWD (authtest -m): authkit accepts the result
    proc = pair.lab.authtest("-s", "imap", "md5-crypt@example.com", "pw-md5-crypt", "courier-new")
    assert proc.returncode == 0, proc.stderr
    assert _verdict(pair.authkit, "md5-crypt", b"courier-new", "imap") != "rejected"
    assert _verdict(pair.authkit, "md5-crypt", b"pw-md5-crypt", "imap") == "rejected"


def test_password_change_refusals_leave_the_table_alone(pair: Pair) -> None:
    before = pair.rows()
    with pytest.raises(BadPassword):
        pair.authkit.change_password("md5", b"wrong", b"whatever1")
    with pytest.raises(UnknownUser):
        pair.authkit.change_password("nobody", b"x", b"whatever1")
    with pytest.raises(BadPassword):
        pair.authkit.change_password("nopassword", b"anything", b"whatever1")
    with pytest.raises(UnknownUser):
        pair.authkit.change_password("elsewhere@example.com", b"pw-else", b"whatever1")
    with pytest.raises(PolicyRefused):
        pair.authkit.change_password("md5", b"pw-MD5", b"bad\0nul")
    with pytest.raises(PolicyRefused):
        pair.authkit.change_password("md5", b"pw-MD5", b"\xff\xfe")
    # issue 16: the uid policy, run inside the transaction after the old
    # password checked out (a wrong one is still BadPassword), rolls back
    seen = []

    def low_uid(account) -> None:  # noqa: ANN001
        seen.append(account.address)
        raise PolicyRefused("account uid below the minimum")

    with pytest.raises(BadPassword):
        pair.authkit.change_password("sha256-crypt", b"wrong", b"whatever1", check_account=low_uid)
    assert seen == []
    with pytest.raises(PolicyRefused):
        pair.authkit.change_password("sha256-crypt", b"pw-sha256-crypt", b"whatever1", check_account=low_uid)
    assert seen == ["sha256-crypt@example.com"]
    # Courier refuses the same ones
    for name, old in (("md5@example.com", "wrong"), ("nobody@example.com", "x"),
                      ("nopassword@example.com", "anything"), ("elsewhere@example.com", "pw-else")):
        assert pair.lab.authtest("-s", "imap", name, old, "whatever1").returncode != 0, name
    assert pair.rows() == before


def test_enumerate_equals_courier_authenumerate(pair: Pair) -> None:
    theirs = sorted(pair.courier.enumerate(), key=lambda a: a.address)
    ours = sorted(pair.authkit.enumerate(), key=lambda a: a.address)
    assert [(a.address, a.uid, a.gid, a.home, a.maildir) for a in ours] == \
        [(a.address, a.uid, a.gid, a.home, a.maildir) for a in theirs]
    names = {a.address for a in ours}
    assert "elsewhere@example.com" not in names and "nohome@example.com" not in names
    assert len(names) == len(_accounts())


# ------------------------------------------------------------ custom clauses

VMAIL_SCHEMA = """
CREATE TABLE domain (domain_name text PRIMARY KEY, uid int, gid int, path text, quota text);
CREATE TABLE popbox (local_part text, domain_name text REFERENCES domain, password_hash text,
                     clearpw text, mbox_name text, sharedgroup text,
                     PRIMARY KEY (local_part, domain_name))
"""

CUSTOM_RC = {
    # Courier's documented vmail-sql example (authpgsqlrc), on one line each
    "PGSQL_SELECT_CLAUSE": (
        "SELECT popbox.local_part || '@' || popbox.domain_name, popbox.password_hash, "
        "popbox.clearpw, domain.uid, domain.gid, domain.path || '/' || popbox.mbox_name, '', "
        "domain.quota, '', 'service=$(service)' FROM popbox, domain "
        "WHERE popbox.local_part = '$(local_part)' AND popbox.domain_name = '$(domain)' "
        "AND popbox.domain_name = domain.domain_name"),
    "PGSQL_CHPASS_CLAUSE": (
        "UPDATE popbox SET clearpw='$(newpass)', password_hash='$(newpass_crypt)' "
        "WHERE local_part='$(local_part)' AND domain_name='$(domain)'"),
    "PGSQL_ENUMERATE_CLAUSE": (
        "SELECT popbox.local_part || '@' || popbox.domain_name, domain.uid, domain.gid, "
        "domain.path || '/' || popbox.mbox_name, '', 'sharedgroup=' || sharedgroup "
        "FROM popbox, domain WHERE popbox.domain_name = domain.domain_name"),
    "DEFAULT_DOMAIN": "example.org",
}


@pytest.fixture
def custom_pair(pg: PgLab, courier_lab_factory) -> Pair:
    dbname = f"vmail{next(_counter)}"
    pg.create_database(dbname)
    for statement in VMAIL_SCHEMA.split(";"):
        pg.execute(statement, dbname=dbname)
    pg.execute("INSERT INTO domain VALUES ('example.org', 7000, 7000, '/var/vmail/example.org', '5000S'),"
               " ('other.net', 7001, 7001, '/var/vmail/other.net', '')", dbname=dbname)
    for local, domain, crypt, clear in (
            ("ann", "example.org", _hash("pw-ann", "sha512-crypt"), ""),
            ("ann", "other.net", _hash("pw-ann-other", "SSHA"), ""),
            ("carl", "example.org", "", "pw-carl")):
        pg.execute("INSERT INTO popbox VALUES (%s, %s, %s, %s, %s, 'staff')",
                   (local, domain, crypt, clear, local), dbname=dbname)
    pair = Pair(pg, courier_lab_factory(), dbname, CUSTOM_RC)
    yield pair
    pair.close()


def test_custom_select_clause_gives_courier_verdicts_and_fields(custom_pair: Pair) -> None:
    pair = custom_pair
    for name, service in itertools.product(
            ("ann", "ann@example.org", "ann@other.net", "carl", "nobody", "ann@nowhere"),
            ("imap", "pop3")):
        both = pair.lookups(name, service)
        if both is None:
            continue
        ours, theirs = both
        assert ours == theirs
        assert theirs.options == f"service={service}"
        for password in (b"pw-ann", b"pw-ann-other", b"pw-carl", b"nope"):
            assert _verdict(pair.authkit, name, password, service) == \
                _verdict(pair.courier, name, password, service), (name, password, service)
    assert pair.authkit.lookup("ann").home == "/var/vmail/example.org/ann"
    assert pair.authkit.lookup("ann@other.net").uid == 7001


def test_custom_chpass_clause_changes_only_that_mailbox(custom_pair: Pair) -> None:
    pair = custom_pair
    rows = lambda: pair.pg.execute("SELECT * FROM popbox ORDER BY 1, 2", dbname=pair.dbname)  # noqa: E731
    before = rows()
    pair.authkit.change_password("ann", b"pw-ann", b"o'brien\\100%", "imap")
    assert _verdict(pair.courier, "ann", b"o'brien\\100%", "imap") != "rejected"
    assert _verdict(pair.courier, "ann@other.net", b"pw-ann-other", "imap") != "rejected"
    after = rows()
    assert [r for r in after if r[:2] != ("ann", "example.org")] == \
        [r for r in before if r[:2] != ("ann", "example.org")]
    assert [r[3] for r in after if r[:2] == ("ann", "example.org")] == ["o'brien\\100%"]
    # Courier's own change through the same clause; authkit accepts the result
    assert pair.lab.authtest("-s", "imap", "carl", "pw-carl", "carl-new").returncode == 0
    assert _verdict(pair.authkit, "carl", b"carl-new", "imap") != "rejected"


def test_custom_enumerate_clause_equals_courier(custom_pair: Pair) -> None:
    pair = custom_pair
    theirs = sorted((a.address, a.uid, a.home, a.options) for a in pair.courier.enumerate())
    ours = sorted((a.address, a.uid, a.home, a.options) for a in pair.authkit.enumerate())
    assert ours == theirs
    assert len(ours) == 3 and all(o[3] == "sharedgroup=staff" for o in ours)


# ------------------------------------------------------------------ injection

TRICKY = {
    "o'hara@example.com": "it's 'quoted'",
    "back\\slash@example.com": "back\\slash\\",
    "100%_off@example.com": "50%_pass%",
    "jürgen@example.com": "pässwörd€",
    "semi;colon@example.com": "'; DROP TABLE passwd; --",
}

PROBES = ["o'hara@example.com' OR '1'='1", "%@example.com", "_ohn@example.com", "100%",
          "back\\\\slash@example.com", "o''hara@example.com", "jurgen@example.com",
          "' OR 1=1 --", "%", "_", "alice@example.com\0", "o'hara@example.com\0x"]


@pytest.fixture
def tricky_pair(pg: PgLab, courier_lab_factory) -> Pair:
    dbname = f"tricky{next(_counter)}"
    pg.create_courier_schema(dbname)
    for login, password in TRICKY.items():
        pg.add_account(dbname, id=login, crypt=_hash(password, "sha512-crypt"), clear=password,
                       uid=6000, gid=6000, home=f"/home/{login}")
    pg.add_account(dbname, id="alice@example.com", crypt=_hash("alice-pw", "sha512-crypt"),
                   uid=6001, gid=6001, home="/home/alice")
    pair = Pair(pg, courier_lab_factory(), dbname, RC)
    yield pair
    pair.close()


def test_quotes_backslashes_wildcards_and_non_ascii_only_find_their_own_row(tricky_pair: Pair) -> None:
    pair = tricky_pair
    for login, password in TRICKY.items():
        assert pair.authkit.lookup(login).address == login
        assert pair.authkit.authenticate(login, password.encode()).address == login
        assert _verdict(pair.courier, login, password.encode(), "imap") != "rejected", login
        with pytest.raises(BadPassword):
            pair.authkit.authenticate(login, b"alice-pw")
    for probe in PROBES:
        with pytest.raises(UnknownUser):
            pair.authkit.lookup(probe)
        for password in list(TRICKY.values()) + ["alice-pw"]:
            with pytest.raises(Rejected):
                pair.authkit.authenticate(probe, password.encode())
        if "\0" not in probe:  # the authdaemond protocol cannot carry a NUL
            with pytest.raises(UnknownUser):
                pair.courier.lookup(probe)
    with pytest.raises(BadPassword):
        pair.authkit.authenticate("alice@example.com", b"alice-pw\0")
    with pytest.raises(UnknownUser):
        pair.authkit.change_password("%@example.com", b"alice-pw", b"newpass1")


def test_tricky_new_passwords_are_stored_exactly_and_touch_one_row(tricky_pair: Pair) -> None:
    pair = tricky_pair
    before = {row[0]: row for row in pair.rows()}
    for login, old in TRICKY.items():
        new = "new " + old[::-1] + " ' \\ % _ ü"
        pair.authkit.change_password(login, old.encode(), new.encode())
        assert pair.authkit.authenticate(login, new.encode()).address == login
        assert _verdict(pair.courier, login, new.encode(), "imap") != "rejected", login
        row = {r[0]: r for r in pair.rows()}[login]
        assert row[2] == new
    after = {row[0]: row for row in pair.rows()}
    assert after["alice@example.com"] == before["alice@example.com"]
    assert set(after) == set(before)


def test_a_uid_that_is_not_a_number_is_no_account_anywhere(pg: PgLab, courier_lab_factory) -> None:
    """Courier: no reply to PRE (temporary), FAIL to a login; authkit: a
    temporary failure for both (never uid 0)."""
    from authkit.errors import TemporaryFailure

    dbname = f"baduid{next(_counter)}"
    pg.create_courier_schema(dbname)
    pg.add_account(dbname, id="alice@example.com", crypt=_hash("alice-pw", "sha512-crypt"),
                   uid=5000, gid=5000, home="/home/alice")
    rc = {"PGSQL_SELECT_CLAUSE": "SELECT id, crypt, '', 'abc', gid, home FROM passwd "
                                 "WHERE id = '$(local_part)@$(domain)'",
          "PGSQL_USER_TABLE": "passwd", "PGSQL_CRYPT_PWFIELD": "crypt", "DEFAULT_DOMAIN": "example.com"}
    pair = Pair(pg, courier_lab_factory(), dbname, rc)
    try:
        with pytest.raises(TemporaryFailure):
            pair.courier.lookup("alice")
        with pytest.raises(BadPassword):
            pair.courier.authenticate("alice", b"alice-pw")
        for call in (lambda: pair.authkit.lookup("alice"),
                     lambda: pair.authkit.authenticate("alice", b"alice-pw")):
            with pytest.raises(TemporaryFailure, match="not a decimal number"):
                call()
    finally:
        pair.close()
