"""courierpassd under the real tcpserver (ucspi-tcp), driven by real clients:
Roundcube's poppassd password driver (roundcube-plugins, run by php-cli through
tests/integration/roundcube_poppassd.php) and poppass-cgi (/usr/lib/cgi-bin/poppass).

poppass-cgi has port 106 compiled in, so everything runs in a private network
namespace (``unshare -n``, lo brought up) where 127.0.0.1:106 is ours; nothing is
installed or edited on the host.  tcpserver runs the command line of
docs/courierpassd.8 EXAMPLES: ``tcpserver -v -R -H -l localhost 127.0.0.1 106
courierpassd --config FILE --stderr``.  After each change the new password is
checked with authkit's UserdbSource (and the old one refused).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_courierpassd_cli import BIN, NEW, OLD, works, write_userdb  # noqa: E402

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
ROUNDCUBE_DRIVER = Path("/usr/share/roundcube/plugins/password/drivers/poppassd.php")
POPPASS_CGI = Path("/usr/lib/cgi-bin/poppass")


def _require(*programs: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (unshare -n)")
    for prog in programs:
        if not (Path(prog).exists() if prog.startswith("/") else shutil.which(prog)):
            pytest.skip(f"{prog} not installed")


class NetNamespace:
    """A private network namespace held by a ``sleep`` process; ``run``/``popen``
    execute commands inside it with nsenter."""

    def __init__(self) -> None:
        self.holder = subprocess.Popen(["unshare", "-n", "sleep", "600"])
        for _ in range(100):
            if os.readlink(f"/proc/{self.holder.pid}/ns/net") != os.readlink("/proc/self/ns/net"):
                break
            import time

            time.sleep(0.01)
        self.run(["ip", "link", "set", "lo", "up"], check=True)

    def argv(self, argv: list[str]) -> list[str]:
        return ["nsenter", "-t", str(self.holder.pid), "-n", *argv]

    def run(self, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(argv), capture_output=True, timeout=60, **kwargs)

    def popen(self, argv: list[str], **kwargs: object) -> subprocess.Popen:
        return subprocess.Popen(self.argv(argv), **kwargs)

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait()


class Tcpserver:
    """tcpserver on 127.0.0.1:106 in ``ns`` running bin/courierpassd."""

    def __init__(self, ns: NetNamespace, config: Path) -> None:
        self.proc = ns.popen(["tcpserver", "-v", "-R", "-H", "-l", "localhost", "127.0.0.1", "106",
                              str(BIN), "--config", str(config), "--stderr"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        first = self.proc.stderr.readline()
        assert first.startswith(b"tcpserver: status: 0/"), first

    def log(self) -> str:
        self.proc.terminate()  # nsenter passes the signal on to tcpserver
        try:
            self.proc.wait(10)
        finally:
            self.proc.kill()
        return self.proc.stderr.read().decode()


@pytest.fixture
def stack(tmp_path: Path):
    _require("tcpserver", "unshare", "nsenter", "ip")
    config = write_userdb(tmp_path, {f"user{i}@example.com": (5000 + i, OLD) for i in range(4)})
    ns = NetNamespace()
    server = Tcpserver(ns, config)
    yield ns, server, config
    server.log()
    ns.close()


def roundcube(ns: NetNamespace, user: str, current: str, new: str) -> object:
    proc = ns.run(["php", str(HERE / "roundcube_poppassd.php"), "127.0.0.1", "106", user, current, new])
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def poppass_cgi(ns: NetNamespace, user: str, current: str, new: str) -> str:
    query = urllib.parse.urlencode({"username": user, "password": current,
                                    "newpassword1": new, "newpassword2": new})
    proc = ns.run(["env", "-i", "PATH=/usr/bin:/bin", "GATEWAY_INTERFACE=CGI/1.1", "REQUEST_METHOD=GET",
                   f"QUERY_STRING={query}", "SCRIPT_NAME=/cgi-bin/poppass", str(POPPASS_CGI)])
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode()


@pytest.fixture
def php():
    _require("php", str(ROUNDCUBE_DRIVER), "/usr/share/php/Net/Socket.php")


@pytest.fixture
def cgi():
    _require(str(POPPASS_CGI))


def test_roundcube_changes_a_password_through_tcpserver(stack, php) -> None:
    ns, server, config = stack
    assert roundcube(ns, "user0@example.com", OLD, NEW) == 0  # PASSWORD_SUCCESS
    assert works(config, "user0@example.com", NEW) and not works(config, "user0@example.com", OLD)
    log = server.log()
    assert "result=changed" in log and "ip=127.0.0.1" in log and "user=user0@example.com" in log
    assert OLD not in log and NEW not in log


def test_roundcube_wrong_old_password_and_unknown_user_get_the_same_error(stack, php) -> None:
    ns, server, config = stack
    wrong = roundcube(ns, "user1@example.com", "Wrong-Passw0rd", NEW)
    unknown = roundcube(ns, "nobody@example.com", OLD, NEW)
    # PASSWORD_ERROR (2), not CONNECT_ERROR (3): the user step answered 200 both times
    assert wrong == unknown == {"code": 2, "message": "Old password is incorrect"}
    assert works(config, "user1@example.com", OLD)
    log = server.log()
    assert "result=bad-password" in log and "result=unknown-user" in log


def test_roundcube_shows_the_policy_text(stack, php) -> None:
    ns, server, config = stack
    assert roundcube(ns, "user2@example.com", OLD, OLD) == {"code": 2, "message": "New password must differ from the old one"}


def test_poppass_cgi_changes_a_password_on_port_106(stack, cgi) -> None:
    ns, server, config = stack
    page = poppass_cgi(ns, "user2@example.com", OLD, NEW)
    assert "Password Changed Successfully" in page
    assert works(config, "user2@example.com", NEW) and not works(config, "user2@example.com", OLD)
    log = server.log()
    assert "user=user2@example.com" in log and "result=changed" in log


def test_poppass_cgi_wrong_old_password_and_unknown_user_are_refused(stack, cgi) -> None:
    ns, server, config = stack
    for user, password in (("user3@example.com", "Wrong-Passw0rd"), ("nobody@example.com", OLD)):
        page = poppass_cgi(ns, user, password, NEW)
        assert "Old password is incorrect" in page and "Successfully" not in page
    assert works(config, "user3@example.com", OLD)
