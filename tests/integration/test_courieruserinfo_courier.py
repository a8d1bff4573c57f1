"""courieruserinfo and getvuserhome.sh agree with Courier's own authtest.

Fixtures are made by Courier's tools inside a CourierLab (tests/courierlab.py):
``userdb NAME set ...`` writes the text userdb, ``userdbpw -md5`` the one hash,
``makeuserdb`` the compiled userdb.dat/userdbshadow.dat, and authdaemond
(authuserdb, reading the compiled pair) answers ``authtest NAME``.

For every account, each item courieruserinfo prints is compared with what
``authtest NAME`` prints for it (``Authenticated: ADDRESS  (uid U, gid G)``,
``Home Directory``, ``Maildir``, ``Quota``, ``Options``; ``(none)`` = blank).
authtest does not print the full name, so ``name=`` is compared with the
``NAME=`` of the daemon's own reply to ``PRE . login NAME`` (spec
courier-authlib.md section 4), which is what authtest reads.

Three account sources are checked, each against the same daemon:
the text userdb (a copy without the compiled pair, so authkit parses the text),
the compiled pair made by makeuserdb, and the running authdaemond itself.  Each
runs for a single-file userdb and for a userdb directory, and for a daemon with
DEFAULTOPTIONS (given to authkit's userdb reader as ``default_options``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from authkitdlab import Authkitd, lab_config

from courierlab import CourierLab, missing_requirements

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
COURIERUSERINFO = REPO / "bin" / "courieruserinfo"
GETVUSERHOME = REPO / "bin" / "getvuserhome.sh"

ODD_NAME = "o'b r;$(touch MARK)`touch MARK`\"q@example.org"

#: name -> the fields given to ``userdb NAME set`` (uid/gid/home default in the lab).
ACCOUNTS = {
    "andrew@example.com": dict(
        password="andrew-secret", mail="/home/vmail/example.com/andrew/Maildir",
        gecos="Andrew Example,Room 1,555-0100", quota="10000000S",
        options="disableshared=1"),
    "bare@example.org": dict(home="/home/vmail/example.org/bare"),
    "zoe@example.org": dict(uid="5012", gid="100", home="/home/vmail/example.org/zo\u00eb",
                            gecos="Zo\u00eb Q", mail="./Maildir"),
    ODD_NAME: dict(home="/home/vmail/odd dir/x", gecos="Odd, Name"),
    "plain": dict(uid="1001", gid="1001", home="/home/plain", quota="5000S"),
}
UNKNOWN = ["nobody@example.com", "Andrew@example.com", "andrew@example.com "]

ITEMS = ["uid", "gid", "homedir", "address", "name", "maildir", "quota", "options"]

_AUTHENTICATED = re.compile(r"^ *Authenticated: (.*)  \(uid (\d+), gid (\d+)\)$")
_FIELDS = {"Home Directory": "homedir", "Maildir": "maildir", "Quota": "quota",
           "Options": "options"}


def authtest_items(lab: CourierLab, name: str) -> dict[str, str]:
    """The items of ``name`` as Courier reports them: authtest's lines, plus
    ``name`` from the daemon's PRE reply (authtest does not print it)."""
    proc = lab.authtest(name)
    assert proc.returncode == 0, proc.stderr
    items: dict[str, str] = {}
    for line in proc.stdout.decode("utf-8", "surrogateescape").splitlines():
        match = _AUTHENTICATED.match(line)
        if match:
            items["address"], items["uid"], items["gid"] = match.groups()
            continue
        label, sep, value = line.partition(": ")
        if sep and label.strip() in _FIELDS:
            items[_FIELDS[label.strip()]] = "" if value == "(none)" else value
    reply = lab.request(b"PRE . login " + name.encode() + b"\n")
    assert reply.endswith(b"\n.\n"), reply
    fields = dict(line.split("=", 1) for line in
                  reply.decode("utf-8", "surrogateescape").splitlines()[:-1])
    items["name"] = fields.get("NAME", "")
    assert sorted(items) == sorted(ITEMS), items
    return items


def run_userinfo(environ: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(COURIERUSERINFO), "--stderr", *args], capture_output=True,
                          env={"PATH": "/usr/bin:/bin", **environ}, timeout=60)


def parse_items(stdout: bytes) -> dict[str, str]:
    lines = stdout.decode("utf-8", "surrogateescape").splitlines()
    assert [line.split("=", 1)[0] for line in lines] == ITEMS
    return dict(line.split("=", 1) for line in lines)


