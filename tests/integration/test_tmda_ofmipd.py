"""tmda-ofmipd (TMDAng 1.0.3) with ``-A courierpasswd`` and ``-S getvuserhome.sh``.

The seed installation ran ``tmda-ofmipd ... -A courierpasswd -S getvuserhome.sh``
(spec real-clients.md section 4, original-tools.md sections 4 and 5).  Here the
real TMDA does the calling:

* TMDAng 1.0.3 is installed from PyPI into its own venv (``.venv-tmda`` at the
  repository root, or ``$AUTHKIT_TMDA_VENV``), made with Debian's python3 (3.11:
  TMDAng needs ``asyncore``, gone in 3.12).  TMDAng calls
  ``base64.decodestring``, removed in Python 3.9: a ``sitecustomize.py`` on the
  server's PYTHONPATH aliases it to ``decodebytes`` (TMDA itself is not edited).
* The server runs as ``nobody`` (under root TMDA wants VMailMgr's
  ``/etc/ipauthmap`` setup) on 127.0.0.1 with ``-P`` (pure proxy: with no
  ``$HOME/.tmda/config`` the message goes straight to ``$TMDA_SENDMAIL_PROGRAM``).
  That program is a script here that records ``$HOME`` and its argv.
* swaks sends the message after ``AUTH PLAIN`` (TMDAng's ``AUTH LOGIN`` passes
  ``b'...'`` strings to the checkpassword program, a TMDAng bug).
* The userdb is made by Courier's ``userdb``/``userdbpw`` in a CourierLab and
  copied to a directory ``nobody`` can read.

The injection tests show what getvuserhome.sh does with hostile names: every
byte of USER and DOMAIN reaches courieruserinfo as data, nothing is evaluated.
(TMDA itself builds ``"%s %s %s" % (script, user, domain)`` and hands it to
``/bin/sh`` unquoted: metacharacters in an authenticated login name are
interpreted by *TMDA's* shell before the script starts.  Only a name that passed
SMTP AUTH gets there; see docs/getvuserhome.sh.8.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from courierlab import CourierLab
from stacktools import free_port, stop_process

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / "bin"
COURIERPASSWD = BIN / "courierpasswd"
SYSTEM_PYTHON = "/usr/bin/python3"
TMDA_REQUIREMENT = "TMDAng==1.0.3"
NOBODY = 65534

ALICE = "alice@example.org"
ALICE_PW = "s3cret-alice"
ALICE_HOME = "/home/vmail/example.org/alice"
BOB = "bob"  # no domain: TMDA calls the script with one argument
BOB_PW = "s3cret-bob"
BOB_HOME = "/home/vmail/bob"

#: Login names full of shell syntax.  A marker file MARK must never appear.
HOSTILE_NAMES = [
    "x;touch MARK",
    "$(touch MARK)",
    "`touch MARK`",
    "x' ; touch MARK ; '",
    'x" ; touch MARK ; "',
    "a b $(touch MARK) c",
    "x|touch MARK",
    "x&&touch MARK",
    "-x;touch MARK",
    "${IFS}touch${IFS}MARK",
    "x\ntouch MARK",
    "*",
]
#: An account whose name is itself hostile: getvuserhome.sh must find it.
ODD_ACCOUNT = "o'b r;$(touch MARK)`touch MARK`\"q"
ODD_DOMAIN = "example.org"
ODD_HOME = "/home/vmail/odd home/x"
#: A real account with shell syntax in its name, for the hazard in TMDA itself.
EVE = "eve;touch mark@example.org"
EVE_PW = "s3cret-eve"

SITECUSTOMIZE = """\
# TMDAng 1.0.3 calls base64.decodestring/encodestring, removed in Python 3.9.
import base64
base64.decodestring = base64.decodebytes
base64.encodestring = base64.encodebytes
"""

RECORDER = """\
#!/bin/sh
# TMDA_SENDMAIL_PROGRAM for the test: records $HOME, argv and the message.
out="{out}/sent.$$"
{{
    printf 'HOME=%s\\n' "$HOME"
    for arg in "$@"; do printf 'ARG=%s\\n' "$arg"; done
    printf 'BODY\\n'
    cat
}} > "$out.tmp" && mv "$out.tmp" "$out"
"""


def _unsafe_for_shell(path: Path) -> bool:
    return any(c in str(path) for c in " '\"\\$`;&|<>(){}*?[]#~\n\t")


def _as_nobody(argv: list[str]) -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--", *argv]


def _nobody_can_read(path: Path) -> bool:
    return subprocess.run(_as_nobody(["test", "-r", str(path)]), capture_output=True).returncode == 0


def _tmda_venv() -> Path:
    """The venv with TMDAng, created on first use (pip from PyPI):
    ``$AUTHKIT_TMDA_VENV``, else ``.venv-tmda`` in the repository when nobody
    can read it, else ``/var/tmp/authkit-venv-tmda``.  Skips the test when it
    cannot be made (no network, no venv module)."""
    default = REPO / ".venv-tmda" if _nobody_can_read(BIN) else Path("/var/tmp/authkit-venv-tmda")
    venv = Path(os.environ.get("AUTHKIT_TMDA_VENV") or default)
    ofmipd = venv / "bin" / "tmda-ofmipd"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(str(venv) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ofmipd.exists():
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        steps = [
            [SYSTEM_PYTHON, "-m", "venv", str(venv)],
            [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
             TMDA_REQUIREMENT],
        ]
        for argv in steps:
            proc = subprocess.run(argv, capture_output=True, timeout=600)
            if proc.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                pytest.skip(f"cannot install {TMDA_REQUIREMENT} into {venv}: "
                            f"{proc.stderr.decode(errors='replace')[-500:]}")
    return venv


@pytest.fixture(scope="module")
def requirements() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (runs tmda-ofmipd as nobody with setpriv)")
    for prog in ("setpriv", "swaks"):
        if shutil.which(prog) is None:
            pytest.skip(f"{prog} not installed")
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip(f"{SYSTEM_PYTHON} missing")
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import asyncore, asynchat"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip("TMDAng needs asyncore/asynchat (Python < 3.12)")
    if not COURIERPASSWD.exists():
        pytest.skip("bin/courierpasswd is not there yet")
    if _unsafe_for_shell(REPO) or _unsafe_for_shell(Path(tempfile.gettempdir())):
        pytest.skip(f"TMDA passes -A/-S through /bin/sh unquoted; {REPO} has shell syntax")


class World:
    """A directory nobody can read, holding the userdb, the recorder and the
    sitecustomize, and the environment every program of the test gets."""

    def __init__(self, root: Path, lab: CourierLab) -> None:
        self.root = root
        # The programs nobody runs: this checkout's, or a copy when nobody cannot
        # read the checkout (a CI clone under /root, say).
        if _nobody_can_read(BIN / "courieruserinfo"):
            bindir = BIN
        else:
            shutil.copytree(REPO / "authkit", root / "repo" / "authkit",
                            ignore=shutil.ignore_patterns("__pycache__"))
            shutil.copytree(BIN, root / "repo" / "bin")
            bindir = root / "repo" / "bin"
        self.getvuserhome = bindir / "getvuserhome.sh"
        self.courierpasswd = bindir / "courierpasswd"
        self.out = root / "out"
        self.out.mkdir()
        os.chown(self.out, NOBODY, NOBODY)
        lab.add_user(ALICE, ALICE_PW, home=ALICE_HOME, mail=ALICE_HOME + "/Maildir")
        lab.add_user(BOB, BOB_PW, home=BOB_HOME, file="default" if lab.layout == "dir" else None)
        lab.add_user(f"{ODD_ACCOUNT}@{ODD_DOMAIN}", "odd-pw", home=ODD_HOME)
        lab.add_user(EVE, EVE_PW, home="/home/vmail/example.org/eve")
        self.userdb = root / "userdb"
        shutil.copy2(lab.userdb_path, self.userdb)  # the text made by Courier's userdb
        os.chown(self.userdb, NOBODY, NOBODY)
        os.chmod(self.userdb, 0o600)
        self.compat = root / "compat"
        self.compat.mkdir()
        (self.compat / "sitecustomize.py").write_text(SITECUSTOMIZE)
        self.recorder = root / "sendmail.sh"
        self.recorder.write_text(RECORDER.format(out=self.out))
        self.recorder.chmod(0o755)
        self.home = root / "nobody-home"
        self.home.mkdir()
        os.chown(self.home, NOBODY, NOBODY)
        self.env = {
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": str(self.home),
            "AUTHKIT_USERDB": str(self.userdb),
        }

    def markers(self) -> list[Path]:
        """Marker files anywhere under the world (TMDA lower-cases logins, so
        ``mark`` counts too), after proving nobody could have made one."""
        probe = self.out / "probe"
        subprocess.run(_as_nobody(["/bin/sh", "-c", "touch probe"]), cwd=self.out, check=True)
        assert probe.exists(), "nobody cannot write the working directory: test is void"
        probe.unlink()
        return [p for p in self.root.rglob("*") if p.name.lower() == "mark"]

    def sent(self) -> list[dict]:
        """What the recorder got, one dict per message (HOME, ARGs, BODY)."""
        found = []
        for path in sorted(self.out.glob("sent.*")):
            if path.name.endswith(".tmp"):
                continue
            head, _, body = path.read_text(errors="replace").partition("BODY\n")
            lines = head.splitlines()
            found.append({
                "HOME": [l[5:] for l in lines if l.startswith("HOME=")][0],
                "ARGS": [l[4:] for l in lines if l.startswith("ARG=")],
                "BODY": body,
            })
        return found


@pytest.fixture
def world(requirements, courier_lab: CourierLab):
    root = Path(tempfile.mkdtemp(prefix="authkit-tmda-"))
    try:
        root.chmod(0o755)
        yield World(root, courier_lab)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def ofmipd(world: World):
    """A running tmda-ofmipd as nobody; yields its port."""
    venv = _tmda_venv()
    probe = subprocess.run(_as_nobody([str(venv / "bin" / "python"), "-c", "import TMDA.ofmipd"]),
                           capture_output=True, env={**world.env, "PYTHONPATH": str(world.compat)})
    if probe.returncode != 0:
        pytest.skip(f"nobody cannot run TMDA from {venv}: {probe.stderr.decode()[-300:]}")
    port = free_port()
    log = open(world.root / "ofmipd.log", "wb")
    env = {**world.env, "PYTHONPATH": str(world.compat),
           "TMDA_SENDMAIL_PROGRAM": str(world.recorder)}
    argv = _as_nobody([
        str(venv / "bin" / "tmda-ofmipd"), "-f", "-d", "-P",
        "-p", f"127.0.0.1:{port}",
        "-A", f"{world.courierpasswd} --stderr -- /bin/true",
        "-S", str(world.getvuserhome),
    ])
    # cwd: a directory nobody may write, so that a stray `touch MARK` would succeed
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                            cwd=world.out, start_new_session=True)
    log.close()
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"tmda-ofmipd exited {proc.returncode}: {_log(world)}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"tmda-ofmipd did not listen: {_log(world)}")
            time.sleep(0.05)
        yield port
    finally:
        stop_process(proc)


def _log(world: World) -> str:
    try:
        return (world.root / "ofmipd.log").read_text(errors="replace")[-3000:]
    except OSError:
        return ""


def swaks(port: int, user: str, password: str, *extra: str,
          sender: str = ALICE, to: str = "someone@example.net") -> subprocess.CompletedProcess:
    return subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{port}", "--auth", "PLAIN",
         f"--auth-user={user}", f"--auth-password={password}",
         "--from", sender, "--to", to, "--h-Subject", "authkit test",
         "--body", "hello from the authkit test suite", "--timeout", "60", *extra],
        capture_output=True, timeout=120)


def _wait_sent(world: World, count: int, timeout: float = 15) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sent = world.sent()
        if len(sent) >= count:
            return sent
        time.sleep(0.05)
    return world.sent()


# --------------------------------------------------------------- through TMDA


def test_message_after_auth_plain_is_sent_with_home_of_the_user(world: World, ofmipd: int) -> None:
    proc = swaks(ofmipd, ALICE, ALICE_PW)
    assert proc.returncode == 0, (proc.stdout.decode()[-1500:], _log(world))
    assert b"235 " in proc.stdout
    sent = _wait_sent(world, 1)
    assert len(sent) == 1, _log(world)
    assert sent[0]["HOME"] == ALICE_HOME
    assert sent[0]["ARGS"] == ["-f", ALICE, "-i", "--", "someone@example.net"]
    assert "hello from the authkit test suite" in sent[0]["BODY"]


def test_login_without_domain_gets_its_home_too(world: World, ofmipd: int) -> None:
    proc = swaks(ofmipd, BOB, BOB_PW, sender="bob@example.org")
    assert proc.returncode == 0, (proc.stdout.decode()[-1500:], _log(world))
    sent = _wait_sent(world, 1)
    assert [m["HOME"] for m in sent] == [BOB_HOME]


def test_wrong_password_is_refused_and_nothing_is_sent(world: World, ofmipd: int) -> None:
    proc = swaks(ofmipd, ALICE, "wrong-password")
    assert proc.returncode != 0
    assert b"535 " in proc.stdout
    time.sleep(0.5)
    assert world.sent() == []


def _auth_plain(port: int, login: str, password: str) -> int:
    """The reply code to ``AUTH PLAIN`` with ``login`` (smtplib, not swaks: swaks
    reads an --auth-user value starting with '-' as an option)."""
    import base64
    import smtplib

    token = base64.b64encode(b"\0" + login.encode() + b"\0" + password.encode()).decode()
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo("client.example.net")
        code, _ = client.docmd("AUTH", "PLAIN " + token)
        return code


@pytest.mark.parametrize("name", [n for n in HOSTILE_NAMES if "\n" not in n])
def test_hostile_login_through_tmda_runs_nothing(world: World, ofmipd: int, name: str) -> None:
    for login in (name, name + "@example.org"):
        assert _auth_plain(ofmipd, login, ALICE_PW) == 535
    assert _auth_plain(ofmipd, ALICE, ALICE_PW) == 235  # the same path does accept
    time.sleep(0.3)
    assert world.sent() == []
    assert world.markers() == []


def test_tmda_own_shell_is_what_interprets_an_authenticated_names_metacharacters(
        world: World, ofmipd: int) -> None:
    """Documents the hazard docs/getvuserhome.sh.8 warns about.  An account named
    ``eve;touch mark`` logs in correctly; TMDA then runs
    ``sh -c "getvuserhome.sh eve;touch mark example.org"``: its shell runs
    ``touch`` and calls the script with just ``eve``, which is unknown, so the
    message goes out with an empty HOME.  Nothing the script can do prevents it:
    the command line is split before the script starts."""
    assert _auth_plain(ofmipd, EVE, EVE_PW) == 235
    proc = swaks(ofmipd, EVE, EVE_PW, sender=ALICE)
    assert proc.returncode == 0, (proc.stdout.decode()[-1500:], _log(world))
    sent = _wait_sent(world, 1)
    assert [m["HOME"] for m in sent] == [""]
    assert [p.name for p in world.markers()] == ["mark"]


# ---------------------------------------------------- the script on its own


def _tmda_style_call(world: World, user: str, domain: str, cwd: Path) -> subprocess.CompletedProcess:
    """The call TMDA makes, ``sh -c "script user domain"``, with USER and DOMAIN
    quoted so that they reach the script as data (what happens to unquoted
    metacharacters in TMDA's own shell is TMDA's business)."""
    command = f"{world.getvuserhome} {shlex.quote(user)} {shlex.quote(domain)}"
    return subprocess.run(_as_nobody(["/bin/sh", "-c", command]), capture_output=True,
                          env=world.env, cwd=cwd, timeout=60)


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_reach_courieruserinfo_as_data(requirements, world: World,
                                                     name: str) -> None:
    cwd = world.out  # writable by nobody: a `touch MARK` here would succeed
    for user, domain in ((name, "example.org"), ("alice", name), (name, "")):
        proc = _tmda_style_call(world, user, domain, cwd)
        assert (proc.returncode, proc.stdout) == (1, b""), (user, domain, proc.stderr)
        direct = subprocess.run(_as_nobody([str(world.getvuserhome), user, domain]),
                                capture_output=True, env=world.env, cwd=cwd, timeout=60)
        assert (direct.returncode, direct.stdout) == (1, b""), (user, domain, direct.stderr)
    assert world.markers() == []


def test_account_with_a_hostile_name_is_found_literally(requirements, world: World) -> None:
    cwd = world.out
    proc = _tmda_style_call(world, ODD_ACCOUNT, ODD_DOMAIN, cwd)
    assert (proc.returncode, proc.stdout) == (0, (ODD_HOME + "\n").encode()), proc.stderr
    assert world.markers() == []


def test_script_prints_only_the_home_and_fails_empty_for_unknown(requirements,
                                                                 world: World) -> None:
    run = lambda *args: subprocess.run(  # noqa: E731
        _as_nobody([str(world.getvuserhome), *args]), capture_output=True, env=world.env, timeout=60)
    assert run("alice", "example.org").stdout == (ALICE_HOME + "\n").encode()
    assert run("bob").stdout == (BOB_HOME + "\n").encode()
    assert run("bob", "").stdout == (BOB_HOME + "\n").encode()
    unknown = run("carol", "example.org")
    assert (unknown.returncode, unknown.stdout) == (1, b"")
    for args in ((), ("a", "b", "c"), ("", "example.org")):
        misuse = run(*args)
        assert (misuse.returncode, misuse.stdout) == (2, b""), args


def test_courieruserinfo_env_var_names_the_program(requirements, world: World) -> None:
    fake = world.root / "fake-userinfo"
    fake.write_text('#!/bin/sh\nprintf "homedir=/from/fake/%s\\n" "$3"\n')
    fake.chmod(0o755)
    proc = subprocess.run(_as_nobody([str(world.getvuserhome), "alice", "example.org"]),
                          capture_output=True, env={**world.env, "COURIERUSERINFO": str(fake)},
                          timeout=60)
    assert (proc.returncode, proc.stdout) == (0, b"/from/fake/alice@example.org\n")

