"""courierpasswd as a program: bin/courierpasswd run as a subprocess with fd 3 a pipe.

Sections of docs/courierpasswd.8 checked: OPTIONS, INPUT, EXIT STATUS, ENVIRONMENT.
Every run asserts that nothing was written on stdout (under qpsmtpd and
qmail-smtpd it is the client's socket).

Fixture hashes were made with the real tools and are pasted here:
``mkpasswd -m sha512crypt -S saltsaltsalt1234 secret``,
``mkpasswd -m sha512crypt -S carolcarolsalt12 carolpass`` and
``echo secret | userdbpw -hmac-md5`` (``-hmac-sha1``, ``-hmac-sha256``),
Courier authlib 0.71 / whois 5.5 on Debian 12.
"""

from __future__ import annotations

import hmac
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / "bin" / "courierpasswd"

SECRET_SHA512 = (
    "$6$saltsaltsalt1234$dtxmlxeVqETZAXDiGjM3F08.IhI21yWjIUwkj8N4k68tFPNzB8dV9Hdgi6NuUG"
    "jrhzLc9V.BoyEEcHx3QIz5d0"
)
CAROL_SHA512 = (
    "$6$carolcarolsalt12$PfsqKqGuE5lef41LCmBHpv0ldF/FJxV4AWxki0daWhAewZ26xBu3Uft0qKef3o"
    "jH.fJo2SpPDsJpJh.5BJ5mX1"
)
SECRET_HMAC = {
    "md5": "cd3ba7deaad6e5ca23448ba42e379747a9e0f7f1fbc00c8a81bbaac395731b56",
    "sha1": "091e0f4c6cb5277ee2beb639a60d0831b5c8adcdaee172433df3e96ba4f00fb1b6a490c3929d2034",
    "sha256": (
        "5a84072aab37d22275b139adf7a92564c7f674be98e77d991f6f689d29e05245"
        "72804f31b042016804d3dea2f4e991a21b1c8906be161594b202fb74afc8ceb3"
    ),
}
CHALLENGE = b"<27914.1795651359@lab.example>"

# prog that reports its ids, cwd, USER/HOME/AUTHORIZED and extra args on fd 4
REPORT = [
    "/bin/sh", "-c",
    'printf "%s|%s|%s|%s|%s|%s|%s|%s|%s\\n" "$(id -u)" "$(id -g)" "$(id -G)" "$(pwd)" '
    '"$USER" "$HOME" "${AUTHORIZED-}" "${FOO-}" "$*" >&4',
    "report",
]


@pytest.fixture
def userdb() -> "Path":
    """A text userdb in a fresh world-readable directory under /tmp (so that the
    program still reads it after dropping to another uid).  Accounts:
    alice (the runner's uid/gid, 5002 as root; password 'secret', HMAC secrets of 'secret'),
    carol (uid/gid 65534, 'carolpass'), dave (uid/gid 5000, 'secret', for
    password changes), sysop (uid 50, 'secret'), imaponly (only imappw = 'secret')."""
    root = Path(tempfile.mkdtemp(prefix="cpw-unit-", dir="/tmp"))
    try:
        os.chmod(root, 0o755)
        for name in ("alice", "carol", "dave", "sysop", "imaponly"):
            (root / name).mkdir(mode=0o755)
        # the runner's ids, or 5002 as root: root courierpasswd refuses to run
        # prog for a uid-0 or gid-0 record (allow_root_ids)
        uid, gid = (os.getuid(), os.getgid()) if os.geteuid() else (5002, 5002)
        hmacs = "|".join(f"hmac-{alg}pw={value}" for alg, value in SECRET_HMAC.items())
        lines = [
            f"alice\tuid={uid}|gid={gid}|home={root}/alice|systempw={SECRET_SHA512}|{hmacs}",
            f"carol\tuid=65534|gid=65534|home={root}/carol|systempw={CAROL_SHA512}",
            f"dave\tuid=5000|gid=5000|home={root}/dave|systempw={SECRET_SHA512}",
            f"sysop\tuid=50|gid=50|home={root}/sysop|systempw={SECRET_SHA512}",
            f"imaponly\tuid={uid}|gid={gid}|home={root}/imaponly|imappw={SECRET_SHA512}",
        ]
        path = root / "userdb"
        path.write_text("\n".join(lines) + "\n")
        os.chmod(path, 0o644)
        yield path
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _onto(fd: int, target: int) -> None:
    """In the child: make ``fd`` appear as inheritable descriptor ``target``
    (dup2 alone would leave a pipe that already is ``target`` close-on-exec)."""
    if fd == target:
        os.set_inheritable(fd, True)
    else:
        os.dup2(fd, target)


