"""Installing authkit like a system package (issue 15): the .deb, the wheel, the sdist.

Built once per session (fixtures): ``make deb`` (dpkg-buildpackage outside the tree,
then lintian), ``python -m build`` (sdist and wheel, no network: the test venv's
setuptools and build), and a fresh Debian-python virtualenv with ``pip install
<wheel>``.  The .deb is never installed: it is unpacked with ``dpkg-deb -x`` into a
throwaway root and examples/demo.sh runs against the unpacked programs.

Whichever way authkit is installed (bin/ of the checkout, the wheel in a venv or
with ``pip install --user`` or into the system site, the unpacked .deb), each per-login program starts
``/usr/bin/python3 -IS`` and its import set holds no heavy module (site, re,
argparse, logging...).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path
from typing import Iterator

import pytest

from authkit import __version__
from authkit.cli.launcher import ADMIN_PROGRAMS, LEAN_PROGRAMS, SHEBANG, SHELL_SCRIPTS

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3"
BASE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "HOME": "/nonexistent"}

#: modules no per-login program may import, whatever the route.
HEAVY = ("site", "sitecustomize", "usercustomize", "re", "argparse", "logging", "typing",
         "dataclasses", "hashlib", "base64", "hmac", "secrets", "random", "inspect", "enum",
         "configparser", "passlib", "ldap3", "psycopg", "asyncio", "ctypes")
#: what courierpassd imports today beyond that, once per connection (argparse for its
#: options; dataclasses and inspect through authkit.poppassd; enum through socket):
#: not this test's to fix, so it fails only if the set grows.
COURIERPASSD_KNOWN = {"argparse", "re", "enum", "dataclasses", "inspect"}
#: authkitd's start (once per daemon, not per login): ctypes for the crypt(3) that
#: releases the GIL for its threads, enum through socket.  Fails if the set grows.
AUTHKITD_KNOWN = {"ctypes", "enum"}


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess:
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", 300)
    return subprocess.run(argv, **kwargs)


def _need_root_debian() -> None:
    if os.geteuid() != 0:
        pytest.skip("the Debian package tests run as root (dpkg-buildpackage; the demo then runs as nobody)")
    for tool in ("dpkg-buildpackage", "dpkg-deb", "lintian", "dh", "make", "git"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed (Debian packages debhelper, dh-python, lintian)")


# ------------------------------------------------------------------ session fixtures


@pytest.fixture(scope="session")
def deb_build(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``make deb`` into a private build directory: {'deb': path, 'output': text}."""
    _need_root_debian()
    before = _run(["git", "-C", str(REPO), "status", "--porcelain", "--ignored"]).stdout
    build = tmp_path_factory.mktemp("debbuild")
    proc = _run(["make", "-C", str(REPO), "deb", f"DEBBUILD={build}"], env={**os.environ, "MAKEFLAGS": ""})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    after = _run(["git", "-C", str(REPO), "status", "--porcelain", "--ignored"]).stdout
    debs = sorted(build.glob("authkit_*_all.deb"))
    assert len(debs) == 1, output[-2000:]
    return {"deb": debs[0], "output": output, "tree_before": before, "tree_after": after}


@pytest.fixture(scope="session")
def unpacked(deb_build: dict) -> Iterator[Path]:
    """The .deb unpacked into a world-readable throwaway root (``R/usr/...``)."""
    top = Path(tempfile.mkdtemp(prefix="authkit-deb-root-"))
    try:
        top.chmod(0o755)
        proc = _run(["dpkg-deb", "-x", str(deb_build["deb"]), str(top)])
        assert proc.returncode == 0, proc.stderr
        yield top
    finally:
        shutil.rmtree(top)


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``python -m build`` (sdist, then the wheel from it) into a private directory."""
    for module in ("build", "twine", "setuptools"):
        if _run([sys.executable, "-c", f"import {module}"]).returncode != 0:
            pytest.skip(f"{module} missing from the test venv (pip install -e '.[test]')")
    out = tmp_path_factory.mktemp("dist")
    proc = _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)])
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    wheels, sdists = sorted(out.glob("*.whl")), sorted(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(out.iterdir())
    return {"wheel": wheels[0], "sdist": sdists[0]}


@pytest.fixture(scope="session")
def wheel_venv(dist: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh Debian-python virtualenv with only the wheel installed (no index)."""
    if not os.access(PYTHON, os.X_OK) or _run([PYTHON, "-c", "import ensurepip, venv"]).returncode:
        pytest.skip("needs /usr/bin/python3 with venv and ensurepip (Debian python3-venv)")
    venv = tmp_path_factory.mktemp("wheelvenv") / "venv"
    proc = _run([PYTHON, "-m", "venv", str(venv)])
    assert proc.returncode == 0, proc.stderr
    proc = _run([str(venv / "bin" / "pip"), "install", "-q", "--no-index", "--no-deps", str(dist["wheel"])],
                env={**BASE_ENV, "PIP_CONFIG_FILE": os.devnull})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return venv


