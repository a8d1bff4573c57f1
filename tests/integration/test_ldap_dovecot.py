"""courierpasswd under Dovecot 2.3's checkpassword passdb, with ``source = ldap``:
Dovecot runs bin/courierpasswd (as the ``dovecot`` user, ``/usr/bin/python3
-IS``), which reaches the slapd directory through authkitd's socket.  The Dovecot
set-up is test_courierpasswd_dovecot's; only the account source differs.

A good password is ``OK``; a wrong one or an unknown user
``[AUTHENTICATIONFAILED]``; with authkitd gone, ``[UNAVAILABLE]`` (exit 111),
never a rejection; ``doveadm auth lookup`` (AUTHORIZED=1) finds a directory
account."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import ldapdirectory as d
import slapdlab
import test_courierpasswd_dovecot as dv

pytestmark = pytest.mark.integration

USERS = ["ssha@example.com", "crypt6@example.com", "yescrypt@example.com"]


@pytest.fixture
def ldap_dovecot(tmp_path):
    reasons = dv._missing() + slapdlab.missing_requirements()
    if reasons:
        pytest.skip("; ".join(reasons))
    Authkitd = pytest.importorskip("authkitdlab", reason="authkitd not in this tree").Authkitd
    lab = Path(tempfile.mkdtemp(prefix="ldap-dovecot-", dir="/tmp"))
    slapd = authkitd = None
    try:
        os.chmod(lab, 0o755)
        slapd = slapdlab.SlapdLab(tmp_path / "slapd")
        slapd.start()
        slapd.populate(d.people())
        for name in USERS:  # homes under the mail root, for courierpasswd's chdir
            home = lab / ("home/vmail/" + name.split("@")[0])
            home.mkdir(parents=True)
            for part in (home, home.parent, home.parent.parent):
                part.chmod(0o755)
        values = d.settings([slapd.uri], LDAP_MAILROOT=str(lab))
        (lab / "akd").mkdir(mode=0o755)
        socket_path = lab / "akd" / "socket"
        authkitd = Authkitd(tmp_path / "authkitd", socket_path,
                            d.authkit_conf(values, failure_delay="0", workers="4"))
        authkitd.start()
        # what courierpasswd reads: no LDAP password in it, only the socket
        (lab / "authkit.conf").write_text(f"source = ldap\nauthdaemon_socket = {socket_path}\n")
        os.chmod(lab / "authkit.conf", 0o644)
        (lab / "mail").mkdir(mode=0o1777)
        os.chmod(lab / "mail", 0o1777)
        with dv.running_dovecot(lab) as (port, conf):
            yield {"port": port, "lab": lab, "conf": conf, "log": lab / "dovecot.log",
                   "authkitd": authkitd}
    finally:
        if authkitd is not None:
            authkitd.stop()
        if slapd is not None:
            slapd.close()
        shutil.rmtree(lab, ignore_errors=True)


@pytest.mark.parametrize("how", dv.METHODS)
def test_directory_accounts_log_in_through_authkitd(ldap_dovecot: dict, how: str) -> None:
    for name in USERS:
        typ, text = dv._login(ldap_dovecot, how, name, d.PASSWORDS[name])
        assert typ == "OK", f"{name}: {text}\n{dv._read(ldap_dovecot['log'])}"
    typ, text = dv._login(ldap_dovecot, how, USERS[0], "Wrong-Pass-9")
    assert typ == "NO" and "AUTHENTICATIONFAILED" in text and "UNAVAILABLE" not in text, text


def test_unknown_and_wildcard_users_fail_and_authkitd_down_is_unavailable(ldap_dovecot: dict) -> None:
    for name in ("nobody@example.com", "*", "ssha*"):
        typ, text = dv._login(ldap_dovecot, "LOGIN", name, "Ssha-Pass-1")
        assert typ == "NO" and "AUTHENTICATIONFAILED" in text, (name, text)
    found = subprocess.run([dv.DOVEADM, "-c", str(ldap_dovecot["conf"]), "auth", "lookup", USERS[0]],
                           capture_output=True, timeout=60, text=True)
    assert found.returncode == 0 and USERS[0] in found.stdout, found.stdout + found.stderr
    ldap_dovecot["authkitd"].stop()
    typ, text = dv._login(ldap_dovecot, "LOGIN", USERS[0], d.PASSWORDS[USERS[0]])
    assert typ == "NO" and "UNAVAILABLE" in text, text