class Result:
    def __init__(self, returncode: int, stdout: bytes, stderr: bytes, fd4: bytes) -> None:
        self.returncode, self.stdout, self.stderr, self.fd4 = returncode, stdout, stderr, fd4

    @property
    def report(self) -> list[str]:
        return self.fd4.decode().rstrip("\n").split("|")


def run(args: list[str], fd3: bytes | None = b"", *, userdb: Path | None = None,
        env: dict | None = None, stdin: bytes = b"", fd4: bool = True,
        argv0: list[str] | None = None) -> Result:
    """Run bin/courierpasswd ARGS with ``fd3`` on descriptor 3 (None: fd 3 closed),
    ``stdin`` on 0 and a pipe on descriptor 4; return what came out."""
    full_env = {"PATH": "/usr/bin:/bin", "LANG": "C"}
    if userdb is not None:
        full_env["AUTHKIT_USERDB"] = str(userdb)
    full_env.update(env or {})
    r3 = None
    if fd3 is not None:
        r3, w3 = os.pipe()
        os.write(w3, fd3)
        os.close(w3)
    r4, w4 = os.pipe()

    def child() -> None:
        if r3 is None:
            try:
                os.close(3)
            except OSError:
                pass
        else:
            _onto(r3, 3)
        if fd4:
            _onto(w4, 4)
        else:
            try:
                os.close(4)
            except OSError:
                pass

    try:
        proc = subprocess.run(
            (argv0 or []) + [str(BIN), *args], input=stdin, capture_output=True,
            env=full_env, preexec_fn=child, close_fds=False, timeout=60,
        )
    finally:
        os.close(w4)
        if r3 is not None:
            os.close(r3)
    with os.fdopen(r4, "rb") as reader:
        fd4_data = reader.read()
    assert proc.stdout == b"", f"courierpasswd wrote on stdout: {proc.stdout!r}"
    return Result(proc.returncode, proc.stdout, proc.stderr, fd4_data)


def cram(alg: str, challenge: bytes = CHALLENGE, password: bytes = b"secret") -> bytes:
    return hmac.new(password, challenge, alg).hexdigest().encode()


# ------------------------------------------------------------------ plain logins


def test_good_password_execs_prog_with_user_home_env_and_fd4(userdb: Path) -> None:
    result = run(["--", *REPORT], b"alice\0secret\0\0", userdb=userdb, env={"FOO": "kept"})
    assert result.returncode == 0, result.stderr
    uid, gid, groups, cwd, user, home, authorized, foo, extra = result.report
    assert user == "alice"
    assert home == str(userdb.parent / "alice")
    assert foo == "kept" and authorized == ""


@pytest.mark.parametrize("data", [b"alice\0secret\0", b"alice\0secret\0\0", b"alice\0secret\0Y123456\0",
                                  b"alice\0secret\0<1.2@host>\0"])
def test_every_caller_shape_logs_in(userdb: Path, data: bytes) -> None:
    assert run(["--", *REPORT], data, userdb=userdb).report[4] == "alice"


