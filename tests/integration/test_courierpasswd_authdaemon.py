"""courierpasswd with a running Courier authdaemond as its account source
(AUTHKIT_AUTHDAEMON), the way the C original always worked: logins for several
services, CRAM, a password change that Courier's authtest confirms, and a daemon
that is down giving exit 111, never 1."""

from __future__ import annotations

import hmac
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from authkitdlab import courier_or_authkitd

pytestmark = pytest.mark.integration

BIN = Path(__file__).resolve().parents[2] / "bin" / "courierpasswd"
CHALLENGE = b"<27914.1795651359@lab.example>"


def run(lab, data: bytes, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run courierpasswd the way tmda-ofmipd and qpsmtpd do: through
    ``sh -c 'exec prog 3<&0'`` with the credentials on the pipe."""
    environ = {"PATH": "/usr/bin:/bin", "AUTHKIT_AUTHDAEMON": str(lab.socket_path), "TCPREMOTEIP": "192.0.2.1"}
    environ.update(env or {})
    return subprocess.run(
        ["/bin/sh", "-c", 'exec "$0" "$@" 3<&0', str(BIN), "--stderr", *args],
        input=data, capture_output=True, env=environ, timeout=60,
    )


@pytest.fixture(params=["courier", "authkitd"])
def lab(request, courier_lab):
    # the same tests against Courier's authdaemond and against authkitd (tests/authkitdlab.py)
    courier_or_authkitd(request, courier_lab)
    # run as root, courierpasswd becomes the account and chdirs to its home
    home = tempfile.mkdtemp(prefix="cpw-authdaemon-", dir="/tmp")
    os.chmod(home, 0o755)
    courier_lab.add_user("andrew@example.com", "andrew-secret", home=home, imappw=courier_lab.userdbpw("andrew-imap"),
                         **{"hmac-md5pw": courier_lab.userdbpw("andrew-secret", "-hmac-md5"),
                            "hmac-sha256pw": courier_lab.userdbpw("andrew-secret", "-hmac-sha256")})
    courier_lab.makeuserdb()
    courier_lab.start_daemon()
    courier_lab.home = home
    yield courier_lab
    shutil.rmtree(home, ignore_errors=True)


def test_logins_for_several_services_through_authdaemond(lab):
    ok = run(lab, b"andrew@example.com\0andrew-imap\0\0", "-s", "imap", "--", "/bin/sh", "-c", "echo $HOME >&2")
    assert ok.returncode == 0 and ok.stdout == b""
    assert lab.home.encode() in ok.stderr
    assert run(lab, b"andrew@example.com\0andrew-secret\0", "-s", "imap", "--", "/bin/true").returncode == 1
    assert run(lab, b"andrew@example.com\0andrew-secret\0", "-s", "pop3", "--", "/bin/true").returncode == 0
    unknown = run(lab, b"nobody@example.com\0andrew-secret\0", "-s", "pop3", "--", "/bin/true")
    assert unknown.returncode == 1 and b"andrew-secret" not in unknown.stderr


@pytest.mark.parametrize("algorithm", ["md5", "sha256"])
def test_cram_through_authdaemond(lab, algorithm):
    digest = hmac.new(b"andrew-secret", CHALLENGE, algorithm).hexdigest()
    good = b"andrew@example.com\0" + digest.encode() + b"\0" + CHALLENGE + b"\0"
    assert run(lab, good, "-s", "imap", "-C", algorithm, "--", "/bin/true").returncode == 0
    bad = b"andrew@example.com\0" + b"0" * len(digest) + b"\0" + CHALLENGE + b"\0"
    assert run(lab, bad, "-s", "imap", "-C", algorithm, "--", "/bin/true").returncode == 1


def test_password_change_through_authdaemond_is_confirmed_by_authtest(lab):
    done = run(lab, b"andrew@example.com\0andrew-secret\0N3w-andrew-pw\0", "-c", "--", "/bin/true")
    assert done.returncode == 0, done.stderr
    assert lab.authtest("andrew@example.com", "N3w-andrew-pw").returncode == 0
    assert lab.authtest("andrew@example.com", "andrew-secret").returncode != 0


def test_password_change_below_min_uid_is_refused_before_any_passwd(lab):
    """issue 16: the uid policy is checked on the daemon's PRE answer before
    PASSWD is sent (the old password is verified once, by one AUTH, only to
    tell a right password's refusal from a wrong password)."""
    lab.add_user("system@example.com", "system-secret", uid="50", gid="50", home=lab.home)
    lab.makeuserdb()
    refused = run(lab, b"system@example.com\0system-secret\0N3w-system-pw\0", "-c", "--", "/bin/true")
    assert refused.returncode == 1 and b"account uid below the minimum" in refused.stderr
    wrong = run(lab, b"system@example.com\0wrong-secret\0N3w-system-pw\0", "-c", "--", "/bin/true")
    assert wrong.returncode == 1 and b"account uid below the minimum" not in wrong.stderr
    assert lab.authtest("system@example.com", "system-secret").returncode == 0
    assert lab.authtest("system@example.com", "N3w-system-pw").returncode != 0


def test_daemon_down_is_a_temporary_failure_not_a_rejection(lab):
    lab.stop_daemon()
    down = run(lab, b"andrew@example.com\0andrew-secret\0", "--", "/bin/true")
    assert down.returncode == 111 and down.stdout == b""
    assert b"andrew-secret" not in down.stderr