@pytest.fixture(scope="session")
def user_install(dist: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install --user <wheel>`` for /usr/bin/python3, with PYTHONUSERBASE a
    private directory (so nothing outside it changes); returns that user base."""
    if not os.access(PYTHON, os.X_OK) or _run([PYTHON, "-m", "pip", "--version"]).returncode:
        pytest.skip("needs /usr/bin/python3 with pip (Debian python3-pip)")
    base = tmp_path_factory.mktemp("userbase")
    # --break-system-packages: Debian marks its python3 externally managed (PEP 668);
    # the install goes to PYTHONUSERBASE, a test directory, never to the system.
    proc = _run([PYTHON, "-m", "pip", "install", "-q", "--user", "--break-system-packages", "--no-index",
                 "--no-deps", "--no-warn-script-location", str(dist["wheel"])],
                env={**BASE_ENV, "PYTHONUSERBASE": str(base), "HOME": str(base), "PIP_NO_CACHE_DIR": "1",
                     "PIP_CONFIG_FILE": os.devnull})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return base


@pytest.fixture(scope="session")
def system_install(dist: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install <wheel>`` for /usr/bin/python3's system site, staged with
    ``--root`` in a private directory (the /usr/local/bin and
    /usr/local/lib/python3.X/dist-packages layout); returns ROOT/usr/local."""
    if not os.access(PYTHON, os.X_OK) or _run([PYTHON, "-m", "pip", "--version"]).returncode:
        pytest.skip("needs /usr/bin/python3 with pip (Debian python3-pip)")
    root = tmp_path_factory.mktemp("sysroot")
    proc = _run([PYTHON, "-m", "pip", "install", "-q", "--root", str(root), "--break-system-packages",
                 "--no-index", "--no-deps", "--no-warn-script-location", str(dist["wheel"])],
                env={**BASE_ENV, "HOME": str(root), "PIP_NO_CACHE_DIR": "1", "PIP_CONFIG_FILE": os.devnull})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    local = root / "usr" / "local"
    assert (local / "bin" / "courierpasswd").is_file(), sorted(map(str, root.rglob("*")))[:40]
    return local


# ------------------------------------------------------------------ the .deb


def test_make_deb_builds_outside_the_tree_and_lintian_reports_no_error(deb_build: dict) -> None:
    lines = deb_build["output"].splitlines()
    assert any(line.startswith("lintian ") for line in lines), "make deb did not run lintian"
    errors = [line for line in lines if line.startswith("E: ")]
    assert errors == [], errors
    assert deb_build["deb"].name == f"authkit_{__version__}_all.deb"
    assert deb_build["tree_after"] == deb_build["tree_before"], "make deb changed the work tree"


def _deb_contents(deb: Path) -> dict[str, str]:
    """path (without the leading '.') -> mode string, from ``dpkg-deb -c``."""
    proc = _run(["dpkg-deb", "-c", str(deb)])
    assert proc.returncode == 0, proc.stderr
    contents = {}
    for line in proc.stdout.splitlines():
        fields = line.split(None, 5)
        contents[fields[5].split(" -> ")[0].lstrip(".").rstrip("/") or "/"] = fields[0]
    return contents


def test_deb_contents(deb_build: dict) -> None:
    files = _deb_contents(deb_build["deb"])
    for name in LEAN_PROGRAMS:
        assert files.get(f"/usr/sbin/{name}", "").startswith("-rwxr-xr-x"), name
    for name in SHELL_SCRIPTS:
        assert files.get(f"/usr/sbin/{name}", "").startswith("-rwxr-xr-x"), name
    for name in ADMIN_PROGRAMS:
        assert files.get(f"/usr/bin/{name}", "").startswith("-rwxr-xr-x"), name
    library = "/usr/lib/python3/dist-packages/"
    for path in sorted((REPO / "authkit").rglob("*.py")):
        assert library + str(path.relative_to(REPO)) in files, path
    assert not [p for p in files if "__pycache__" in p or p.endswith(".pyc")]
    for page in sorted((REPO / "docs").glob("*.[158]")):
        assert f"/usr/share/man/man{page.suffix[1]}/{page.name}.gz" in files, page.name
    examples = "/usr/share/doc/authkit/examples/"
    for path in sorted((REPO / "contrib").rglob("*")):
        if path.is_file():
            assert examples + str(path.relative_to(REPO / "contrib")) in files, path
    assert examples + "authkit.conf.example" in files
    assert files.get(examples + "poppassd-client.py", "").startswith("-rwxr-xr-x")  # docs/guide.md step 5
    assert not [p for p in files if p.startswith("/etc")], "the package ships files in /etc"
    assert not [p for p in files if p.startswith(("/lib/systemd", "/usr/lib/systemd"))], "a unit is installed"


def test_deb_control_fields(deb_build: dict) -> None:
    fields = {}
    for name in ("Package", "Version", "Architecture", "Depends", "Recommends", "Suggests"):
        proc = _run(["dpkg-deb", "-f", str(deb_build["deb"]), name])
        fields[name] = proc.stdout.strip()
    assert fields["Package"] == "authkit" and fields["Architecture"] == "all"
    assert fields["Version"] == __version__
    depends = [d.strip() for d in fields["Depends"].split(",")]
    for wanted in ("python3 (>= 3.11)", "libgdbm6", "libcrypt1"):
        assert wanted in depends, fields["Depends"]
    assert fields["Recommends"] == "courier-authlib-userdb"
    assert {"python3-ldap3", "python3-psycopg"} <= {s.strip() for s in fields["Suggests"].split(",")}


def test_no_maintainer_script_starts_a_service_or_touches_etc_courier(deb_build: dict, tmp_path: Path) -> None:
    control = tmp_path / "control"
    assert _run(["dpkg-deb", "-e", str(deb_build["deb"]), str(control)]).returncode == 0
    scripts = [p for p in control.iterdir() if p.name in ("preinst", "postinst", "prerm", "postrm", "config")]
    for script in scripts:
        text = script.read_text()
        for word in ("systemctl", "invoke-rc.d", "deb-systemd", "update-rc.d", "service ", "/etc/courier",
                     "authdaemond", "adduser", "useradd"):
            assert word not in text, f"{script.name} mentions {word!r}"
    # only dh_python3's byte-compiling snippets (py3compile/py3clean) are expected
    for script in scripts:
        assert "py3compile" in script.read_text() or "py3clean" in script.read_text(), script.name


def test_deb_programs_are_lean_launchers(unpacked: Path) -> None:
    for name in LEAN_PROGRAMS:
        first = (unpacked / "usr/sbin" / name).read_text().splitlines()[0]
        assert first == "#!/usr/bin/python3 -IS" == SHEBANG, (name, first)


def test_unpacked_programs_use_the_unpacked_library(unpacked: Path) -> None:
    """-I ignores PYTHONPATH: the launcher finds ../lib/python3/dist-packages itself."""
    launcher = unpacked / "usr/sbin/courieruserinfo"
    proc = _run([PYTHON, "-IS", "-v", str(launcher), "-V"], env={**BASE_ENV, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"courieruserinfo (authkit) {__version__}\n"
    sources = [line for line in proc.stderr.splitlines() if "authkit" in line and "/authkit/" in line]
    assert sources, proc.stderr[-2000:]
    assert all(str(unpacked) in line for line in sources), [s for s in sources if str(unpacked) not in s]


def test_demo_steps_against_the_unpacked_deb(unpacked: Path, tmp_path: Path) -> None:
    """examples/demo.sh, as nobody, with its bin/ being the unpacked /usr/sbin programs
    (symlinks: the launchers resolve them and find the unpacked library)."""
    if not shutil.which("setpriv"):
        pytest.skip("setpriv not installed (util-linux)")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_demo import check_transcript

    top = Path(tempfile.mkdtemp(prefix="authkit-deb-demo-"))
    try:
        top.chmod(0o755)
        shutil.copytree(REPO / "examples", top / "examples")
        (top / "bin").mkdir()
        for name in [*LEAN_PROGRAMS, *SHELL_SCRIPTS]:
            (top / "bin" / name).symlink_to(unpacked / "usr/sbin" / name)
        for dirpath, _dirs, names in os.walk(top):
            os.chmod(dirpath, 0o755)
            for name in names:
                path = os.path.join(dirpath, name)
                if not os.path.islink(path):
                    os.chmod(path, os.stat(path).st_mode | 0o444)
        nobody = pwd.getpwnam("nobody")
        proc = _run(["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups",
                     "env", "AUTHKIT_DEMO_DROPPED=1", "TMPDIR=/tmp", "sh", str(top / "examples/demo.sh")],
                    cwd=top, env=BASE_ENV, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        check_transcript(proc.stdout)
    finally:
        shutil.rmtree(top)


# ------------------------------------------------------------------ sdist and wheel


def test_twine_accepts_the_sdist_and_the_wheel(dist: dict) -> None:
    proc = _run([sys.executable, "-m", "twine", "check", "--strict", str(dist["wheel"]), str(dist["sdist"])])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("PASSED") == 2, proc.stdout


def test_version_comes_from_one_place(dist: dict) -> None:
    assert dist["wheel"].name == f"authkit-{__version__}-py3-none-any.whl"
    assert dist["sdist"].name == f"authkit-{__version__}.tar.gz"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    changelog = (REPO / "debian/changelog").read_text().splitlines()[0]
    assert changelog.startswith(f"authkit ({__version__}) "), changelog


def test_wheel_carries_scripts_man_pages_and_contrib(dist: dict) -> None:
    names = set(zipfile.ZipFile(dist["wheel"]).namelist())
    data = f"authkit-{__version__}.data/"
    for name in [*LEAN_PROGRAMS, *SHELL_SCRIPTS]:
        assert data + "scripts/" + name in names, name
    for page in sorted((REPO / "docs").glob("*.[158]")):
        assert f"{data}data/share/man/man{page.suffix[1]}/{page.name}" in names, page.name
    for path in sorted((REPO / "contrib").rglob("*")):
        if path.is_file():
            assert f"{data}data/share/doc/authkit/{path.relative_to(REPO)}" in names, path
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        entry_points = wheel.read(f"authkit-{__version__}.dist-info/entry_points.txt").decode()
        for name in LEAN_PROGRAMS:
            assert wheel.read(data + "scripts/" + name).decode().splitlines()[0] == SHEBANG, name
            assert f"{name} =" not in entry_points, f"{name} is also a console-script wrapper"
    for name in ADMIN_PROGRAMS:
        assert f"{name} = " in entry_points


def test_sdist_carries_what_the_deb_and_wheel_builds_read(dist: dict) -> None:
    import tarfile

    top = f"authkit-{__version__}/"
    with tarfile.open(dist["sdist"]) as sdist:
        names = set(sdist.getnames())
    for name in ("setup.py", "pyproject.toml", "README.md", "Makefile", "debian/control", "debian/rules",
                 "debian/changelog", "bin/getvuserhome.sh", "authkit/cli/launcher.py", "examples/demo.sh",
                 "contrib/authkit.conf.example", "docs/courierpasswd.8"):
        assert top + name in names, name


def test_every_installed_program_of_the_wheel_runs(wheel_venv: Path, tmp_path: Path) -> None:
    bindir = wheel_venv / "bin"
    for name in [*LEAN_PROGRAMS, *ADMIN_PROGRAMS]:
        proc = _run([str(bindir / name), "--help"], env=BASE_ENV)
        assert proc.returncode == 0, (name, proc.stdout, proc.stderr)
        assert "usage" in (proc.stdout + proc.stderr).lower(), name
        if name in LEAN_PROGRAMS:  # each lean program has -V (the admin command has none)
            proc = _run([str(bindir / name), "-V"], env=BASE_ENV)
            assert proc.returncode == 0 and __version__ in proc.stdout + proc.stderr, (name, proc)
    userdb = tmp_path / "userdb"
    shutil.copy(REPO / "examples/userdb", userdb)
    userdb.chmod(0o600)
    env = {**BASE_ENV, "AUTHKIT_USERDB": str(userdb)}
    proc = _run([str(bindir / "getvuserhome.sh"), "andrew", "example.com"], env=env)
    assert (proc.returncode, proc.stdout) == (0, "/home/vmail/example.com/andrew\n"), proc.stderr
    proc = _run([str(bindir / "courierpassd"), "-s", "imap", "--stderr"], input="quit\r\n", env=env)
    assert proc.stdout.splitlines()[0] == f"200 courierpassd v{__version__} hello, who are you?"
    proc = _run([str(bindir / "authkit"), "test", "-s", "imap", "andrew@example.com"], env=env)
    assert proc.returncode == 0 and "/home/vmail/example.com/andrew" in proc.stdout, proc.stdout + proc.stderr
    assert (wheel_venv / "share/man/man8/courierpasswd.8").is_file()
    assert (wheel_venv / "share/doc/authkit/contrib/authkit.conf.example").is_file()


def test_pip_install_user_programs_run_with_their_library(user_install: Path) -> None:
    for name in LEAN_PROGRAMS:
        proc = _run([str(user_install / "bin" / name), "--help"], env=BASE_ENV)  # no PYTHONUSERBASE here
        assert proc.returncode == 0 and "usage" in (proc.stdout + proc.stderr).lower(), (name, proc)
    proc = _run([str(user_install / "bin" / "courierpasswd"), "-V"], env=BASE_ENV)
    assert proc.stdout == f"courierpasswd (authkit) {__version__}\n", proc.stderr
    assert os.access(user_install / "bin" / "getvuserhome.sh", os.X_OK)


def _other_python() -> str | None:
    """A working interpreter of another X.Y than /usr/bin/python3 (3.11 or 3.12: no
    crypt-r needed), from PATH or pyenv's versions, if this machine has one."""
    here = _run([PYTHON, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]).stdout.strip()
    pyenv = Path(os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))) / "versions"
    for version in ("3.12", "3.11"):
        if version == here:
            continue
        candidates = [shutil.which(f"python{version}")] + sorted(map(str, pyenv.glob(f"{version}*/bin/python{version}")))
        for found in filter(None, candidates):
            if _run([found, "-c", "import venv, ensurepip"], env=BASE_ENV).returncode == 0:
                return found
    return None


def test_wheel_in_a_venv_of_another_python_version_runs_that_venvs_python(dist: dict, tmp_path: Path) -> None:
    """/usr/bin/python3 finds no library for its own version and re-executes the
    virtualenv's python3 -IS (one more start; correct)."""
    other = _other_python()
    if other is None or not os.access(PYTHON, os.X_OK):
        pytest.skip("needs /usr/bin/python3 and a python3.12 of another version on PATH")
    venv = tmp_path / "venv"
    assert _run([other, "-m", "venv", str(venv)]).returncode == 0
    proc = _run([str(venv / "bin/pip"), "install", "-q", "--no-index", "--no-deps", str(dist["wheel"])],
                env={**BASE_ENV, "PIP_CONFIG_FILE": os.devnull})
    assert proc.returncode == 0, proc.stderr
    userdb = tmp_path / "userdb"
    shutil.copy(REPO / "examples/userdb", userdb)
    userdb.chmod(0o600)
    proc = _run([str(venv / "bin/courieruserinfo"), "--homedir", "andrew@example.com"],
                env={**BASE_ENV, "AUTHKIT_USERDB": str(userdb)})
    assert (proc.returncode, proc.stdout) == (0, "homedir=/home/vmail/example.com/andrew\n"), proc.stderr


def test_wheel_programs_ignore_the_environment(wheel_venv: Path, tmp_path: Path) -> None:
    """No PYTHONPATH, no user site: a planted authkit package is never imported."""
    planted = tmp_path / "planted" / "authkit"
    planted.mkdir(parents=True)
    (planted / "__init__.py").write_text("raise SystemExit('planted authkit imported')\n")
    env = {**BASE_ENV, "PYTHONPATH": str(planted.parent), "PYTHONSTARTUP": str(planted / "__init__.py"),
           "PYTHONUSERBASE": str(tmp_path / "planted"), "HOME": str(tmp_path)}
    proc = _run([str(wheel_venv / "bin" / "courieruserinfo"), "-V"], env=env, cwd=planted.parent)
    assert (proc.returncode, proc.stdout) == (0, f"courieruserinfo (authkit) {__version__}\n"), proc.stderr


# ------------------------------------------------------------------ lean import sets, every route


def _route_dir(route: str, request: pytest.FixtureRequest) -> Path:
    if route == "bin":
        return REPO / "bin"
    if route == "wheel":
        return request.getfixturevalue("wheel_venv") / "bin"
    if route == "user":
        return request.getfixturevalue("user_install") / "bin"
    if route == "system":
        return request.getfixturevalue("system_install") / "bin"
    return request.getfixturevalue("unpacked") / "usr/sbin"


def _imports(launcher: Path, args: list[str], env: dict, fd3: bytes | None = None) -> tuple[int, set[str]]:
    """Run ``launcher`` as its own first line says (interpreter + flags) with
    ``-X importtime``; return (exit status, imported module names)."""
    first = launcher.read_text().splitlines()[0]
    assert first == SHEBANG, (launcher, first)
    interpreter, flags = first[2:].split(" ", 1)
    kwargs: dict = {}
    if fd3 is not None:
        r, w = os.pipe()
        os.write(w, fd3)
        os.close(w)
        kwargs = {"pass_fds": (3,), "preexec_fn": lambda: os.dup2(r, 3)}
    try:
        proc = subprocess.run([interpreter, flags, "-X", "importtime", str(launcher), *args],
                              capture_output=True, text=True, env=env, timeout=60, **kwargs)
    finally:
        if fd3 is not None:
            os.close(r)
    names = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
             if line.startswith("import time:") and "|" in line}
    names.discard("package")  # the header line
    return proc.returncode, names


def _authkitd_start_imports(launcher: Path, userdb: Path, tmp_path: Path) -> set[str]:
    """Start authkitd (as its first line says, with -X importtime) on ``userdb``
    until its socket answers, stop it with SIGTERM; return what it had imported."""
    import signal
    import socket
    import time

    first = launcher.read_text().splitlines()[0]
    assert first == SHEBANG, (launcher, first)
    interpreter, flags = first[2:].split(" ", 1)
    config = tmp_path / "authkitd.conf"
    config.write_text(f"userdb = {userdb}\n")
    sock = tmp_path / "authkitd.sock"
    stderr = tmp_path / "authkitd.stderr"
    with open(stderr, "wb") as err:
        proc = subprocess.Popen([interpreter, flags, "-X", "importtime", str(launcher), "--config", str(config),
                                 "--socket", str(sock), "--stderr"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err, env=BASE_ENV)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, stderr.read_text()[-2000:]
            try:
                with socket.socket(socket.AF_UNIX) as client:
                    client.connect(str(sock))
                break
            except OSError:
                assert time.monotonic() < deadline, "authkitd's socket did not answer within 60 s"
                time.sleep(0.05)  # polling a condition with a deadline, not a synchronisation sleep
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return {line.rsplit("|", 1)[1].strip() for line in stderr.read_text().splitlines()
            if line.startswith("import time:") and "|" in line} - {"package"}


@pytest.mark.parametrize("route", ["bin", "wheel", "user", "system", "deb"])
def test_per_login_import_sets_hold_no_heavy_module(route: str, request: pytest.FixtureRequest,
                                                    tmp_path: Path) -> None:
    if not os.access(PYTHON, os.X_OK):
        pytest.skip("needs /usr/bin/python3")
    bindir = _route_dir(route, request)
    userdb = tmp_path / "userdb"
    shutil.copy(REPO / "examples/userdb", userdb)
    userdb.chmod(0o600)
    env = {**BASE_ENV, "AUTHKIT_USERDB": str(userdb)}
    checks = {
        "courierpasswd": (["-s", "imap", "--", "/bin/true"], b"andrew@example.com\0wrong-password\0", {1}),
        "courieruserinfo": (["andrew@example.com"], None, {0}),
        "courierpassd": (["-V"], None, {0}),
    }
    assert set(checks) | {"authkitd"} >= set(LEAN_PROGRAMS), "a new per-login program needs a check here"
    for name in LEAN_PROGRAMS:
        if name == "authkitd":  # its start: serving, until SIGTERM
            names = _authkitd_start_imports(bindir / name, userdb, tmp_path)
        else:
            args, fd3, codes = checks[name]
            code, names = _imports(bindir / name, args, env, fd3)
            assert code in codes, (route, name, code)
        assert f"authkit.cli.{name}" in names, (route, name, sorted(names))
        heavy = {n.split(".")[0] for n in names if n.split(".")[0] in HEAVY}
        known = {"courierpassd": COURIERPASSD_KNOWN, "authkitd": AUTHKITD_KNOWN}.get(name)
        if known is not None:
            assert "site" not in heavy and heavy <= known, (route, name, sorted(heavy - known))
        else:
            assert not heavy, (route, name, sorted(heavy))
