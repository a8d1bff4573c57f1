"""``make demo`` and the example userdb it runs on.

The demo is run the way a new user would: from a fresh copy of the checkout (the
files git tracks, nothing else: no .venv, no __pycache__), as ``nobody`` with no
supplementary groups (``setpriv``), with a bare PATH.  It must exit 0, print the
whole transcript, and leave no process and no temporary directory behind.
Run as root it must drop to nobody itself.

examples/userdb is checked against Courier itself: every password that
examples/README.md lists verifies through Courier's authdaemond (``authtest``),
and through authkit; the HMAC field equals authkit's HMAC state of its password.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def tracked_files() -> list[str]:
    """The checkout's files as a fresh clone has them (tracked by git), or, without
    git, every file outside .git, .venv and caches."""
    if (REPO / ".git").exists() and shutil.which("git"):
        proc = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True)
        return [name for name in proc.stdout.decode().split("\0") if name and (REPO / name).is_file()]
    names = []
    for path in REPO.rglob("*"):
        parts = path.relative_to(REPO).parts
        if path.is_file() and not {".git", ".venv", "__pycache__", ".pytest_cache"} & set(parts):
            names.append(str(path.relative_to(REPO)))
    return names


@pytest.fixture
def fresh_copy():  # noqa: ANN201
    """A copy of the checkout under a world-readable directory in /tmp."""
    if not shutil.which("setpriv"):
        pytest.skip("setpriv not installed (util-linux)")
    top = Path(tempfile.mkdtemp(prefix="authkit-fresh-"))
    top.chmod(0o755)
    copy = top / "authkit"
    try:
        for name in tracked_files():
            target = copy / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target)
        for dirpath, dirnames, filenames in os.walk(copy):
            os.chmod(dirpath, 0o755)
            for name in filenames:
                path = os.path.join(dirpath, name)
                os.chmod(path, os.stat(path).st_mode | 0o444)
        yield copy
    finally:
        shutil.rmtree(top)


def demo_processes(copy: Path) -> list[int]:
    """Processes whose command line mentions the copy (courierpassd left running)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if str(copy).encode() in cmdline:
            found.append(int(entry))
    return found


def check_transcript(out: str) -> None:
    assert "200 courierpassd v" in out
    assert "C: user andrew@example.com" in out
    assert "S: 200 Password changed" in out
    assert "S: 200 Bye" in out
    # the stored imappw changed from the example's $1$ to a new hash; systempw kept
    assert "imappw=$1$F9L9BxV/$NU74umr63FJMu/bTpx/f9." in out
    assert re.search(r"imappw=\$6\$", out)
    assert out.count("systempw={SSHA}/XHdL12i/MQXXT1dzWwXlu/sfqhAgVio") == 2
    assert re.search(r"Andrew-New-Pw-2\\0' \| bin/courierpasswd .*\ncourierpasswd: auth user=andrew@example\.com "
                     r"service=imap result=ok\nexit 0\n", out)
    assert re.search(r"Andrew-Imap-1\\0' \| bin/courierpasswd .*\ncourierpasswd: auth user=andrew@example\.com "
                     r"service=imap result=rejected\nexit 1\n", out)
    assert "$ bin/courieruserinfo andrew@example.com\nuid=5000\ngid=5000\nhomedir=/home/vmail/example.com/andrew\n" in out
    assert "$ bin/getvuserhome.sh andrew example.com\n/home/vmail/example.com/andrew\nexit 0\n" in out
    assert "courierpassd: passwd user=andrew@example.com ip=127.0.0.1 service=imap result=changed" in out
    assert "courierpassd: stopped" in out
    assert "(expected " not in out  # no step reported a surprise
    assert out.rstrip().endswith("demo: every step gave the expected answer")


def run_demo(copy: Path, argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=copy, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "LANG": "C", "HOME": "/nonexistent"})


