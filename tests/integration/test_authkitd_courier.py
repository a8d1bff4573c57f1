"""authkitd against Courier's authdaemond, answer for answer.

One lab userdb holding every password format (made by userdbpw, authpasswd and
mkpasswd, compiled by Courier's makeuserdb; test_userdb_courier's fixtures) is
served first by Courier's authdaemond, then by authkitd on the same socket.  Inside
the lab namespace the socket is Courier's compiled-in
/run/courier/authdaemon/socket, so Courier's own authtest and authenumerate talk
to whichever daemon runs.  Their output and exit status, and the raw reply bytes
to PRE, AUTH login, AUTH cram-*, ENUMERATE and malformed requests, must be the
same from both (docs/authkitd.8, COMPATIBILITY).  Password changes made through
one daemon are confirmed by the other.
"""

from __future__ import annotations

import hmac
import socket

import pytest
from authkitdlab import Authkitd, lab_config
from courierlab import CourierLab
from stacktools import exchange
from test_userdb_courier import fill, make_accounts

from authkit.authdaemon import protocol

pytestmark = pytest.mark.integration

CHALLENGE = b"<1896.697170952@lab.example>"


def raw(lab, data: bytes, timeout: float = 15) -> bytes:
    """Send ``data`` on one connection and read until the daemon closes; a
    reset (Courier closes with our bytes unread) counts as a close."""
    return exchange(lab.socket_path, data, timeout, reset_ends=True)


def cram(service: str, algorithm: str, name: str, secret: str) -> bytes:
    digest = hmac.new(secret.encode(), CHALLENGE, algorithm).hexdigest()
    return protocol.cram_request(service, algorithm, CHALLENGE, name, digest)


def requests(accounts) -> list[bytes]:
    """Every raw request both daemons answer at once."""
    out = []
    for name in [*accounts, "andrew@example.com", "imaponly@example.org"]:
        password = ("pw-" + name.split("@")[0]).encode()
        for service in ("login", "imap", "pop3"):
            out.append(protocol.pre_request(service, name, "192.0.2.1"))
            out.append(protocol.login_request(service, name, password, "192.0.2.1"))
            out.append(protocol.login_request(service, name, b"pw-wrong"))
    for algorithm in ("md5", "sha1", "sha256"):
        for service in ("imap", "pop3"):
            for secret in ("andrew-secret", "andrew-pop3", "wrong"):
                out.append(cram(service, algorithm, "andrew@example.com", secret))
        out.append(cram("imap", algorithm, "nobody@example.com", "andrew-secret"))
    out += [
        b"PRE . imap nobody@example.com\n",
        b"PRE . imap Andrew@Example.com\n",
        b"PRE authuserdb imap andrew@example.com\n",
        b"PRE authpam imap andrew@example.com\n",
        b"PRE   .   imap   andrew@example.com\n",
        b"PRE . login andrew@example.com\r\n",
        b"FOO=bar\nTCPREMOTEIP=192.0.2.9\nPRE . imap andrew@example.com\n",
        b"AUTH 29\nlogin\nlogin\nmd5@example.org\n\n",
        b"AUTH 27\nimap\nLOGIN\nandrew@example.com\nx\n",
        b"AUTH 20\nimap\nplain\nAGEAYgBj\n",
        b"AUTH 25\nimap\ncram-md5\nQUJD\nYWJj\n",
        b"PASSWD login\tandrew@example.com\tandrew-secret\tnew\rpw\n",
        b"PASSWD login\tandrew@example.com\twrong-old\tN3w-pw-1\n",
        b"PASSWD login\tnobody@example.com\tx\tN3w-pw-1\n",
        # answered by closing at once
        b"HELLO\n",
        b"pre . login andrew@example.com\n",
        b"PRE . login\n",
        b"AUTH 8192\n",
        b"AUTH -5\n",
        b"PASSWD login\tandrew@example.com\tx\n",
        b"PRE . login " + b"x" * 8200 + b"\n",
        b"ENUMERATE\n",
    ]
    return out