def test_prog_exit_status_is_the_result(userdb: Path) -> None:
    assert run(["--", "/bin/sh", "-c", "exit 7"], b"alice\0secret\0", userdb=userdb).returncode == 7


def test_no_prog_exits_0_after_success(userdb: Path) -> None:
    result = run([], b"alice\0secret\0\0", userdb=userdb)
    assert result.returncode == 0 and result.fd4 == b""


def test_first_non_option_ends_options_without_double_dash(userdb: Path) -> None:
    result = run(["-s", "login", *REPORT, "-x"], b"alice\0secret\0", userdb=userdb)
    assert result.returncode == 0 and result.report[8] == "-x"


def test_extra_args_and_repeated_double_dash_reach_prog_like_tmda_cgi(userdb: Path) -> None:
    args = ["-s", "imap", "--", *REPORT, "-s", "imap", "--", "/usr/bin/true"]
    result = run(args, b"alice\0secret\0", userdb=userdb)
    assert result.returncode == 0
    assert result.report[8] == "-s imap -- /usr/bin/true"


def test_wrong_password_and_unknown_user_exit_1_with_the_same_log_text(userdb: Path) -> None:
    bad = run(["--stderr", "--", *REPORT], b"alice\0wrong\0\0", userdb=userdb)
    unknown = run(["--stderr", "--", *REPORT], b"nobody-here\0wrong\0\0", userdb=userdb)
    assert bad.returncode == unknown.returncode == 1
    assert bad.fd4 == unknown.fd4 == b""
    assert bad.stderr.replace(b"alice", b"X") == unknown.stderr.replace(b"nobody-here", b"X")
    assert b"result=rejected" in bad.stderr


def test_empty_password_is_rejected(userdb: Path) -> None:
    assert run(["--", *REPORT], b"alice\0\0\0", userdb=userdb).returncode == 1


def test_service_selects_the_service_password(userdb: Path) -> None:
    assert run(["-s", "imap", "--", *REPORT], b"imaponly\0secret\0", userdb=userdb).returncode == 0
    assert run(["--service=imap"], b"imaponly\0secret\0", userdb=userdb).returncode == 0
    assert run(["-simap"], b"imaponly\0secret\0", userdb=userdb).returncode == 0
    assert run(["-s", "login"], b"imaponly\0secret\0", userdb=userdb).returncode == 1


# ------------------------------------------------------------------- the input


def test_over_512_bytes_exit_1(userdb: Path) -> None:
    result = run(["--", *REPORT], b"alice\0" + b"s" * 600 + b"\0", userdb=userdb)
    assert result.returncode == 1 and result.fd4 == b""


@pytest.mark.parametrize("data", [b"", b"alice", b"alice\0", b"alice\0secret"])
def test_no_data_or_missing_nul_exit_2(userdb: Path, data: bytes) -> None:
    assert run(["--", *REPORT], data, userdb=userdb).returncode == 2


def test_closed_fd3_is_a_read_error_exit_111_like_djb(userdb: Path) -> None:
    result = run(["--stderr", "--", *REPORT], None, userdb=userdb)
    assert result.returncode == 111
    assert b"cannot read descriptor 3" in result.stderr


def test_stdin_option_reads_descriptor_0(userdb: Path) -> None:
    result = run(["--stdin", "--", *REPORT], None, userdb=userdb, stdin=b"alice\0secret\0")
    assert result.returncode == 0 and result.report[4] == "alice"


def test_fd3_is_closed_before_exec(userdb: Path) -> None:
    prog = ["/bin/sh", "-c", 'if [ -e /proc/self/fd/3 ]; then echo open >&4; else echo closed >&4; fi']
    result = run(["--", *prog], b"alice\0secret\0", userdb=userdb)
    assert result.returncode == 0 and result.fd4 == b"closed\n"


# ------------------------------------------------------------------------- exec