def test_make_demo_from_a_fresh_copy_as_nobody_prints_the_transcript_and_cleans_up(fresh_copy: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to become nobody with setpriv")
    nobody = pwd.getpwnam("nobody")
    argv = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
    argv += ["make", "-s", "demo"] if shutil.which("make") else ["sh", "examples/demo.sh"]
    proc = run_demo(fresh_copy, argv)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert proc.stderr == "", proc.stderr  # the transcript is all on stdout
    assert "(user nobody," in out
    check_transcript(proc.stdout)
    demo_dir = re.search(r"temporary directory (\S+)\)", out).group(1)
    assert not os.path.exists(demo_dir), "the demo left its temporary directory"
    assert demo_processes(fresh_copy) == [], "the demo left a process running"


def test_demo_run_as_root_drops_to_nobody(fresh_copy: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only meaningful as root")
    before = set(Path("/tmp").glob("authkit-demo-src.*"))
    proc = run_demo(fresh_copy, ["sh", "examples/demo.sh"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("(running as root: the demo runs as nobody")
    assert "(user nobody," in proc.stdout
    check_transcript(proc.stdout)
    assert set(Path("/tmp").glob("authkit-demo-src.*")) <= before, "the copy for nobody was left behind"
    assert demo_processes(fresh_copy) == []


def test_poppassd_client_reports_a_refusal_with_exit_1(tmp_path: Path) -> None:
    """The demo's client stops at the first 5xx and exits 1 (a wrong old password)."""
    userdb = tmp_path / "userdb"
    shutil.copyfile(EXAMPLES / "userdb", userdb)
    userdb.chmod(0o600)
    config = tmp_path / "authkit.conf"
    config.write_text(f"userdb = {userdb}\nbad_pass_delay = 0\n")
    server = subprocess.Popen([str(REPO / "bin/courierpassd"), "--config", str(config), "-s", "imap",
                               "--stderr", "--listen", "127.0.0.1:0"],
                              stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()
        port = re.search(r"listening on 127\.0\.0\.1:(\d+)", line).group(1)
        proc = subprocess.run(["/usr/bin/python3", "-IS", str(EXAMPLES / "poppassd-client.py"), "127.0.0.1",
                               port, "andrew@example.com", "wrong-old-pw", "Whatever-New-1"],
                              capture_output=True, text=True, timeout=60)
    finally:
        server.terminate()
        server.wait(30)
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[-1].startswith("S: 500 ")
    assert "C: newpass" not in proc.stdout


# -- the example userdb ----------------------------------------------------------------


def readme_rows() -> list[tuple[str, str, str, str]]:
    """(account, field, password, made with) from examples/README.md's table."""
    rows = []
    for line in (EXAMPLES / "README.md").read_text().splitlines():
        match = re.match(r"^\| `([^`]+)` \| `([^`]+)` \| `([^`]+)` \| [^|]+ \| (.+) \|$", line)
        if match:
            rows.append(match.groups())
    return rows


def userdb_records() -> dict[str, dict[str, str]]:
    records = {}
    for line in (EXAMPLES / "userdb").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, fields = line.partition("\t")
        records[name] = dict(field.partition("=")[::2] for field in fields.split("|"))
    return records


def test_readme_lists_every_password_field_of_the_example_userdb() -> None:
    rows = readme_rows()
    listed = {(account, field) for account, field, _, _ in rows}
    present = {(name, field) for name, fields in userdb_records().items()
               for field in fields if field.endswith("pw")}
    assert listed == present
    assert len(rows) >= 8


def test_example_userdb_passwords_verify_with_courier_authtest(courier_lab) -> None:  # noqa: ANN001
    from authkit.errors import Rejected
    from authkit.schemes.hmacstate import hmac_state
    from authkit.userdb.source import UserdbSource

    shutil.copyfile(EXAMPLES / "userdb", courier_lab.userdb_path)
    os.chmod(courier_lab.userdb_path, 0o600)
    courier_lab.makeuserdb()
    courier_lab.start_daemon()
    records = userdb_records()
    authkit_source = UserdbSource(str(EXAMPLES / "userdb"))
    for account, field, password, _made_with in readme_rows():
        if field.startswith("hmac-"):
            algorithm = field[len("hmac-"):-len("pw")]
            assert records[account][field] == hmac_state(password.encode(), algorithm)
            continue
        service = field[:-len("pw")] if field != "systempw" else "login"
        result = courier_lab.authtest("-s", service, account, password)
        assert result.returncode == 0, (account, field, result.stderr)
        authkit_source.authenticate(account, password.encode(), service)
        # a wrong first character (DES crypt reads only the first 8)
        wrong = courier_lab.authtest("-s", service, account, "x" + password)
        assert wrong.returncode != 0, (account, field)
        with pytest.raises(Rejected):
            authkit_source.authenticate(account, ("x" + password).encode(), service)


def test_authkit_conf_example_and_man_page_cover_every_key_of_authkit_config() -> None:
    """contrib/authkit.conf.example parses with every line uncommented (its values
    are the defaults), and it and docs/authkit.conf.5 name exactly the keys
    authkit.config knows."""
    from authkit import config

    example = (REPO / "contrib/authkit.conf.example").read_text()
    uncommented = "\n".join(re.sub(r"^#(\w+ =)", r"\1", line) for line in example.splitlines())
    values = config.parse_config(uncommented, "authkit.conf.example")
    assert set(values) == set(config._SCHEMA)
    defaults = config.Settings()
    for key, value in values.items():
        if key not in ("source", "userdb", "authdaemon_socket"):
            assert value == getattr(defaults, key), key
    manual = (REPO / "docs/authkit.conf.5").read_text()
    named = set(re.findall(r"^\.BR (\w+) \"", manual, re.MULTILINE))
    named |= set(re.findall(r"\" (\w+) \"", manual))
    assert set(config._SCHEMA) <= named, set(config._SCHEMA) - named
