"""courierpasswd under qpsmtpd's auth_checkpassword plugin (driven by swaks),
with ``source = ldap``: the checkpw wrapper runs bin/courierpasswd with a config
naming the LDAP source, which it reaches through authkitd's socket.  The qpsmtpd
set-up is test_courierpasswd_qpsmtpd's; only the account source differs.

AUTH PLAIN/LOGIN with a directory password: 235; a wrong one or an unknown
user: 535 (exit 1); with authkitd gone the plugin sees exit 111 (a temporary
failure), never 1.  Nothing but SMTP replies reaches the client's stream."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

import ldapdirectory as d
import slapdlab
import test_courierpasswd_qpsmtpd as qp

pytestmark = pytest.mark.integration

USER = "crypt6@example.com"


@pytest.fixture
def ldap_qpsmtpd(tmp_path):
    reasons = qp._missing() + slapdlab.missing_requirements()
    if reasons:
        pytest.skip("; ".join(reasons))
    Authkitd = pytest.importorskip("authkitdlab", reason="authkitd not in this tree").Authkitd
    lab = Path(tempfile.mkdtemp(prefix="ldap-qpsmtpd-", dir="/tmp"))
    slapd = authkitd = server = None
    try:
        os.chmod(lab, 0o755)
        slapd = slapdlab.SlapdLab(tmp_path / "slapd")
        slapd.start()
        slapd.populate(d.people())
        home = lab / "root/home/vmail/crypt6"
        home.mkdir(parents=True)
        for part in (home, *list(home.parents)[:3]):
            part.chmod(0o755)
        values = d.settings([slapd.uri], LDAP_MAILROOT=str(lab / "root"))
        (lab / "akd").mkdir(mode=0o755)
        socket_path = lab / "akd" / "socket"
        authkitd = Authkitd(tmp_path / "authkitd", socket_path,
                            d.authkit_conf(values, failure_delay="0", workers="4"))
        authkitd.start()
        conf = lab / "authkit.conf"
        conf.write_text(f"source = ldap\nauthdaemon_socket = {socket_path}\n")
        conf.chmod(0o644)
        wrapper = lab / "courierpasswd-ldap"
        wrapper.write_text(f'#!/bin/sh\nexec {qp.COURIERPASSWD} --config {conf} -- "$@"\n')
        wrapper.chmod(0o755)
        server_lab = lab / "qpsmtpd"
        server_lab.mkdir(mode=0o755)
        server = qp.Qpsmtpd(server_lab, wrapper, lab / "no-userdb")
        yield server, authkitd
    finally:
        if server is not None:
            server.close()
        if authkitd is not None:
            authkitd.stop()
        if slapd is not None:
            slapd.close()
        shutil.rmtree(lab, ignore_errors=True)


@pytest.mark.parametrize("method", ["PLAIN", "LOGIN"])
def test_directory_password_gets_235_wrong_or_unknown_535(ldap_qpsmtpd, method: str) -> None:
    server, _authkitd = ldap_qpsmtpd
    result = server.swaks(method, USER, d.PASSWORDS[USER])
    out = result.stdout + result.stderr
    assert qp.auth_reply(out).startswith("235"), out + server.read_log()
    assert all(qp.REPLY.match(line) for line in qp.server_lines(out)), out
    for user, password in ((USER, "Wrong-Pass-9"), ("nobody@example.com", "x"), ("crypt*", d.PASSWORDS[USER])):
        result = server.swaks(method, user, password, "--quit-after", "AUTH")
        out = result.stdout + result.stderr
        assert qp.auth_reply(out).startswith("535"), (user, out)
        assert all(qp.REPLY.match(line) for line in qp.server_lines(out)), out
    assert server.read_log().count("auth failed: 256") >= 3  # exit 1 each time


def test_authkitd_down_is_exit_111_not_a_rejection(ldap_qpsmtpd) -> None:
    server, authkitd = ldap_qpsmtpd
    authkitd.stop()
    result = server.swaks("PLAIN", USER, d.PASSWORDS[USER], "--quit-after", "AUTH")
    out = result.stdout + result.stderr
    assert not qp.auth_reply(out).startswith("235"), out
    log = server.read_log()
    assert "auth failed: 28416" in log and "auth failed: 256" not in log, log[-2000:]  # 111 << 8