def test_exec_failure_exits_111(userdb: Path) -> None:
    result = run(["--stderr", "--", "/nonexistent/prog"], b"alice\0secret\0", userdb=userdb)
    assert result.returncode == 111
    assert b"cannot exec" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to change ids")
def test_as_root_takes_the_accounts_ids_and_home_like_djb(userdb: Path) -> None:
    result = run(["--", *REPORT], b"carol\0carolpass\0", userdb=userdb)
    assert result.returncode == 0, result.stderr
    uid, gid, groups, cwd, user, home = result.report[:6]
    assert (uid, gid, groups) == ("65534", "65534", "65534")
    assert cwd == home == str(userdb.parent / "carol")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to change ids")
@pytest.mark.parametrize("ids", ["uid=0000000000|gid=5000", "uid=5000|gid=00", "uid=0|gid=0"])
def test_as_root_a_uid_0_or_gid_0_record_never_runs_prog_as_root(userdb: Path, ids: str) -> None:
    """Issue 17 item 5: ``uid=0000000000`` ran prog as root, ``gid=00`` with group root."""
    home = userdb.parent / "alice"
    userdb.write_text(userdb.read_text() + f"rooty\t{ids}|home={home}|systempw={SECRET_SHA512}\n")
    result = run(["--stderr", "--", *REPORT], b"rooty\0secret\0", userdb=userdb)
    assert result.returncode == 1 and result.fd4 == b""
    which = "uid 0" if "uid=0" in ids else "gid 0"
    assert f"user=rooty service=login result=rejected: the account has {which}".encode() in result.stderr
    assert b"allow_root_ids" in result.stderr
    # without prog no ids change, so nothing is refused
    assert run(["--stderr"], b"rooty\0secret\0", userdb=userdb).returncode == 0
    # the setting allows it explicitly
    config = userdb.parent / "allow.conf"
    config.write_text("allow_root_ids = yes\n")
    result = run(["--", *REPORT], b"rooty\0secret\0", userdb=userdb, env={"AUTHKIT_CONFIG": str(config)})
    assert result.returncode == 0, result.stderr
    uid, gid = result.report[:2]
    assert (uid, gid) == tuple(part.split("=")[1].lstrip("0") or "0" for part in ids.split("|"))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chdir-fail as root")
def test_as_root_missing_home_exits_111(userdb: Path) -> None:
    os.rmdir(userdb.parent / "carol")
    result = run(["--stderr", "--", *REPORT], b"carol\0carolpass\0", userdb=userdb)
    assert result.returncode == 111 and b"cannot chdir" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_not_root_changes_no_ids_and_no_directory(userdb: Path) -> None:
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    result = run(["--", *REPORT], b"alice\0secret\0", userdb=userdb, argv0=as_nobody)
    assert result.returncode == 0, result.stderr
    uid, gid, groups, cwd, user, home = result.report[:6]
    assert (uid, gid) == ("65534", "65534")
    assert cwd == os.getcwd()
    assert user == "alice" and home == str(userdb.parent / "alice")


# ------------------------------------------------------------------------- CRAM


@pytest.mark.parametrize("alg", ["md5", "sha1", "sha256"])
def test_cram_both_field_orders_log_in(userdb: Path, alg: str) -> None:
    hoffmann = b"alice\0" + cram(alg) + b"\0" + CHALLENGE + b"\0"
    dabrowski = b"alice\0" + CHALLENGE + b"\0" + cram(alg) + b"\0"
    for data in (hoffmann, dabrowski):
        result = run(["-C", alg, "--", *REPORT], data, userdb=userdb)
        assert result.returncode == 0, (alg, result.stderr)
        assert result.report[4] == "alice"


@pytest.mark.parametrize("alg", ["md5", "sha1", "sha256"])
def test_cram_wrong_response_or_unknown_user_exit_1(userdb: Path, alg: str) -> None:
    wrong = b"alice\0" + cram(alg, password=b"wrong") + b"\0" + CHALLENGE + b"\0"
    unknown = b"ghost\0" + cram(alg) + b"\0" + CHALLENGE + b"\0"
    assert run(["--cramtype", alg], wrong, userdb=userdb).returncode == 1
    assert run(["--cramtype=" + alg], unknown, userdb=userdb).returncode == 1


