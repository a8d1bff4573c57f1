"""authkit.cli.admin: the ``authkit`` command (docs/authkit.1).

Output formats are Courier's, captured from the real tools in a CourierLab
(courier-authlib 0.71.4): ``authtest andrew@example.com secret`` printed

    Authentication succeeded.
    <blank>
         Authenticated: andrew@example.com  (uid 5000, gid 5000)
    ...
    Cleartext Password: secret
               Options: disableshared=1

and ``(none)`` for empty values; ``authenumerate -o`` printed
``name<TAB>uid<TAB>gid<TAB>home<TAB>maildir<TAB>options``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from authkit.cli import admin
from authkit.schemes import SCHEMES, verify_password
from authkit.schemes.hmacstate import hmac_state
from authkit.userdb import gdbm

TEXT = (b"# managed by hand\n"
        b"andrew@example.com\tuid=5000|gid=5000|home=/home/andrew|mail=/home/andrew/Maildir"
        b"|quota=10S|options=disableshared=1|gecos=Andrew,Room 1\n"
        b"tmda@example.com\tuid=5001|gid=5001|home=/home/tmda\n"
        b"root@example.com\tuid=0|gid=0|home=/root\n")


class Stdin(io.TextIOWrapper):
    """A non-terminal stdin with a ``buffer``."""

    def __init__(self, data: bytes, tty: bool = False) -> None:
        super().__init__(io.BytesIO(data), encoding="utf-8")
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@pytest.fixture
def userdb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from authkit.schemes import make_password_hash

    path = tmp_path / "userdb"
    text = TEXT.replace(b"|gecos=", b"|systempw=" + make_password_hash(b"secret", "md5-crypt").encode() + b"|gecos=")
    path.write_bytes(text)
    path.chmod(0o600)
    for var in ("AUTHKIT_CONFIG", "AUTHKIT_USERDB", "AUTHKIT_AUTHDAEMON"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("sys.stdin", Stdin(b""))
    return path


def run(userdb: Path, *argv: str, stdin: bytes | None = None, tty: bool = False,
        monkeypatch: pytest.MonkeyPatch | None = None) -> int:
    if stdin is not None:
        import sys

        sys.stdin = Stdin(stdin, tty)
    return admin.main(["--userdb", str(userdb), *argv])


def _compiled(path: Path) -> tuple[dict, dict]:
    out = []
    for p in (f"{path}.dat", f"{path}shadow.dat"):
        with gdbm.open_reader(p) as db:
            out.append(dict(db.items()))
    return out[0], out[1]


# ---------------------------------------------------------------- userdb


def test_set_on_a_new_record_writes_fields_in_argument_order(userdb: Path) -> None:
    assert run(userdb, "userdb", "new@example.com", "set", "uid=7", "home=/h", "gid=8") == 0
    assert userdb.read_bytes().endswith(b"new@example.com\tuid=7|home=/h|gid=8\n")


def test_set_on_an_existing_record_keeps_its_field_order_and_every_other_line(userdb: Path) -> None:
    before = userdb.read_bytes().split(b"\n")
    assert run(userdb, "userdb", "andrew@example.com", "set", "quota=20S", "shell=/bin/sh") == 0
    after = userdb.read_bytes().split(b"\n")
    assert after[0] == before[0] and after[2:] == before[2:]
    assert after[1] == before[1].replace(b"quota=10S", b"quota=20S") + b"|shell=/bin/sh"


@pytest.mark.parametrize("item", ["gecos=a|b", "gecos=a\nb", "bad|field=1"])
def test_bar_or_newline_in_a_field_or_value_is_refused_like_courier(
        userdb: Path, item: str, capsys: pytest.CaptureFixture) -> None:
    before = userdb.read_bytes()
    assert run(userdb, "userdb", "andrew@example.com", "set", item) == 2
    assert capsys.readouterr().err == "authkit: Invalid field or value.\n"
    assert userdb.read_bytes() == before


def test_field_without_value_reads_it_from_stdin(userdb: Path) -> None:
    assert run(userdb, "userdb", "tmda@example.com", "set", "systempw", "imappw",
               stdin=b"$1$abc$def\n{SHA}xyz\n") == 0
    assert b"tmda@example.com\tuid=5001|gid=5001|home=/home/tmda|systempw=$1$abc$def|imappw={SHA}xyz\n" \
        in userdb.read_bytes()


def test_value_from_stdin_with_a_bar_is_refused(userdb: Path, capsys: pytest.CaptureFixture) -> None:
    assert run(userdb, "userdb", "tmda@example.com", "set", "systempw", stdin=b"a|b\n") == 2
    assert capsys.readouterr().err == "authkit: Invalid value.\n"


def test_pw_piped_into_userdb_set_is_courier_s_userdbpw_flow(userdb: Path, capsys: pytest.CaptureFixture) -> None:
    assert run(userdb, "pw", "--scheme", "sha512-crypt", stdin=b"n3w-secret\n") == 0
    hashed = capsys.readouterr().out
    assert run(userdb, "userdb", "tmda@example.com", "set", "systempw", stdin=hashed.encode()) == 0
    assert run(userdb, "test", "tmda@example.com", "n3w-secret") == 0


def test_unset_removes_the_fields(userdb: Path) -> None:
    assert run(userdb, "userdb", "andrew@example.com", "unset", "quota", "options") == 0
    line = userdb.read_bytes().split(b"\n")[1]
    assert b"quota" not in line and b"options" not in line and line.startswith(b"andrew@example.com\tuid=5000")


def test_del_removes_the_line_and_the_compiled_records(userdb: Path) -> None:
    assert run(userdb, "makeuserdb") == 0
    assert run(userdb, "userdb", "andrew@example.com", "del") == 0
    assert b"andrew@" not in userdb.read_bytes()
    main, shadow = _compiled(userdb)
    assert b"andrew@example.com" not in main and b"andrew@example.com" not in shadow


def test_unknown_account_is_exit_1_with_one_line(userdb: Path, capsys: pytest.CaptureFixture) -> None:
    assert run(userdb, "userdb", "nobody@example.com", "unset", "quota") == 1
    err = capsys.readouterr().err
    assert err.startswith("authkit: ") and err.count("\n") == 1


def test_set_keeps_the_compiled_pair_current_without_a_rebuild(userdb: Path) -> None:
    assert run(userdb, "makeuserdb") == 0
    assert run(userdb, "userdb", "tmda@example.com", "set", "mail=/m", "imappw=x") == 0
    assert run(userdb, "userdb", "new@example.com", "set", "uid=9", "gid=9", "home=/n") == 0
    main, shadow = _compiled(userdb)
    assert main[b"tmda@example.com"] == b"uid=5001|gid=5001|home=/home/tmda|mail=/m|_="
    assert shadow[b"tmda@example.com"] == b"imappw=x"
    assert main[b"new@example.com"] == b"uid=9|gid=9|home=/n|_="
    assert run(userdb, "check", "--compiled") == 0


def test_show_lists_names_then_one_record_s_fields_one_a_line(userdb: Path, capsys: pytest.CaptureFixture) -> None:
    assert run(userdb, "userdb", "show") == 0
    assert capsys.readouterr().out == "andrew@example.com\ntmda@example.com\nroot@example.com\n"
    assert run(userdb, "userdb", "show", "tmda@example.com") == 0
    assert capsys.readouterr().out == "uid=5001\ngid=5001\nhome=/home/tmda\n"
    assert run(userdb, "userdb", "show", "nobody") == 1


def test_directory_layout_needs_the_file_for_a_new_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "userdb"
    root.mkdir(mode=0o700)
    monkeypatch.setattr("sys.stdin", Stdin(b""))
    assert run(root, "userdb", "a@example.com", "set", "uid=1") == 2
    assert "name the file" in capsys.readouterr().err
    assert run(root, "userdb", "example.com/a@example.com", "set", "uid=1", "gid=1", "home=/h") == 0
    assert (root / "example.com").read_bytes() == b"a@example.com\tuid=1|gid=1|home=/h\n"
    assert os.stat(root / "example.com").st_mode & 0o777 == 0o600
    assert run(root, "makeuserdb") == 0
    assert run(root, "userdb", "a@example.com", "set", "mail=/m") == 0  # found in its file
    assert _compiled(root)[0][b"a@example.com"] == b"uid=1|gid=1|home=/h|mail=/m|_=example.com/"


# ---------------------------------------------------------------- pw


@pytest.mark.parametrize("scheme", SCHEMES)
def test_pw_makes_every_scheme_authkit_can_verify(userdb: Path, scheme: str, capsys: pytest.CaptureFixture) -> None:
    assert run(userdb, "pw", "--scheme", scheme, stdin=b"pw-test\n") == 0
    value = capsys.readouterr().out
    assert value.endswith("\n") and value.count("\n") == 1
    assert verify_password(b"pw-test", value.strip())


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "sha256"])
def test_pw_hmac_schemes_print_courier_s_hmac_state(userdb: Path, algorithm: str,
                                                    capsys: pytest.CaptureFixture) -> None:
    assert run(userdb, "pw", "--scheme", f"HMAC-{algorithm.upper()}", stdin=b"secret\n") == 0
    assert capsys.readouterr().out == hmac_state(b"secret", algorithm) + "\n"


def test_pw_on_a_terminal_asks_twice_without_echo_and_refuses_a_mismatch(
        userdb: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    answers = iter(["one", "two"])
    prompts = []
    monkeypatch.setattr("getpass.getpass", lambda prompt: prompts.append(prompt) or next(answers))
    assert run(userdb, "pw", stdin=b"", tty=True) == 1
    assert prompts == ["Password: ", "Reenter password: "]
    assert capsys.readouterr() == ("", "authkit: Passwords don't match.\n")


def test_pw_unknown_scheme_is_a_usage_error(userdb: Path) -> None:
    with pytest.raises(SystemExit) as info:
        run(userdb, "pw", "--scheme", "rot13", stdin=b"x\n")
    assert info.value.code == 2


# ---------------------------------------------------------------- test / enumerate


def test_test_prints_authtest_s_block_for_a_login(userdb: Path, capsys: pytest.CaptureFixture) -> None:
    assert run(userdb, "test", "andrew@example.com", "secret") == 0
    out = capsys.readouterr().out
    stored = out.split("Encrypted Password: ")[1].split("\n")[0]
    assert stored.startswith("$1$")
    assert out == (
        "Authentication succeeded.\n\n"
        "     Authenticated: andrew@example.com  (uid 5000, gid 5000)\n"
        "    Home Directory: /home/andrew\n"
        "           Maildir: /home/andrew/Maildir\n"
        "             Quota: 10S\n"
        f"Encrypted Password: {stored}\n"
        "Cleartext Password: secret\n"
        "           Options: disableshared=1\n")


def test_test_lookup_only_shows_none_for_missing_values(userdb: Path, capsys: pytest.CaptureFixture) -> None:
    assert run(userdb, "test", "-s", "imap", "tmda@example.com") == 0
    assert capsys.readouterr().out == (
        "Authentication succeeded.\n\n"
        "     Authenticated: tmda@example.com  (uid 5001, gid 5001)\n"
        "    Home Directory: /home/tmda\n"
        "           Maildir: (none)\n"
        "             Quota: (none)\n"
        "Encrypted Password: (none)\n"
        "Cleartext Password: (none)\n"
        "           Options: (none)\n")


@pytest.mark.parametrize("argv, reason", [
    (("andrew@example.com", "wrong"), "password mismatch"),
    (("nobody@example.com", "x"), "unknown user"),
    (("nobody@example.com",), "unknown user"),
])
def test_test_failure_is_exit_1_and_authtest_s_line(userdb: Path, argv: tuple, reason: str,
                                                    capsys: pytest.CaptureFixture) -> None:
    assert run(userdb, "test", *argv) == 1
    assert capsys.readouterr() == ("", f"Authentication FAILED: {reason}\n")


def test_test_with_a_new_password_changes_it(userdb: Path, capsys: pytest.CaptureFixture) -> None:
    assert run(userdb, "makeuserdb") == 0
    assert run(userdb, "test", "andrew@example.com", "secret", "N3w-secret") == 0
    assert capsys.readouterr().err == "Password change succeeded.\n"
    assert run(userdb, "test", "andrew@example.com", "N3w-secret") == 0
    assert run(userdb, "test", "andrew@example.com", "secret") == 1
    assert run(userdb, "check", "--compiled") == 0


@pytest.mark.parametrize("new, reason", [
    ("x", "refused: New password too short (min 8)"),
    ("N" * 129, "refused: New password too long (max 128)"),
    ("N3w\x01secret", "refused: New password holds control characters"),
])
def test_test_change_applies_the_shared_new_password_policy(userdb: Path, new: str, reason: str,
                                                            capsys: pytest.CaptureFixture) -> None:
    """Issue 16: ``authkit test bob OLD x`` changed the password to ``x``."""
    assert run(userdb, "test", "andrew@example.com", "secret", new) == 1
    assert capsys.readouterr() == ("", f"Authentication FAILED: {reason}\n")
    assert run(userdb, "test", "andrew@example.com", "secret") == 0


def test_test_change_applies_the_uid_policy(userdb: Path, capsys: pytest.CaptureFixture) -> None:
    from authkit.schemes import make_password_hash

    hashed = make_password_hash(b"secret", "md5-crypt").encode()
    userdb.write_bytes(userdb.read_bytes() + b"sys@example.com\tuid=99|gid=99|home=/s|systempw=" + hashed + b"\n")
    assert run(userdb, "test", "sys@example.com", "secret", "N3w-secret") == 1
    assert capsys.readouterr() == ("", "Authentication FAILED: refused: account uid below the minimum\n")
    assert run(userdb, "test", "sys@example.com", "secret") == 0


def test_enumerate_prints_authenumerate_lines_and_drops_uid_0(userdb: Path, capsys: pytest.CaptureFixture) -> None:
    assert run(userdb, "enumerate") == 0
    assert capsys.readouterr().out == (
        "andrew@example.com\t5000\t5000\t/home/andrew\t/home/andrew/Maildir\n"
        "tmda@example.com\t5001\t5001\t/home/tmda\t\n")
    assert run(userdb, "enumerate", "-o", "-s") == 0
    assert capsys.readouterr().out == "tmda@example.com\t5001\t5001\t/home/tmda\t\t\n"


# ---------------------------------------------------------------- makeuserdb / check


def test_makeuserdb_refusal_is_one_line_and_exit_2(userdb: Path, capsys: pytest.CaptureFixture) -> None:
    userdb.chmod(0o644)
    assert run(userdb, "makeuserdb") == 2
    err = capsys.readouterr().err
    assert "MAY NOT HAVE GROUP OR WORLD PERMISSIONS" in err and err.count("\n") == 1


def test_makeuserdb_is_quiet_when_stderr_is_not_a_terminal(userdb: Path, capsys: pytest.CaptureFixture) -> None:
    assert run(userdb, "makeuserdb") == 0
    assert capsys.readouterr() == ("", "")


def test_progress_bar_draws_on_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    class Err:
        buffer = io.BytesIO()

        def flush(self) -> None:
            pass

    err = Err()
    monkeypatch.setattr("sys.stderr", err)
    bar = admin._ProgressBar()
    bar(50, 100, 1234)
    bar.end()
    assert err.buffer.getvalue() == b"\rmakeuserdb: [###############...............]  50.0%  1,234 accounts\n"


def test_check_reports_file_and_line_and_exits_1(userdb: Path, capsys: pytest.CaptureFixture) -> None:
    userdb.write_bytes(userdb.read_bytes() + b"broken line\n")
    assert run(userdb, "check") == 1
    assert capsys.readouterr().err == f"{userdb}:5: no TAB between the name and the fields\n"


@pytest.mark.parametrize("sub", ["userdb", "pw", "makeuserdb", "test", "enumerate", "check"])
def test_every_subcommand_has_help(sub: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        admin.main([sub, "--help"])
    assert info.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_userdb_path_comes_from_the_config_file(tmp_path: Path, userdb: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "authkit.conf"
    config.write_text(f"userdb = {userdb}\n")
    assert admin.main(["--config", str(config), "userdb", "show"]) == 0
    assert "tmda@example.com" in capsys.readouterr().out


def test_one_resolver_with_userdb_on_top(userdb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture) -> None:
    """Issue 16: the admin command resolved its config and source apart from the
    other programs.  Now: --userdb on top, then the rules every program follows
    (--config decides over AUTHKIT_USERDB; the policy comes from the config file
    whatever chose the source)."""
    other = tmp_path / "other"
    other.write_bytes(b"other@example.com\tuid=5000|gid=5000|home=/o\n")
    conf = tmp_path / "a.conf"
    conf.write_text(f"userdb = {other}\nmin_password_length = 12\n")
    monkeypatch.setenv("AUTHKIT_USERDB", str(userdb))
    assert admin.main(["userdb", "show"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "andrew@example.com"
    assert admin.main(["--config", str(conf), "userdb", "show"]) == 0
    assert capsys.readouterr().out == "other@example.com\n"
    assert admin.main(["--config", str(conf), "--userdb", str(userdb), "userdb", "show", "tmda@example.com"]) == 0
    assert "home=/home/tmda" in capsys.readouterr().out
    # --userdb chose the source; the policy still comes from the config file
    assert admin.main(["--config", str(conf), "--userdb", str(userdb), "test", "andrew@example.com",
                       "secret", "N3w-secret"]) == 1
    assert capsys.readouterr().err == "Authentication FAILED: refused: New password too short (min 12)\n"
