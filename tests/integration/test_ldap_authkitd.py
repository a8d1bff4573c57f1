"""authkitd serving the LDAP source (``source = ldap``) on a CourierLab's socket,
i.e. Courier's compiled-in /run/courier/authdaemon/socket inside the lab:

* Courier's own authtest and authenumerate get from authkitd the answers that
  Courier's authdaemond with authmodulelist="authldap" gives on the same slapd
  (LDAP_AUTHBIND off and on; LDAP_MAILROOT in use);
* courierpasswd (bin/ launcher, ``/usr/bin/python3 -IS``) and ``authkit
  enumerate`` with a config naming ``source = ldap`` reach the directory
  through authkitd; with authkitd gone, 111;
* a password change through courierpassd (via authkitd) is then accepted by
  Courier's authldap.

Differences asserted where they are: Courier prints the clear password
(PASSWD2) where authkitd never hands it out; ENUMERATE applies LDAP_MAILROOT
in authkit (Courier lists the relative home).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import ldapdirectory as d
import slapdlab

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

#: accounts courierpasswd logs in as (their homes exist under the mail root)
LOGIN_USERS = ["ssha@example.com", "crypt6@example.com", "yescrypt@example.com",
               "sha512@example.com", "clear@example.com", "rich@example.com"]


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory):
    yield from d.populated_slapd(tmp_path_factory)


@pytest.fixture(scope="module")
def mailroot():
    """A mail root outside pytest's 0700 tmp tree: courierpasswd changes to the
    account's uid and into its home."""
    root = Path(tempfile.mkdtemp(prefix="authkit-mailroot-", dir="/tmp"))
    root.chmod(0o755)
    for name in LOGIN_USERS:
        home = root / ("home/vmail/" + name.split("@")[0])
        home.mkdir(parents=True)
        for part in (home, home.parent, home.parent.parent):
            part.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=[False, True], ids=["search", "authbind"])
def setup(request, slapd, mailroot, courier_lab):
    Authkitd = pytest.importorskip("authkitdlab", reason="authkitd not in this tree").Authkitd
    values = d.settings([slapd.uri], authbind=request.param, LDAP_MAILROOT=str(mailroot))
    rc = courier_lab.etc_dir / "authldaprc"
    rc.write_text(d.authldaprc(values))
    rc.chmod(0o640)
    courier_lab.write_authdaemonrc(authmodulelist="authldap")
    conf = courier_lab.root / "authkit.conf"
    conf.write_text(d.authkit_conf(values, authdaemon_socket=str(courier_lab.socket_path),
                                   bad_pass_delay="0"))
    authkitd = Authkitd(courier_lab.root / "authkitd", courier_lab.socket_path,
                        d.authkit_conf(values, failure_delay="0", workers="4"))
    try:
        yield request.param, courier_lab, authkitd, conf, slapd
    finally:
        authkitd.stop()


def _authtest_cases() -> "list[tuple[str, ...]]":
    cases = []
    for name, password in d.PASSWORDS.items():
        if any(c in name for c in "*()\\"):
            continue  # Courier answers with the escaped ADDRESS (see test_ldap_courier)
        for service in ("imap", "pop3"):
            cases += [("-s", service, name, password), ("-s", service, name, password + "x"),
                      ("-s", service, name)]
    cases += [("-s", "imap", "nobody@example.com", "x"), ("-s", "imap", "nobody@example.com"),
              ("-s", "imap", d.NO_PASSWORD, "x"), ("-s", "courier", "rich@example.com")]
    return cases


def _authtest_all(lab) -> "list[tuple[int, bytes]]":
    return [(p.returncode, p.stdout) for p in (lab.authtest(*case) for case in _authtest_cases())]