def test_cramtype_also_accepts_plain_logins(userdb: Path) -> None:
    assert run(["-C", "md5", "--", *REPORT], b"alice\0secret\0\0", userdb=userdb).returncode == 0


def test_bad_cramtype_is_misuse(userdb: Path) -> None:
    result = run(["-C", "md4", "--", *REPORT], b"alice\0secret\0", userdb=userdb)
    assert result.returncode == 2 and b"usage:" in result.stderr


# --------------------------------------------------------------- password change


def test_change_password_then_new_one_works_and_old_one_not(userdb: Path) -> None:
    result = run(["-c", "--stderr", "--", *REPORT], b"dave\0secret\0n3w-passw0rd\0", userdb=userdb)
    assert result.returncode == 0, result.stderr
    assert b"result=changed" in result.stderr
    assert b"n3w-passw0rd" not in result.stderr and b"secret" not in result.stderr
    assert run([], b"dave\0n3w-passw0rd\0", userdb=userdb).returncode == 0
    assert run([], b"dave\0secret\0", userdb=userdb).returncode == 1


def test_change_without_prog_exits_0(userdb: Path) -> None:
    assert run(["--changepwd"], b"dave\0secret\0n3w-passw0rd\0", userdb=userdb).returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="ids and cwd change only as root")
def test_change_as_root_without_prog_needs_no_home(userdb: Path) -> None:
    """Without prog nothing is run, so no uid switch or chdir is attempted: a
    missing home directory must not turn a committed change into exit 111."""
    text = userdb.read_text().replace(f"home={userdb.parent}/dave", "home=/nonexistent/dave")
    userdb.write_text(text)
    done = run(["-c", "--stderr"], b"dave\0secret\0n3w-passw0rd\0", userdb=userdb)
    assert done.returncode == 0 and b"result=changed" in done.stderr, done.stderr
    login = run(["--stderr"], b"dave\0n3w-passw0rd\0", userdb=userdb)
    assert login.returncode == 0, login.stderr


def test_change_ignores_cramtype(userdb: Path) -> None:
    assert run(["-c", "-C", "md5"], b"dave\0secret\0n3w-passw0rd\0", userdb=userdb).returncode == 0


def test_change_refused_by_policy_exits_1(userdb: Path) -> None:
    short = run(["-c", "--stderr"], b"dave\0secret\0short\0", userdb=userdb)
    assert short.returncode == 1 and b"too short" in short.stderr
    low_uid = run(["-c", "--stderr"], b"sysop\0secret\0n3w-passw0rd\0", userdb=userdb)
    assert low_uid.returncode == 1 and b"uid below" in low_uid.stderr
    assert run([], b"sysop\0secret\0", userdb=userdb).returncode == 0  # unchanged


def test_change_with_wrong_old_password_exits_1(userdb: Path) -> None:
    assert run(["-c"], b"dave\0wrong\0n3w-passw0rd\0", userdb=userdb).returncode == 1
    assert run([], b"dave\0secret\0", userdb=userdb).returncode == 0


def test_change_without_nul_after_new_password_is_misuse(userdb: Path) -> None:
    assert run(["-c"], b"dave\0secret\0n3w-passw0rd", userdb=userdb).returncode == 2


# ---------------------------------------------------------------- Dovecot lookups


def test_authorized_lookup_of_known_user_sets_authorized_2(userdb: Path) -> None:
    result = run(["--", *REPORT], b"alice\0\0\0", userdb=userdb, env={"AUTHORIZED": "1"})
    assert result.returncode == 0
    assert result.report[4] == "alice" and result.report[6] == "2"


