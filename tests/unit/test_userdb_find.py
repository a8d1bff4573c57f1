"""authkit.userdb.find: the one record finder (chunked pread) used by lookups in
a text userdb, ``authkit userdb show`` and the editor; and the one account-name
rule it applies (a ``#`` name is a comment, never an account, for every one of
them: issue 16)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from authkit.cli import admin
from authkit.errors import UnknownUser
from authkit.userdb import edit, find
from authkit.userdb.source import UserdbSource
from authkit.userdb.text import is_account_name

TEXT = b"ab\tx=1\n#c\nabc\tuid=2\nxab\tq\nab2\t\nlast\tz"


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1 << 20])
def test_find_line_finds_the_first_exact_name_across_chunk_boundaries(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(find, "CHUNK", chunk)
    path = tmp_path / "u"
    path.write_bytes(TEXT)
    assert find.find_line(str(path), b"ab") == (0, 7, b"x=1")
    assert find.find_line(str(path), b"abc") == (10, 20, b"uid=2")
    assert find.find_line(str(path), b"ab2") == (26, 31, b"")
    assert find.find_line(str(path), b"last") == (31, 37, b"z")  # no final newline
    for absent in (b"b", b"x", b"nope", b"#c", b""):
        assert find.find_line(str(path), absent) is None


def test_find_line_agrees_with_a_naive_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(1)
    path = tmp_path / "u"
    for chunk in (1, 5, 13, 40):
        monkeypatch.setattr(find, "CHUNK", chunk)
        lines = [b"u%d\tv=%d%s" % (rng.randrange(40), i, b"x" * rng.randrange(90)) for i in range(60)]
        path.write_bytes(b"\n".join(lines) + b"\n")
        for n in range(40):
            key, expected, pos = b"u%d" % n, None, 0
            for line in lines:
                if line.startswith(key + b"\t"):
                    expected = (pos, pos + len(line) + 1, line[len(key) + 1:])
                    break
                pos += len(line) + 1
            assert find.find_line(str(path), key) == expected


def test_the_editor_uses_the_shared_finder() -> None:
    assert edit._find_line is find.find_line


def test_find_record_walks_a_directory_and_names_the_file(tmp_path: Path) -> None:
    root = tmp_path / "userdb"
    (root / "b.org").mkdir(parents=True)
    (root / "a.com").write_bytes(b"x\tuid=1\n")
    (root / "b.org" / "f").write_bytes(b"y\tuid=2\nx\tuid=3\n")
    assert find.find_record(str(root), b"x") == (str(root / "a.com"), "a.com/", 0, 8, b"uid=1")
    assert find.find_record(str(root), b"y") == (str(root / "b.org" / "f"), "b.org/f/", 0, 8, b"uid=2")
    assert find.find_record(str(root), b"z") is None


@pytest.mark.parametrize("name, ok", [
    ("bob", True), ("a|b=c", True), ("#bob", False), ("", False), ("a\tb", False),
    ("a\nb", False), ("a\rb", False), ("a\0b", False), ("b#ob", True),
])
def test_account_name_rule(name: str, ok: bool) -> None:
    assert is_account_name(name) is ok


COMMENTED = b"alice\tuid=1000|gid=1000|home=/h/alice\n#bob\tuid=1001|gid=1001|home=/h/bob\n"


@pytest.fixture
def commented(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "userdb"
    path.write_bytes(COMMENTED)
    path.chmod(0o600)
    for var in ("AUTHKIT_CONFIG", "AUTHKIT_USERDB", "AUTHKIT_AUTHDAEMON"):
        monkeypatch.delenv(var, raising=False)
    return path


def test_a_commented_out_record_is_no_account_for_show_lookup_or_edit(
        commented: Path, capsys: pytest.CaptureFixture) -> None:
    # issue 16: `authkit userdb '#bob' set home=/new` rewrote the comment line
    # while `show '#bob'` said there is no such account
    assert admin.main(["--userdb", str(commented), "userdb", "show", "#bob"]) == 1
    assert admin.main(["--userdb", str(commented), "userdb", "#bob", "set", "home=/new"]) == 2
    assert admin.main(["--userdb", str(commented), "userdb", "#bob", "unset", "home"]) in (1, 2)
    assert admin.main(["--userdb", str(commented), "userdb", "#bob", "del"]) in (1, 2)
    assert commented.read_bytes() == COMMENTED
    with pytest.raises(UnknownUser):
        edit.update_record(str(commented), "#bob", [("home", "/new")])
    with pytest.raises(UnknownUser):
        edit.delete_record(str(commented), "#bob")
    with pytest.raises(ValueError, match="Invalid account name"):
        edit.add_record(str(commented), "#carol", [("uid", "1"), ("gid", "1"), ("home", "/h")])
    assert commented.read_bytes() == COMMENTED
    with pytest.raises(UnknownUser):
        UserdbSource(str(commented)).lookup("#bob")
    assert edit.locate(str(commented), "#bob") is None
    assert UserdbSource(str(commented)).lookup("alice").home == "/h/alice"


# ------------------------------------------------------------------ lean login path


def _imported_by_login(userdb: Path, data: bytes) -> set[str]:
    import subprocess

    bin_path = Path(__file__).resolve().parents[2] / "bin" / "courierpasswd"
    proc = subprocess.run(["/usr/bin/python3", "-I", "-S", "-X", "importtime", str(bin_path), "--stdin"],
                          input=data, capture_output=True, timeout=60,
                          env={"AUTHKIT_USERDB": str(userdb), "PATH": "/usr/bin:/bin"})
    assert proc.returncode in (0, 1) and proc.stdout == b"", proc.stderr
    return {line.rsplit("|", 1)[1].strip() for line in proc.stderr.decode().splitlines()
            if line.startswith("import time:") and "|" in line}


@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="Debian python3 missing")
def test_a_login_imports_the_finder_for_text_only_and_never_compile_or_edit(tmp_path: Path) -> None:
    from authkit.schemes import make_password_hash
    from authkit.userdb.compile import compile_userdb

    userdb = tmp_path / "userdb"
    userdb.write_bytes(b"alice\tuid=1000|gid=1000|home=/|systempw=%s\n"
                       % make_password_hash(b"secret", "md5-crypt").encode())
    userdb.chmod(0o600)
    text = _imported_by_login(userdb, b"alice\0secret\0")
    assert "authkit.userdb.find" in text
    assert not {"authkit.userdb.compile", "authkit.userdb.edit", "authkit.userdb.gdbm"} & text
    compile_userdb(str(userdb))
    compiled = _imported_by_login(userdb, b"alice\0wrong\0")
    assert "authkit.userdb.gdbm" in compiled
    assert not {"authkit.userdb.compile", "authkit.userdb.edit", "authkit.userdb.find",
                "authkit.userdb.files"} & compiled