def courier_answers(lab, accounts, env=None) -> dict:
    answers = {}
    for request in requests(accounts):
        answers[request] = raw(lab, request)
    for name in [*accounts, "andrew@example.com", "imaponly@example.org", "nobody@example.org"]:
        password = "pw-" + name.split("@")[0]
        for args in (("-s", "imap", name, password), ("-s", "pop3", name, "pw-wrong"),
                     ("-s", "login", name)):
            proc = lab.authtest(*args)
            answers[args] = (proc.returncode, proc.stdout, proc.stderr)
    for args in ((), ("-o",), ("-s",), ("-s", "-o")):
        proc = lab.authenumerate(*args)
        answers[("authenumerate", *args)] = (proc.returncode, proc.stdout, proc.stderr)
    return answers


@pytest.mark.parametrize("layout", ["file", "dir"])
def test_authtest_authenumerate_and_raw_replies_are_courier_s(courier_lab_factory, layout):
    lab = courier_lab_factory(layout=layout, defaultoptions="wbnodsn=1,disableshared=0")
    accounts = make_accounts(lab)
    fill(lab, accounts)
    lab.makeuserdb()
    lab.start_daemon()
    expected = courier_answers(lab, accounts)
    lab.stop_daemon()
    # no failure delay: the same address sends wrong passwords here on purpose
    daemon = Authkitd(lab.root / "authkitd", lab.socket_path,
                      lab_config(lab, "failure_delay = 0\n")).start()
    try:
        got = courier_answers(lab, accounts)
    finally:
        daemon.stop()
    assert b"Authentication succeeded" in expected[("-s", "imap", "md5crypt@example.org", "pw-md5crypt")][1]
    assert expected[(b"ENUMERATE\n")].endswith(b"\n.\n")
    differ = [key for key in expected if expected[key] != got[key]]
    assert not differ, [(key, expected[key], got[key]) for key in differ[:5]]


def test_password_changes_are_confirmed_by_the_other_daemon(courier_lab):
    lab = courier_lab
    fill(lab, {})
    lab.makeuserdb()
    daemon = Authkitd(lab.root / "authkitd", lab.socket_path, lab_config(lab))
    # through authkitd (authtest's PASSWD), confirmed by Courier's daemon
    daemon.start()
    try:
        changed = lab.authtest("-s", "login", "andrew@example.com", "andrew-secret", "Kitd-N3w-1")
        assert changed.returncode == 0 and b"Password change succeeded" in changed.stderr, changed
        assert lab.authtest("-s", "login", "andrew@example.com", "Kitd-N3w-1").returncode == 0
        wrong = lab.authtest("-s", "login", "andrew@example.com", "andrew-secret", "Other-N3w-1")
        assert wrong.returncode != 0
    finally:
        daemon.stop()
    CourierLab.start_daemon(lab)
    assert lab.authtest("-s", "login", "andrew@example.com", "Kitd-N3w-1").returncode == 0
    assert lab.authtest("-s", "login", "andrew@example.com", "andrew-secret").returncode != 0
    # the imap password is its own field: untouched by a login-service change
    assert lab.authtest("-s", "imap", "andrew@example.com", "andrew-imap").returncode == 0
    # through Courier's daemon, confirmed by authkitd
    assert lab.authtest("-s", "imap", "andrew@example.com", "andrew-imap", "Cour-N3w-2").returncode == 0
    CourierLab.stop_daemon(lab)
    daemon.start()
    try:
        assert lab.authtest("-s", "imap", "andrew@example.com", "Cour-N3w-2").returncode == 0
        assert lab.authtest("-s", "imap", "andrew@example.com", "andrew-imap").returncode != 0
        assert lab.authtest("-s", "login", "andrew@example.com", "Kitd-N3w-1").returncode == 0
    finally:
        daemon.stop()
