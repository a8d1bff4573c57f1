"""Real Courier IMAP (Debian courier-imap's imaplogin + imapd) and Courier POP3
(courier-pop's courierpop3login + courierpop3d), started by couriertcpd on
127.0.0.1 inside a CourierLab namespace, log users in through authkitd
(tests/couriermail.py): a good password opens the Maildir, a bad password and an
unknown user are refused.  The same run through Courier's authdaemond first shows
the setup itself is right."""

from __future__ import annotations

import imaplib
import os
import poplib
import shutil
import tempfile
from pathlib import Path

import pytest
from authkitdlab import Authkitd, lab_config
from courierlab import CourierLab
from couriermail import POP3D, POP3D_SETTINGS, POP3LOGIN, MailServer, courier_imap_tree, make_maildir

pytestmark = pytest.mark.integration


@pytest.fixture
def mail_lab(courier_lab, tmp_path):
    for program in ("/usr/sbin/couriertcpd", POP3LOGIN, POP3D, POP3D_SETTINGS):
        if not os.path.exists(program):
            pytest.skip(f"{program} missing (courier-pop, courier-base)")
    # imapd runs as the account (uid 5000) after the login: its tree and the
    # home must be reachable for that uid, so not under pytest's 0700 tmp_path
    home_root = Path(tempfile.mkdtemp(prefix="authkitd-mail-", dir="/tmp"))
    os.chmod(home_root, 0o755)
    imap = courier_imap_tree(home_root)
    if isinstance(imap, str):
        shutil.rmtree(home_root, ignore_errors=True)
        pytest.skip(imap)
    home = home_root / "andrew"
    home.mkdir()
    make_maildir(home, 5000, 5000)
    lab = courier_lab
    lab.add_user("andrew@example.com", "andrew-secret", home=str(home),
                 mail=str(home / "Maildir"), imappw=lab.userdbpw("andrew-imap", "-md5"))
    lab.makeuserdb()
    pop3_settings = tmp_path / "pop3d.settings"
    shutil.copy(POP3D_SETTINGS, pop3_settings)
    imaplogin, imapd, imap_settings = imap
    lab.imap = MailServer(lab, imap_settings, [imaplogin, imapd, "Maildir"],
                          {"IMAP_ULIMITD": "", "IMAP_STARTTLS": "NO", "IMAPDSTARTTLS": "NO"})
    lab.pop3 = MailServer(lab, str(pop3_settings), [POP3LOGIN, POP3D, "Maildir"],
                          {"POP3_STARTTLS": "NO", "POP3DSTARTTLS": "NO"})
    yield lab
    lab.imap.stop()
    lab.pop3.stop()
    shutil.rmtree(home_root, ignore_errors=True)


def imap_login(port: int, user: str, password: str) -> str:
    """"ok" with the INBOX message count after SELECT, or "no"."""
    client = imaplib.IMAP4("127.0.0.1", port, timeout=60)
    try:
        try:
            client.login(user, password)
        except imaplib.IMAP4.error:
            return "no"
        status, data = client.select("INBOX")
        assert status == "OK", data
        count = data[0].decode()
        client.logout()
        return f"ok {count}"
    finally:
        try:
            client.shutdown()
        except OSError:
            pass


def pop3_login(port: int, user: str, password: str) -> str:
    client = poplib.POP3("127.0.0.1", port, timeout=60)
    try:
        client.user(user)
        try:
            client.pass_(password)
        except poplib.error_proto:
            return "no"
        count, _ = client.stat()
        client.quit()
        return f"ok {count}"
    finally:
        client.close()


def verdicts(lab) -> list[str]:
    # (re)started after the daemon: stopping Courier's daemon ends every process
    # of the lab namespace, couriertcpd included
    lab.imap.start()
    lab.pop3.start()
    return [
        imap_login(lab.imap.port, "andrew@example.com", "andrew-imap"),
        imap_login(lab.imap.port, "andrew@example.com", "andrew-secret"),   # imappw decides
        imap_login(lab.imap.port, "nobody@example.com", "andrew-imap"),
        pop3_login(lab.pop3.port, "andrew@example.com", "andrew-secret"),
        pop3_login(lab.pop3.port, "andrew@example.com", "wrong-pw"),
        pop3_login(lab.pop3.port, "nobody@example.com", "andrew-secret"),
    ]


def test_courier_imap_and_pop3_log_in_through_authkitd(mail_lab):
    lab = mail_lab
    CourierLab.start_daemon(lab)
    try:
        with_courier = verdicts(lab)
    finally:
        CourierLab.stop_daemon(lab)
    assert with_courier == ["ok 1", "no", "no", "ok 1", "no", "no"], (with_courier, lab.imap.log())
    daemon = Authkitd(lab.root / "authkitd", lab.socket_path, lab_config(lab, "failure_delay = 0\n")).start()
    try:
        with_authkitd = verdicts(lab)
    finally:
        daemon.stop()
    assert with_authkitd == with_courier, (with_authkitd, daemon.log(), lab.imap.log())
    # imapd and pop3d sent their clients' address: authkitd saw TCPREMOTEIP
    assert "ip=::ffff:127.0.0.1 service=imap" in daemon.log()