def test_courier_authtest_and_authenumerate_get_authldap_answers_from_authkitd(setup) -> None:
    authbind, lab, authkitd, conf, _slapd = setup
    authkitd.start()
    ours = _authtest_all(lab)
    our_listing = lab.authenumerate()
    authkitd.stop()
    lab.start_daemon()
    theirs = _authtest_all(lab)
    their_listing = lab.authenumerate()
    lab.stop_daemon()
    accepted = 0
    for case, (our_code, our_out), (their_code, their_out) in zip(_authtest_cases(), ours, theirs):
        if case[2] == "smd5@example.com" and len(case) == 4 and not authbind and not case[3].endswith("x"):
            assert (our_code, their_code) == (0, 1), (our_out, their_out)  # Courier has no {SMD5}
            continue
        assert our_code == their_code, (case, our_out, their_out)
        accepted += our_code == 0 and len(case) == 4 and case[3] == d.PASSWORDS.get(case[2])
        if case[2] in ("clear@example.com", "both@example.com"):
            # Courier shows the clear password attribute (PASSWD2) on a lookup;
            # authkitd never hands the stored clear password out
            def cleartext(out: bytes) -> "list[bytes]":
                return [line for line in out.splitlines() if b"Cleartext Password:" in line]
            if len(case) == 3:
                assert b"Cleartext Password: " + d.PASSWORDS[case[2]].encode() in their_out
                assert d.PASSWORDS[case[2]].encode() not in our_out
            drop = lambda out: [line for line in out.splitlines() if line not in cleartext(out)]  # noqa: E731
            assert drop(our_out) == drop(their_out), case
            continue
        assert our_out.splitlines() == their_out.splitlines(), case
    # every account in both services, but the three escaped names; and {SMD5}
    # only under authbind (slapd checks it, Courier cannot); clear@ and both@
    # only without it (the bind uses userPassword: none / another password)
    refused = {"smd5@example.com"} if not authbind else {"clear@example.com", "both@example.com"}
    assert accepted == 2 * (len(d.PASSWORDS) - 3 - len(refused))
    assert our_listing.returncode == their_listing.returncode == 0
    # Courier lists the home as stored; authkit prefixes LDAP_MAILROOT, as for a login
    root = _conf_mailroot(conf)
    theirs_rooted = sorted(line.replace(b"\t/home/vmail/", b"\t" + root.encode() + b"//home/vmail/", 1)
                           for line in their_listing.stdout.splitlines())
    assert sorted(our_listing.stdout.splitlines()) == theirs_rooted
    assert len(theirs_rooted) == len(d.PASSWORDS) + 1  # every mail value, no uid 0, nopw too


def _conf_mailroot(conf: Path) -> str:
    for line in conf.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "ldap_mailroot":
            return value.strip()
    raise AssertionError("no ldap_mailroot")


def _courierpasswd(conf: Path, user: str, password: str, service: str = "imap") -> subprocess.CompletedProcess:
    data = user.encode() + b"\0" + password.encode() + b"\0\0"
    return subprocess.run(
        ["/bin/sh", "-c", 'exec "$@" 3<&0 </dev/null', "sh", str(REPO / "bin" / "courierpasswd"),
         "--stderr", "-s", service, "--", "/bin/true"],
        input=data, capture_output=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "AUTHKIT_CONFIG": str(conf)})


def test_courierpasswd_and_authkit_enumerate_with_source_ldap_go_through_authkitd(setup) -> None:
    authbind, _lab, authkitd, conf, _slapd = setup
    authkitd.start()
    for name in LOGIN_USERS:
        if authbind and name == "clear@example.com":
            continue  # no userPassword: the directory refuses the bind
        password = d.PASSWORDS[name]
        proc = _courierpasswd(conf, name, password)
        assert proc.returncode == 0, (name, proc.stderr)
        assert proc.stdout == b""
        assert _courierpasswd(conf, name, password + "x").returncode == 1, name
    assert _courierpasswd(conf, "nobody@example.com", "x").returncode == 1
    assert _courierpasswd(conf, "*", "Ssha-Pass-1").returncode == 1
    listing = subprocess.run([str(REPO / "bin" / "authkit"), "--config", str(conf), "enumerate"],
                             capture_output=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert listing.returncode == 0, listing.stderr
    names = {line.split(b"\t")[0].decode() for line in listing.stdout.splitlines()}
    assert set(d.PASSWORDS) | {d.NO_PASSWORD} == names
    authkitd.stop()
    assert _courierpasswd(conf, "ssha@example.com", "Ssha-Pass-1").returncode == 111


def test_courierpassd_change_through_authkitd_is_accepted_by_courier_authldap(setup) -> None:
    authbind, lab, authkitd, conf, slapd = setup
    dn = f"uid=crypt6,{slapdlab.PEOPLE}"
    saved = slapd.get(dn, "userPassword")[0]
    authkitd.start()
    try:
        script = b"user crypt6@example.com\r\npass Crypt6-Pass-1\r\nnewpass Crypt6-Via-Passd-2\r\nquit\r\n"
        proc = subprocess.run([str(REPO / "bin" / "courierpassd"), "--config", str(conf), "--stderr"],
                              input=script, capture_output=True, timeout=60)
        assert proc.stdout.endswith(b"200 Password changed\r\n200 Bye\r\n"), (proc.stdout, proc.stderr)
        assert slapd.get(dn, "userPassword")[0].startswith("{CRYPT}$6$")  # hash_scheme, no downgrade
        authkitd.stop()
        lab.start_daemon()  # Courier's authdaemond + authldap on the same directory
        assert lab.authtest("-s", "imap", "crypt6@example.com", "Crypt6-Via-Passd-2").returncode == 0
        assert lab.authtest("-s", "imap", "crypt6@example.com", "Crypt6-Pass-1").returncode != 0
        lab.stop_daemon()
    finally:
        slapd.set_password(dn, "userPassword", saved)