def test_authorized_lookup_of_unknown_user_exits_3(userdb: Path) -> None:
    result = run(["--", *REPORT], b"ghost\0\0\0", userdb=userdb, env={"AUTHORIZED": "1"})
    assert result.returncode == 3 and result.fd4 == b""


def test_authorized_with_a_password_still_checks_it(userdb: Path) -> None:
    assert run(["--", *REPORT], b"alice\0wrong\0\0", userdb=userdb, env={"AUTHORIZED": "1"}).returncode == 1


# -------------------------------------------------------------------- logging


def test_stderr_log_line_has_user_service_result_ip_and_no_password(userdb: Path) -> None:
    result = run(["--stderr", "-s", "imap", "--", *REPORT], b"alice\0secret\0",
                 userdb=userdb, env={"TCPREMOTEIP": "192.0.2.7"})
    assert result.stderr == b"courierpasswd: auth user=alice service=imap result=ok ip=192.0.2.7\n"
    bad = run(["--stderr"], b"alice\0hunter2\0", userdb=userdb)
    assert b"hunter2" not in bad.stderr
    assert bad.stderr == b"courierpasswd: auth user=alice service=login result=rejected\n"


def test_without_stderr_option_nothing_is_written_on_stderr(userdb: Path) -> None:
    assert run(["--", *REPORT], b"alice\0secret\0", userdb=userdb).stderr == b""
    assert run([], b"alice\0wrong\0", userdb=userdb).stderr == b""


def test_verbose_traces_on_stderr_without_the_password(userdb: Path) -> None:
    result = run(["-v", "--stderr"], b"alice\0hunter2\0", userdb=userdb)
    assert b"debug:" in result.stderr and b"hunter2" not in result.stderr


def test_user_name_cannot_forge_a_log_line(userdb: Path) -> None:
    result = run(["--stderr"], b"eve\nfake result=ok\0x\0", userdb=userdb)
    assert result.returncode == 1 and result.stderr.count(b"\n") == 1


# ------------------------------------------------------------- options and errors


def test_help_and_version_print_on_stdout_and_exit_0() -> None:
    for option in ("-h", "--help"):
        proc = subprocess.run([str(BIN), option], capture_output=True, timeout=30)
        assert proc.returncode == 0 and proc.stdout.startswith(b"usage: courierpasswd")
    for option in ("-V", "--version"):
        proc = subprocess.run([str(BIN), option], capture_output=True, timeout=30)
        assert proc.returncode == 0 and proc.stdout.startswith(b"courierpasswd (authkit) ")


@pytest.mark.parametrize("args", [["-x", "--", *REPORT], ["--bogus", "--", *REPORT], ["-s"], ["--service"],
                                  ["-s", "--", *REPORT], ["--stdin=yes", *REPORT], ["-C", "md4", *REPORT],
                                  ["-s", "im ap", *REPORT]])
def test_bad_options_exit_2_with_usage_on_stderr(userdb: Path, args: list[str]) -> None:
    result = run(args, b"alice\0secret\0", userdb=userdb)
    assert result.returncode == 2
    assert b"usage: courierpasswd" in result.stderr and result.fd4 == b""


def test_unreadable_config_exits_111(userdb: Path) -> None:
    result = run(["--stderr", "--config", "/nonexistent/authkit.conf", "--", *REPORT],
                 b"alice\0secret\0", userdb=userdb)
    assert result.returncode == 111 and b"result=tempfail" in result.stderr


def test_config_file_names_the_userdb(userdb: Path) -> None:
    conf = userdb.parent / "authkit.conf"
    conf.write_text(f"userdb = {userdb}\n")
    assert run(["--config", str(conf), "--", *REPORT], b"alice\0secret\0").returncode == 0


def test_missing_userdb_is_a_temporary_failure(userdb: Path) -> None:
    result = run(["--stderr"], b"alice\0secret\0", userdb=userdb.parent / "absent")
    assert result.returncode == 111


