"""authkitd serving the PostgreSQL source (``source = pgsql``) on a CourierLab's
socket, i.e. Courier's compiled-in /run/courier/authdaemon/socket inside the lab:

* Courier's own authtest and authenumerate get the same answers from authkitd
  as from Courier's authdaemond with authpgsql on the same database;
* courierpasswd (bin/ launcher, ``/usr/bin/python3 -IS``) with a config naming
  ``source = pgsql`` reaches the database through authkitd, and so do
  ``authkit test`` and ``authkit enumerate``;
* a courierpassd change through authkitd is then accepted by Courier's authpgsql;
* PostgreSQL stopped under a login in flight: courierpasswd exits 111, and the
  next logins after the restart exit 0.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from pglab import (SLOW_LOGIN_FUNCTION, PgLab, authkit_conf_text, missing_requirements,  # noqa: E402
                   write_authpgsqlrc)

from authkit.schemes import make_password_hash  # noqa: E402

pytestmark = pytest.mark.integration


ACCOUNTS = [  # login, crypt, clear, password
    ("alice@example.com", make_password_hash(b"Alice-Pass-1"), "", "Alice-Pass-1"),
    ("bob@example.com", make_password_hash(b"Bob-Pass-22", "SSHA"), "", "Bob-Pass-22"),
    ("carol@example.com", "", "Carol-Clear-3", "Carol-Clear-3"),
    ("dave@example.com", make_password_hash(b"Dave-Pass-4", "md5-crypt"), "", "Dave-Pass-4"),
    ("slow@example.com", make_password_hash(b"Slow-Pass-5"), "", "Slow-Pass-5"),
]


@pytest.fixture
def setup(courier_lab_factory):
    reasons = missing_requirements()
    if reasons:
        pytest.skip("PgLab unavailable: " + "; ".join(reasons))
    Authkitd = pytest.importorskip("authkitdlab", reason="authkitd not in this tree yet").Authkitd

    with PgLab() as pg:
        lab = courier_lab_factory()
        pg.create_courier_schema("mail")
        pg.execute(SLOW_LOGIN_FUNCTION, dbname="mail")
        for login, crypt, clear, _pw in ACCOUNTS:
            # courierpasswd becomes uid 5000 and changes into it: not under the
            # 0700 tmp_path, but in the cluster's 0755 directory (removed with it)
            home = pg.root / "home" / login
            home.mkdir(parents=True)
            home.chmod(0o755)
            home.parent.chmod(0o755)
            pg.add_account("mail", id=login, crypt=crypt, clear=clear, uid=5000, gid=5000,
                           home=str(home), name=f"{login.split('@')[0].title()}, x",
                           maildir=f"{home}/Maildir", options="disableshared=1")
        keys = {"PGSQL_CONNECTION": pg.conninfo("mail"), "PGSQL_USER_TABLE": "passwd",
                "PGSQL_CRYPT_PWFIELD": "crypt", "PGSQL_CLEAR_PWFIELD": "clear",
                "PGSQL_NAME_FIELD": "name", "PGSQL_MAILDIR_FIELD": "maildir",
                "PGSQL_AUXOPTIONS_FIELD": "options", "PGSQL_WHERE_CLAUSE": "slow_for(id)",
                # the listing must not sleep on the slow account
                "PGSQL_ENUMERATE_CLAUSE": "SELECT id, uid, gid, home, maildir, options FROM passwd",
                "DEFAULT_DOMAIN": "example.com"}
        write_authpgsqlrc(lab.etc_dir, keys)
        lab.write_authdaemonrc(authmodulelist="authpgsql")
        conf = lab.root / "authkit.conf"
        conf.write_text(authkit_conf_text(keys, authdaemon_socket=lab.socket_path, bad_pass_delay=0))
        authkitd = Authkitd(lab.root / "authkitd", lab.socket_path,
                            authkit_conf_text(keys, failure_delay=0, workers=4))
        try:
            yield pg, lab, authkitd, conf
        finally:
            authkitd.stop()


def _authtest_cases() -> list[tuple[str, ...]]:
    cases = []
    for login, _crypt, _clear, password in ACCOUNTS:
        if login.startswith("slow"):
            continue
        local = login.split("@")[0]
        for service in ("imap", "pop3"):
            cases += [("-s", service, login, password), ("-s", service, local, password),
                      ("-s", service, login, password + "x"), ("-s", service, login)]
    cases += [("-s", "imap", "nobody@example.com", "x"), ("-s", "imap", "nobody@example.com")]
    return cases


def _raw_pre(lab) -> list[bytes]:
    """Raw replies to PRE for every account (by both names), an unknown one, and
    module "authpgsql" named; PASSWD2 (Courier's clear password) left out."""
    replies = []
    for login, *_ in ACCOUNTS[:4]:  # not the slow one
        for name in (login, login.split("@")[0], "nobody"):
            for module in (b".", b"authpgsql"):
                reply = lab.request(b"PRE " + module + b" imap " + name.encode() + b"\n")
                replies.append(b"".join(line for line in reply.splitlines(keepends=True)
                                        if not line.startswith(b"PASSWD2=")))
    return replies


def _cram_verdicts(lab) -> list[object]:
    """CRAM-MD5/SHA1/SHA256 logins (AUTH cram-*) through the lab's socket."""
    import hmac

    from authkit.authdaemon.source import AuthdaemonSource
    from authkit.errors import Rejected

    client = AuthdaemonSource(str(lab.socket_path), remote_ip="")
    challenge = b"<42.1700000000@example.com>"
    verdicts = []
    for algorithm in ("md5", "sha1", "sha256"):
        for name, secret in (("carol", "Carol-Clear-3"), ("carol@example.com", "wrong"),
                             ("alice", "Alice-Pass-1"), ("nobody", "x")):
            response = hmac.new(secret.encode(), challenge, algorithm).hexdigest()
            try:
                verdicts.append(client.authenticate_cram(challenge, name, response, algorithm, "imap"))
            except Rejected:
                verdicts.append("rejected")
    return verdicts


def _authtest_all(lab) -> list[tuple[int, bytes]]:
    return [(p.returncode, p.stdout) for p in (lab.authtest(*case) for case in _authtest_cases())]


def test_courier_authtest_gets_courier_authpgsql_answers_from_authkitd(setup) -> None:
    pg, lab, authkitd, _conf = setup
    authkitd.start()
    ours = _authtest_all(lab)
    our_listing = lab.authenumerate()
    our_pre = _raw_pre(lab)
    our_cram = _cram_verdicts(lab)
    authkitd.stop()
    lab.start_daemon()
    theirs = _authtest_all(lab)
    their_listing = lab.authenumerate()
    their_pre = _raw_pre(lab)
    their_cram = _cram_verdicts(lab)
    lab.stop_daemon()
    # verdicts and the account; authkitd's CRAM reply follows authuserdb's
    # (no NAME, QUOTA, PASSWD) while authpgsql's carries them: noted, not ours
    identity = lambda v: v if v == "rejected" else (v.address, v.uid, v.gid, v.home, v.maildir)  # noqa: E731
    assert [identity(v) for v in our_cram] == [identity(v) for v in their_cram]
    assert [v == "rejected" for v in our_cram] == [False, True, True, True] * 3
    assert our_pre == their_pre
    assert sum(reply.endswith(b"\n.\n") for reply in our_pre) == 2 * 2 * 4
    assert our_listing.returncode == their_listing.returncode == 0
    assert sorted(our_listing.stdout.splitlines()) == sorted(their_listing.stdout.splitlines())
    assert len(our_listing.stdout.splitlines()) == len(ACCOUNTS)
    accepted = 0
    for case, (our_code, our_out), (their_code, their_out) in zip(_authtest_cases(), ours, theirs):
        assert our_code == their_code, (case, our_out, their_out)
        if len(case) == 3 and b"carol" in case[2].encode():
            # PRE without a password: Courier prints the clear column (PASSWD2);
            # authkitd never hands it out
            assert b"Cleartext Password: Carol-Clear-3" in their_out
            assert b"Carol-Clear-3" not in our_out
            assert our_out == their_out.replace(b"Carol-Clear-3", b"(none)")
            continue
        assert our_out == their_out, case
        accepted += our_code == 0 and len(case) == 4
    assert accepted == 16  # 4 accounts x 2 services x (full name, local part)


def _courierpasswd(conf: Path, user: str, password: str, service: str = "imap") -> subprocess.CompletedProcess:
    data = user.encode() + b"\0" + password.encode() + b"\0\0"
    return subprocess.run(
        ["/bin/sh", "-c", 'exec "$@" 3<&0 </dev/null', "sh", str(REPO / "bin" / "courierpasswd"),
         "--stderr", "-s", service, "--", "/bin/true"],
        input=data, capture_output=True, timeout=60, env={"PATH": "/usr/bin:/bin", "AUTHKIT_CONFIG": str(conf)})


def test_courierpasswd_with_source_pgsql_logs_in_through_authkitd(setup) -> None:
    _pg, _lab, authkitd, conf = setup
    authkitd.start()
    for login, _crypt, _clear, password in ACCOUNTS[:4]:
        assert _courierpasswd(conf, login, password).returncode == 0, login
        assert _courierpasswd(conf, login.split("@")[0], password).returncode == 0, login
        assert _courierpasswd(conf, login, password + "x").returncode == 1, login
    assert _courierpasswd(conf, "nobody@example.com", "x").returncode == 1
    proc = _courierpasswd(conf, "alice@example.com", "Alice-Pass-1")
    assert proc.stdout == b""
    authkitd.stop()
    assert _courierpasswd(conf, "alice@example.com", "Alice-Pass-1").returncode == 111


def test_authkit_admin_command_with_source_pgsql_goes_through_authkitd(setup) -> None:
    _pg, _lab, authkitd, conf = setup
    authkitd.start()

    def admin(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(REPO / "bin" / "authkit"), "--config", str(conf), *args],
                              capture_output=True, timeout=60, env={"PATH": "/usr/bin:/bin"})

    ok = admin("test", "-s", "imap", "alice", "Alice-Pass-1")
    assert ok.returncode == 0, ok.stderr
    assert b"alice@example.com" in ok.stdout
    assert admin("test", "-s", "imap", "alice", "wrong").returncode == 1
    listing = admin("enumerate")
    assert listing.returncode == 0, listing.stderr
    assert sorted(line.split(b"\t")[0] for line in listing.stdout.splitlines() if b"@" in line) == \
        sorted(login.encode() for login, *_ in ACCOUNTS)
    authkitd.stop()
    assert admin("test", "-s", "imap", "alice", "Alice-Pass-1").returncode == 111