class Setup:
    """One populated lab with its daemon running, and the environments that point
    authkit at each of the three sources."""

    def __init__(self, lab: CourierLab, copy_dir: Path, default_options: str) -> None:
        self.lab = lab
        for name, fields in ACCOUNTS.items():
            fields = dict(fields)
            lab.add_user(name, fields.pop("password", None), **fields)
        lab.makeuserdb()
        lab.start_daemon()
        text_copy = copy_dir / "userdb"
        if lab.userdb_path.is_dir():
            shutil.copytree(lab.userdb_path, text_copy)
        else:
            shutil.copy2(lab.userdb_path, text_copy)
        assert not Path(str(text_copy) + ".dat").exists()
        self.sources = {}
        for kind, path in (("text", text_copy), ("compiled", lab.userdb_path)):
            conf = copy_dir / f"{kind}.conf"
            conf.write_text(f"userdb = {path}\ndefault_options = {default_options}\n")
            self.sources[kind] = {"AUTHKIT_CONFIG": str(conf)}
        self.sources["authdaemond"] = {"AUTHKIT_AUTHDAEMON": str(lab.socket_path)}
        # authkitd serving the same userdb, on its own socket (tests/authkitdlab.py)
        self.authkitd = Authkitd(copy_dir / "authkitd", copy_dir / "authkitd.sock",
                                 lab_config(lab)).start()
        self.sources["authkitd"] = {"AUTHKIT_AUTHDAEMON": str(copy_dir / "authkitd.sock")}


@pytest.fixture(scope="module", params=[
    ("file", ""), ("dir", ""), ("file", "wbnodsn=1,disableshared=0"),
], ids=["file", "dir", "defaultoptions"])
def setup(request, tmp_path_factory):
    reasons = missing_requirements()
    if reasons:
        pytest.skip("CourierLab unavailable: " + "; ".join(reasons))
    layout, default_options = request.param
    root = tmp_path_factory.mktemp(f"cui-{request.param_index}")
    lab = CourierLab(root / "lab", layout=layout, defaultoptions=default_options)
    made = None
    try:
        (root / "copy").mkdir()
        made = Setup(lab, root / "copy", default_options)
        yield made
    finally:
        if made is not None:
            made.authkitd.stop()
        lab.close()


@pytest.mark.parametrize("kind", ["text", "compiled", "authdaemond", "authkitd"])
def test_every_item_matches_authtest(setup: Setup, kind: str, tmp_path: Path) -> None:
    for name in ACCOUNTS:
        expected = authtest_items(setup.lab, name)
        proc = run_userinfo(setup.sources[kind], "--", name)
        assert proc.returncode == 0, (name, proc.stderr)
        assert parse_items(proc.stdout) == expected, name


@pytest.mark.parametrize("kind", ["text", "compiled", "authdaemond", "authkitd"])
def test_single_items_match_authtest(setup: Setup, kind: str) -> None:
    expected = authtest_items(setup.lab, "andrew@example.com")
    proc = run_userinfo(setup.sources[kind], "-q", "-u", "-n", "andrew@example.com")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode() == (
        f"uid={expected['uid']}\ngid={expected['gid']}\nname={expected['name']}\n"
        f"quota={expected['quota']}\n")


@pytest.mark.parametrize("kind", ["text", "compiled", "authdaemond", "authkitd"])
def test_names_authtest_rejects_are_unknown(setup: Setup, kind: str) -> None:
    for name in UNKNOWN:
        assert setup.lab.authtest(name).returncode != 0, name
        proc = run_userinfo(setup.sources[kind], "--", name)
        assert (proc.returncode, proc.stdout) == (1, b""), (name, proc.stderr)


@pytest.mark.parametrize("kind", ["text", "compiled", "authdaemond", "authkitd"])
def test_getvuserhome_prints_authtests_home_directory(setup: Setup, kind: str,
                                                      tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", **setup.sources[kind]}
    for name in ACCOUNTS:
        home = authtest_items(setup.lab, name)["homedir"]
        user, _, domain = name.partition("@")
        argv = [str(GETVUSERHOME), user] + ([domain] if domain else [])
        proc = subprocess.run(argv, capture_output=True, env=env, cwd=tmp_path, timeout=60)
        assert (proc.returncode, proc.stdout) == (0, (home + "\n").encode()), (name, proc.stderr)
    assert not (tmp_path / "MARK").exists()
    proc = subprocess.run([str(GETVUSERHOME), "nobody", "example.com"], capture_output=True,
                          env=env, timeout=60)
    assert (proc.returncode, proc.stdout) == (1, b"")


def test_missing_daemon_socket_is_temporary_failure_not_unknown(setup: Setup) -> None:
    env = {"AUTHKIT_AUTHDAEMON": str(setup.lab.socket_path) + ".gone"}
    proc = run_userinfo(env, "andrew@example.com")
    assert (proc.returncode, proc.stdout) == (111, b"")
    proc = subprocess.run([str(GETVUSERHOME), "andrew", "example.com"], capture_output=True,
                          env={"PATH": "/usr/bin:/bin", **env}, timeout=60)
    assert (proc.returncode, proc.stdout) == (111, b"")
