"""courieruserinfo: command line, output format and exit codes (docs/courieruserinfo.8).

The userdb files here are written by hand in Courier's text format (spec
courier-authlib.md section 1); tests/integration/test_courieruserinfo_courier.py
checks the same program against files made by Courier's own tools and against
authtest.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from authkit.account import Account
from authkit.cli import courieruserinfo as cui

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = REPO / "bin" / "courieruserinfo"

USERDB = (
    b"andrew@example.com\tuid=5000|gid=5001|home=/home/vmail/example.com/andrew"
    b"|mail=/home/vmail/example.com/andrew/Maildir|gecos=Andrew Example,Room 1,555-0100"
    b"|quota=10000000S|options=disableshared=1|systempw=$1$XvgBrLvh$k/Fs0X9fbiRCpmvIvfRos1\n"
    b"bare\tuid=7|gid=8|home=/h/bare\n"
    b"latin\tuid=9|gid=9|home=/h/caf\xe9\n"
    + b"x" * 64 + b"\tuid=1|gid=1|home=/h/long\n"
    + b"x" * 65 + b"\tuid=1|gid=1|home=/h/toolong\n"
)

ALL_ANDREW = (
    b"uid=5000\n"
    b"gid=5001\n"
    b"homedir=/home/vmail/example.com/andrew\n"
    b"address=andrew@example.com\n"
    b"name=Andrew Example\n"
    b"maildir=/home/vmail/example.com/andrew/Maildir\n"
    b"quota=10000000S\n"
    b"options=disableshared=1\n"
)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    userdb = tmp_path / "userdb"
    userdb.write_bytes(USERDB)
    userdb.chmod(0o600)
    return {"AUTHKIT_USERDB": str(userdb)}


def run(capfdbinary, argv: list[str], environ: dict[str, str]) -> tuple[int, bytes, bytes]:
    code = cui.run(argv, environ)
    out, err = capfdbinary.readouterr()
    return code, out, err


# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize("argv, items", [
    (["u"], set()),
    (["-A", "u"], set()),
    (["--all", "u"], set()),
    (["-d", "u"], {"homedir"}),
    (["-A", "-d", "u"], {"homedir"}),
    (["-d", "-A", "u"], {"homedir"}),
    (["-u", "u"], {"uid", "gid"}),
    (["-udq", "u"], {"uid", "gid", "homedir", "quota"}),
    (["--name", "--maildir", "--options", "--address", "u"], {"name", "maildir", "options", "address"}),
    (["u", "-m"], {"maildir"}),
])
def test_item_flags_combine_and_override_all(argv: list[str], items: set[str]) -> None:
    request = cui.parse_args(argv)
    assert request.items == items
    assert request.username == "u"


def test_config_takes_a_file_as_next_argument_or_after_equals() -> None:
    assert cui.parse_args(["--config", "/a.conf", "u"]).config == "/a.conf"
    assert cui.parse_args(["--config=/b.conf", "u"]).config == "/b.conf"


def test_double_dash_ends_options_so_a_name_may_start_with_a_dash() -> None:
    request = cui.parse_args(["-d", "--", "-u"])
    assert request.username == "-u"
    assert request.items == {"homedir"}


def test_stderr_flag_is_recorded() -> None:
    assert cui.parse_args(["--stderr", "u"]).to_stderr is True
    assert cui.parse_args(["u"]).to_stderr is False


@pytest.mark.parametrize("argv", [
    [], ["-d"], ["a", "b"], [""], ["-x", "u"], ["--bogus", "u"], ["--config"],
    ["--config=", "u"], ["--stderr=yes", "u"], ["--home", "u"],
])
def test_malformed_command_lines_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(cui.UsageError):
        cui.parse_args(argv)


def test_help_and_version_need_no_username_and_help_wins() -> None:
    assert cui.parse_args(["-h"]).action == "help"
    assert cui.parse_args(["--version"]).action == "version"
    assert cui.parse_args(["-Vh"]).action == "help"
    assert cui.parse_args(["-hV"]).action == "help"


# ------------------------------------------------------------------ output


def test_no_flags_prints_every_item_in_fixed_order(capfdbinary, env) -> None:
    assert run(capfdbinary, ["andrew@example.com"], env) == (0, ALL_ANDREW, b"")


def test_output_order_is_fixed_whatever_the_flag_order(capfdbinary, env) -> None:
    code, out, _ = run(capfdbinary, ["-o", "-q", "-d", "-u", "andrew@example.com"], env)
    assert code == 0
    assert out == (b"uid=5000\ngid=5001\nhomedir=/home/vmail/example.com/andrew\n"
                   b"quota=10000000S\noptions=disableshared=1\n")


def test_homedir_flag_prints_exactly_one_line(capfdbinary, env) -> None:
    assert run(capfdbinary, ["-d", "andrew@example.com"], env) == (
        0, b"homedir=/home/vmail/example.com/andrew\n", b"")


def test_name_is_gecos_up_to_first_comma(capfdbinary, env) -> None:
    assert run(capfdbinary, ["-n", "andrew@example.com"], env)[1] == b"name=Andrew Example\n"


def test_items_the_account_lacks_have_blank_values(capfdbinary, env) -> None:
    code, out, _ = run(capfdbinary, ["bare"], env)
    assert code == 0
    assert out == (b"uid=7\ngid=8\nhomedir=/h/bare\naddress=bare\nname=\nmaildir=\n"
                   b"quota=\noptions=\n")


def test_non_utf8_values_are_printed_as_the_stored_bytes(capfdbinary, env) -> None:
    assert run(capfdbinary, ["-d", "latin"], env)[1] == b"homedir=/h/caf\xe9\n"


def test_control_characters_in_a_value_never_break_the_line() -> None:
    account = Account("a", 1, 2, "/h/x\ny=evil", fullname="A\rB\x00", options="k=v\tw")
    out = cui.render(account, {"homedir", "name", "options"})
    assert out == b"homedir=/h/x\\x0ay=evil\nname=A\\x0dB\\x00\noptions=k=v\tw\n"
    assert out.count(b"\n") == 3


# ------------------------------------------------------------------ exit codes


def test_unknown_user_exits_1_with_nothing_on_stdout(capfdbinary, env) -> None:
    code, out, err = run(capfdbinary, ["--stderr", "nobody@example.com"], env)
    assert (code, out) == (1, b"")
    assert b"result=unknown" in err


def test_lookup_is_case_sensitive(capfdbinary, env) -> None:
    assert run(capfdbinary, ["Andrew@example.com"], env)[:2] == (1, b"")


@pytest.mark.parametrize("name", ["bare\t", "bare\n", "ba\x00re"])
def test_names_with_control_characters_are_unknown(capfdbinary, env, name: str) -> None:
    assert run(capfdbinary, ["--stderr", name], env)[:2] == (1, b"")


def test_username_of_64_bytes_is_looked_up(capfdbinary, env) -> None:
    assert run(capfdbinary, ["-d", "x" * 64], env) == (0, b"homedir=/h/long\n", b"")


def test_username_over_64_bytes_is_misuse_even_if_it_exists(capfdbinary, env) -> None:
    code, out, err = run(capfdbinary, ["-d", "x" * 65], env)
    assert (code, out) == (2, b"")
    assert b"longer than 64 bytes" in err and b"usage:" in err


def test_username_limit_counts_utf8_bytes(capfdbinary, env) -> None:
    code, out, _ = run(capfdbinary, ["\u00e9" * 33], env)  # 33 chars, 66 bytes
    assert (code, out) == (2, b"")


def test_username_limit_comes_from_the_config_file(capfdbinary, tmp_path, env) -> None:
    conf = tmp_path / "authkit.conf"
    conf.write_text(f"userdb = {env['AUTHKIT_USERDB']}\nmax_username_length = 4\n")
    assert run(capfdbinary, ["--config", str(conf), "-d", "bare"], {})[:2] == (0, b"homedir=/h/bare\n")
    assert run(capfdbinary, ["--config", str(conf), "-d", "latin"], {})[:2] == (2, b"")


def test_misuse_exits_2_with_usage_on_stderr(capfdbinary, env) -> None:
    code, out, err = run(capfdbinary, ["-z", "andrew@example.com"], env)
    assert (code, out) == (2, b"")
    assert err.startswith(b"courieruserinfo: unknown option -z\n")
    assert b"usage: courieruserinfo [--stderr] [--config FILE] [-AudanmqohV] username\n" in err


def test_help_goes_to_stdout_and_exits_0(capfdbinary) -> None:
    code, out, err = run(capfdbinary, ["--help"], {})
    assert code == 0 and err == b""
    assert out.startswith(b"usage: courieruserinfo")
    for flag in (b"--all", b"--uid", b"--homedir", b"--address", b"--name", b"--maildir",
                 b"--quota", b"--options", b"--stderr", b"--config"):
        assert flag in out


def test_version_names_authkit(capfdbinary) -> None:
    from authkit import __version__

    assert run(capfdbinary, ["-V"], {}) == (0, f"courieruserinfo (authkit) {__version__}\n".encode(), b"")


def test_unreachable_authdaemond_is_temporary_failure_111(capfdbinary, tmp_path) -> None:
    environ = {"AUTHKIT_AUTHDAEMON": str(tmp_path / "no-such-socket")}
    code, out, err = run(capfdbinary, ["--stderr", "andrew@example.com"], environ)
    assert (code, out) == (111, b"")
    assert err.startswith(b"courieruserinfo: temporary failure: ")
    assert err.count(b"\n") == 1  # --stderr: said once, not twice


def test_temporary_failure_reaches_stderr_even_when_logging_to_syslog(capfdbinary, tmp_path) -> None:
    environ = {"AUTHKIT_AUTHDAEMON": str(tmp_path / "no-such-socket")}
    code, out, err = run(capfdbinary, ["andrew@example.com"], environ)
    assert (code, out) == (111, b"")
    assert b"temporary failure" in err


def test_unreadable_config_is_temporary_failure(capfdbinary, tmp_path) -> None:
    code, out, err = run(capfdbinary, ["--config", str(tmp_path / "none.conf"), "u"], {})
    assert (code, out) == (111, b"")
    assert b"none.conf" in err


def test_unexpected_error_is_temporary_failure(capfdbinary, env, monkeypatch) -> None:
    import authkit.config

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(authkit.config, "open_source", broken)
    code, out, err = run(capfdbinary, ["--stderr", "andrew@example.com"], env)
    assert (code, out) == (111, b"")
    assert b"RuntimeError: boom" in err


def test_corrupt_compiled_userdb_is_111_not_unknown(capfdbinary, env) -> None:
    Path(env["AUTHKIT_USERDB"] + ".dat").write_bytes(b"not a gdbm file\n")
    code, out, err = run(capfdbinary, ["--stderr", "andrew@example.com"], env)
    assert (code, out) == (111, b"")
    assert b"userdb.dat" in err


def test_missing_userdb_is_111_not_unknown(capfdbinary, tmp_path) -> None:
    code, out, err = run(capfdbinary, ["--stderr", "a"], {"AUTHKIT_USERDB": str(tmp_path / "none")})
    assert (code, out) == (111, b"")
    assert b"none" in err


# ------------------------------------------------------------------ launcher


def test_launcher_runs_main_and_passes_the_exit_code(env) -> None:
    proc = subprocess.run([str(LAUNCHER), "-d", "bare"], capture_output=True,
                          env={"PATH": "/usr/bin:/bin", **env})
    assert (proc.returncode, proc.stdout) == (0, b"homedir=/h/bare\n")
    proc = subprocess.run([str(LAUNCHER), "--stderr", "nobody"], capture_output=True,
                          env={"PATH": "/usr/bin:/bin", **env})
    assert (proc.returncode, proc.stdout) == (1, b"")


HEAVY = ("dataclasses", "typing", "argparse", "logging", "re", "hashlib", "base64",
         "secrets", "random", "hmac", "inspect", "enum", "configparser")


@pytest.mark.skipif(not os.access("/usr/bin/python3", os.X_OK), reason="needs /usr/bin/python3")
def test_per_message_path_imports_nothing_heavy(env) -> None:
    proc = subprocess.run(
        ["/usr/bin/python3", "-IS", "-X", "importtime", str(LAUNCHER), "andrew@example.com"],
        capture_output=True, env={"PATH": "/usr/bin:/bin", **env})
    assert proc.returncode == 0, proc.stderr
    imported = {line.split("|")[-1].strip() for line in proc.stderr.decode().splitlines()
                if line.startswith("import time:")}
    assert "authkit.cli.courieruserinfo" in imported
    assert not imported.intersection(HEAVY), sorted(imported.intersection(HEAVY))


def test_module_runs_as_script(env) -> None:
    proc = subprocess.run([sys.executable, "-m", "authkit.cli.courieruserinfo", "-u", "bare"],
                          capture_output=True, env={"PATH": "/usr/bin:/bin", **env}, cwd=REPO)
    assert (proc.returncode, proc.stdout) == (0, b"uid=7\ngid=8\n")


# ------------------------------------------------ getvuserhome.sh (docs/getvuserhome.sh.8)

GETVUSERHOME = REPO / "bin" / "getvuserhome.sh"


def _vhome(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(GETVUSERHOME), *args], capture_output=True, cwd=cwd,
                          env={"PATH": "/usr/bin:/bin", **env}, timeout=60)


def test_getvuserhome_prints_only_the_home_of_user_at_domain(env) -> None:
    assert _vhome(env, "andrew", "example.com").stdout == b"/home/vmail/example.com/andrew\n"
    assert _vhome(env, "bare").stdout == b"/h/bare\n"
    assert _vhome(env, "bare", "").stdout == b"/h/bare\n"


def test_getvuserhome_unknown_user_exits_1_with_empty_stdout(env) -> None:
    proc = _vhome(env, "andrew", "example.org")
    assert (proc.returncode, proc.stdout) == (1, b"")


@pytest.mark.parametrize("args", [(), ("a", "b", "c"), ("", "example.com")])
def test_getvuserhome_bad_arguments_exit_2_with_empty_stdout(env, args) -> None:
    proc = _vhome(env, *args)
    assert (proc.returncode, proc.stdout) == (2, b"")


@pytest.mark.parametrize("name", ["x;touch MARK", "$(touch MARK)", "`touch MARK`",
                                  "x' ; touch MARK ; '", "a b $(touch MARK)", "-d;touch MARK"])
def test_getvuserhome_treats_shell_syntax_as_data(env, tmp_path: Path, name: str) -> None:
    command = f"{GETVUSERHOME} {shlex.quote(name)} {shlex.quote(name)}"
    proc = subprocess.run(["/bin/sh", "-c", command], capture_output=True, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", **env}, timeout=60)
    assert (proc.returncode, proc.stdout) == (1, b"")
    assert not (tmp_path / "MARK").exists()
    (tmp_path / "probe").touch()  # the directory was writable: the check meant something