def test_courierpassd_change_through_authkitd_is_accepted_by_courier_authpgsql(setup) -> None:
    pg, lab, authkitd, conf = setup
    authkitd.start()
    script = b"user dave@example.com\r\npass Dave-Pass-4\r\nnewpass Dave-New-Pass-5\r\nquit\r\n"
    proc = subprocess.run([str(REPO / "bin" / "courierpassd"), "--config", str(conf), "--stderr"],
                          input=script, capture_output=True, timeout=60)
    assert proc.stdout.endswith(b"200 Password changed\r\n200 Bye\r\n"), (proc.stdout, proc.stderr)
    assert proc.returncode == 0
    stored = pg.execute("SELECT crypt FROM passwd WHERE id = 'dave@example.com'", dbname="mail")[0][0]
    assert stored.startswith("$6$")  # hash_scheme, not Courier's kept $1$
    authkitd.stop()
    lab.start_daemon()  # Courier's authdaemond + authpgsql on the same database
    assert lab.authtest("-s", "imap", "dave@example.com", "Dave-New-Pass-5").returncode == 0
    assert lab.authtest("-s", "imap", "dave@example.com", "Dave-Pass-4").returncode != 0
    assert lab.authtest("-s", "imap", "alice@example.com", "Alice-Pass-1").returncode == 0


def test_server_restart_mid_run_gives_111_in_flight_and_the_next_logins_succeed(setup) -> None:
    pg, _lab, authkitd, conf = setup
    authkitd.start()
    for _ in range(4):  # authkitd's pool now holds connections the restart kills
        assert _courierpasswd(conf, "alice", "Alice-Pass-1").returncode == 0
    result: dict = {}
    flight = threading.Thread(target=lambda: result.update(proc=_courierpasswd(conf, "slow", "Slow-Pass-5")))
    flight.start()
    pg.wait_for(lambda: pg.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'",
                                   dbname="mail")[0][0] == 1, what="a login in flight")
    pg.stop("fast")
    flight.join(60)
    assert result["proc"].returncode == 111, result["proc"].stderr
    assert _courierpasswd(conf, "alice", "Alice-Pass-1").returncode == 111  # down
    pg.start()
    for login, _crypt, _clear, password in ACCOUNTS[:4]:
        assert _courierpasswd(conf, login, password).returncode == 0, login
    assert _courierpasswd(conf, "alice", "wrong").returncode == 1