def test_unexpected_exception_exits_111_without_traceback(monkeypatch: pytest.MonkeyPatch,
                                                          capfd: pytest.CaptureFixture) -> None:
    from authkit import config
    from authkit.cli import courierpasswd

    def explode(*args: object, **kwargs: object) -> None:
        raise ValueError("boom")

    monkeypatch.setattr(courierpasswd, "read_input", lambda fd: b"alice\0secret\0")
    monkeypatch.setattr(courierpasswd, "_close_fd3", lambda: None)
    monkeypatch.setattr(config, "open_source", explode)
    monkeypatch.setenv("AUTHKIT_USERDB", "/nonexistent")
    assert courierpasswd.main(["--stderr"]) == 111
    out, err = capfd.readouterr()
    assert out == ""
    assert "result=tempfail: internal error: ValueError: boom" in err and "Traceback" not in err


def test_parse_args_shapes() -> None:
    from authkit.cli.courierpasswd import parse_args

    opts = parse_args(["-cv", "-Csha1", "--stdin", "--stderr", "--config=/x", "prog", "-c"])
    assert (opts.change, opts.verbose, opts.cram, opts.stdin, opts.stderr, opts.config) == (
        True, True, "sha1", True, True, "/x")
    assert opts.prog == ["prog", "-c"]
    assert parse_args([]).service == "login" and parse_args([]).prog == []
    assert parse_args(["--", "--", "x"]).prog == ["--", "x"]


# ------------------------------------------------------------------ lean imports

FORBIDDEN = ("argparse", "logging", "dataclasses", "typing", "re", "hashlib", "base64", "passlib",
             "hmac", "random", "secrets", "inspect", "enum")


@pytest.mark.skipif(not os.path.exists("/usr/bin/python3"), reason="Debian python3 missing")
@pytest.mark.parametrize("args,data", [
    ([], b"alice\0secret\0"),
    (["-C", "sha256"], b"alice\0" + cram("sha256") + b"\0" + CHALLENGE + b"\0"),
    ([], b"alice\0wrong\0"),
])
def test_login_path_imports_none_of_the_heavy_modules(userdb: Path, args: list[str], data: bytes) -> None:
    r3, w3 = os.pipe()
    os.write(w3, data)
    os.close(w3)
    try:
        proc = subprocess.run(
            ["/usr/bin/python3", "-I", "-S", "-X", "importtime", str(BIN), *args],
            capture_output=True, env={"AUTHKIT_USERDB": str(userdb), "PATH": "/usr/bin:/bin"},
            preexec_fn=lambda: _onto(r3, 3), close_fds=False, timeout=60,
        )
    finally:
        os.close(r3)
    assert proc.returncode in (0, 1) and proc.stdout == b""
    imported = set()
    for line in proc.stderr.decode().splitlines():
        if line.startswith("import time:") and "|" in line:
            imported.add(line.rsplit("|", 1)[1].strip())
    assert "authkit.checkpassword" in imported  # the parse really ran
    assert "authkit.userdb.source" in imported
    heavy = {name for name in imported if name.split(".")[0] in FORBIDDEN}
    assert not heavy, f"login path imported {sorted(heavy)}"


def test_source_is_imported_only_after_the_input_is_valid(userdb: Path) -> None:
    r3, w3 = os.pipe()
    os.write(w3, b"alice-without-nul")
    os.close(w3)
    try:
        proc = subprocess.run(
            [sys.executable, "-I", "-X", "importtime", str(BIN)], capture_output=True,
            env={"AUTHKIT_USERDB": str(userdb)}, preexec_fn=lambda: _onto(r3, 3),
            close_fds=False, timeout=60,
        )
    finally:
        os.close(r3)
    assert proc.returncode == 2
    assert b"authkit.checkpassword" in proc.stderr
    assert b"authkit.config" not in proc.stderr and b"authkit.userdb" not in proc.stderr
