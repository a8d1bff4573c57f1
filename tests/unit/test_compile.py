"""authkit.userdb.compile: makeuserdb's output, refusals and streaming.

Expected values follow Courier's makeuserdb (perl script /usr/sbin/makeuserdb,
courier-authlib 0.71.4; spec courier-authlib.md section 2); the same text is
compiled by the real makeuserdb in tests/integration/test_admin_courier.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from authkit.errors import Misuse
from authkit.userdb import gdbm
from authkit.userdb.compile import (
    CompileError,
    check_text,
    compile_userdb,
    iter_records,
    source_files,
    split_record,
    verify_compiled,
)


def _pairs(root: Path) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
    out = []
    for path in (f"{root}.dat", f"{root}shadow.dat"):
        with gdbm.open_reader(path) as db:
            out.append(dict(db.items()))
    return out[0], out[1]


def _userdb(tmp_path: Path, text: bytes, name: str = "userdb") -> Path:
    path = tmp_path / name
    path.write_bytes(text)
    path.chmod(0o600)
    return path


def test_split_record_sends_pw_fields_to_shadow_and_appends_location() -> None:
    assert split_record(b"uid=1|systempw=$1$x|gid=2|imappw=y", b"") == (
        b"uid=1|gid=2|_=", b"systempw=$1$x|imappw=y")


def test_split_record_without_password_has_no_shadow_record() -> None:
    assert split_record(b"uid=1|home=/h", b"example.com/") == (b"uid=1|home=/h|_=example.com/", None)


def test_split_record_keeps_inner_empty_fields_and_drops_trailing_ones_like_perl_split() -> None:
    assert split_record(b"|a=1||b=2||", b"") == (b"|a=1||b=2|_=", None)
    assert split_record(b"", b"") == (b"_=", None)


def test_pw_field_without_equals_stays_in_the_main_record() -> None:
    # Courier: b'UPPER@Example.COM' => b'uid=5000|gid=5000|home=/h|weirdpw|_='
    assert split_record(b"uid=5000|gid=5000|home=/h|weirdpw|imappw=abc", b"") == (
        b"uid=5000|gid=5000|home=/h|weirdpw|_=", b"imappw=abc")


def test_value_holding_equals_and_pw_text_is_classified_by_the_field_name() -> None:
    assert split_record(b"options=xpw=1|hmac-md5pw=ab", b"") == (b"options=xpw=1|_=", b"hmac-md5pw=ab")


@pytest.mark.parametrize("parallel", [True, False])
def test_single_file_compiles_both_files_with_courier_modes(tmp_path: Path, parallel: bool) -> None:
    root = _userdb(tmp_path, b"# comment\n\na@x\tuid=1|gid=1|home=/h|systempw=$1$s\nb@x\tuid=2|gid=2|home=/h2\n")
    result = compile_userdb(str(root), parallel=parallel)
    assert (result.records, result.shadow_records) == (2, 1)
    main, shadow = _pairs(root)
    assert main == {b"a@x": b"uid=1|gid=1|home=/h|_=", b"b@x": b"uid=2|gid=2|home=/h2|_="}
    assert shadow == {b"a@x": b"systempw=$1$s"}
    assert os.stat(f"{root}.dat").st_mode & 0o777 == 0o644
    assert os.stat(f"{root}shadow.dat").st_mode & 0o777 == 0o600
    assert not os.path.exists(f"{root}.tmp") and not os.path.exists(f"{root}shadow.tmp")
    assert os.path.exists(f"{root}.lock")  # makeuserdb's lock file


def test_directory_layout_location_is_the_relative_path_with_a_slash(tmp_path: Path) -> None:
    root = tmp_path / "userdb"
    (root / "sub").mkdir(parents=True)
    root.chmod(0o700)
    (root / "example.com").write_bytes(b"a@example.com\tuid=1|gid=1|home=/h\n")
    (root / "sub" / "example.org").write_bytes(b"b@example.org\tuid=1|gid=1|home=/h|systempw=x\n")
    (root / ".lock.example.com").write_bytes(b"not userdb text")
    compile_userdb(str(root))
    main, shadow = _pairs(root)
    assert main == {b"a@example.com": b"uid=1|gid=1|home=/h|_=example.com/",
                    b"b@example.org": b"uid=1|gid=1|home=/h|_=sub/example.org/"}
    assert shadow == {b"b@example.org": b"systempw=x"}


def test_trailing_slash_on_the_userdb_path_is_ignored(tmp_path: Path) -> None:
    root = tmp_path / "userdb"
    root.mkdir(mode=0o700)
    (root / "d").write_bytes(b"a\tuid=1|gid=1|home=/h\n")
    compile_userdb(str(root) + "/")
    assert _pairs(root)[0] == {b"a": b"uid=1|gid=1|home=/h|_=d/"}


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o700 | 0o010])
def test_group_or_world_permissions_are_refused_and_nothing_is_written(tmp_path: Path, mode: int) -> None:
    root = _userdb(tmp_path, b"a\tuid=1|gid=1|home=/h\n")
    root.chmod(mode)
    with pytest.raises(CompileError, match="MAY NOT HAVE GROUP OR WORLD PERMISSIONS"):
        compile_userdb(str(root))
    assert not os.path.exists(f"{root}.dat")


def test_compile_errors_are_misuse_exit_2() -> None:
    assert issubclass(CompileError, Misuse) and CompileError.exit_code == 2


def test_symlinked_source_is_refused(tmp_path: Path) -> None:
    real = _userdb(tmp_path, b"a\tuid=1|gid=1|home=/h\n", "real")
    link = tmp_path / "userdb"
    link.symlink_to(real)
    with pytest.raises(CompileError, match="symbolic link"):
        compile_userdb(str(link))


@pytest.mark.parametrize("which", [".dat", "shadow.dat"])
def test_symlinked_compiled_file_is_refused(tmp_path: Path, which: str) -> None:
    root = _userdb(tmp_path, b"a\tuid=1|gid=1|home=/h\n")
    (tmp_path / "elsewhere").write_bytes(b"")
    Path(f"{root}{which}").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(CompileError, match="symbolic link"):
        compile_userdb(str(root))
    assert (tmp_path / "elsewhere").read_bytes() == b""


def test_missing_source_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CompileError, match="not found"):
        compile_userdb(str(tmp_path / "userdb"))


@pytest.mark.parametrize("parallel", [True, False])
def test_duplicate_across_files_names_both_places_and_replaces_nothing(tmp_path: Path, parallel: bool) -> None:
    root = tmp_path / "userdb"
    root.mkdir(mode=0o700)
    (root / "a").write_bytes(b"x\tuid=1|gid=1|home=/h|systempw=old\n")
    compile_userdb(str(root))
    before = _pairs(root)
    (root / "a").write_bytes(b"x\tuid=1|gid=1|home=/h|systempw=new\n")
    (root / "b").write_bytes(b"# c\ny\tuid=1|gid=1|home=/h\nx\tuid=2|gid=2|home=/h|systempw=new\n")
    with pytest.raises(CompileError) as info:
        compile_userdb(str(root), parallel=parallel)
    message = str(info.value)
    assert f"{root}/b:3: duplicate account 'x'" in message
    assert f"first defined at {root}/a:1" in message
    assert "nothing replaced" in message and "systempw" not in message
    assert _pairs(root) == before  # unlike Courier, the shadow file is not replaced either
    assert sorted(os.listdir(tmp_path)) == ["userdb", "userdb.dat", "userdb.lock", "userdbshadow.dat"]


@pytest.mark.parametrize("line, why", [(b"no tab here", "no TAB"), (b"\tuid=1|gid=1|home=/h", "empty account name")])
def test_malformed_line_is_refused_with_file_and_line(tmp_path: Path, line: bytes, why: str) -> None:
    root = _userdb(tmp_path, b"a\tuid=1|gid=1|home=/h\n#x\n" + line + b"\n")
    with pytest.raises(CompileError, match=f"^{root}:3: {why}"):
        compile_userdb(str(root))
    assert not os.path.exists(f"{root}.dat")
    # the inlined hot loop and the shared line parser (text.split_line, used by
    # iter_records) refuse the same line with the same words
    with pytest.raises(CompileError, match=f"^{root}:3: {why}"):
        list(iter_records(source_files(str(root))))


def test_blank_lines_of_spaces_are_skipped(tmp_path: Path) -> None:
    root = _userdb(tmp_path, b"   \na\tuid=1|gid=1|home=/h")  # and no final newline
    assert compile_userdb(str(root)).records == 1
    assert _pairs(root)[0] == {b"a": b"uid=1|gid=1|home=/h|_="}


def test_carriage_return_is_kept_in_the_last_value_like_courier(tmp_path: Path) -> None:
    root = _userdb(tmp_path, b"a\tuid=1|gid=1|home=/h\r\n")
    compile_userdb(str(root))
    assert _pairs(root)[0] == {b"a": b"uid=1|gid=1|home=/h\r|_="}
    assert any("carriage return" in m for m in check_text(str(root)))


def test_recompile_replaces_the_files_by_rename_so_open_readers_keep_the_old_data(tmp_path: Path) -> None:
    root = _userdb(tmp_path, b"a\tuid=1|gid=1|home=/old\n")
    compile_userdb(str(root))
    reader = gdbm.open_reader(f"{root}.dat", lock=False)
    inode = os.stat(f"{root}.dat").st_ino
    root.write_bytes(b"a\tuid=1|gid=1|home=/new\n")
    compile_userdb(str(root))
    assert os.stat(f"{root}.dat").st_ino != inode
    assert reader.get(b"a") == b"uid=1|gid=1|home=/old|_="
    reader.close()
    assert _pairs(root)[0] == {b"a": b"uid=1|gid=1|home=/new|_="}


def test_progress_reports_bytes_up_to_the_total(tmp_path: Path) -> None:
    lines = b"".join(b"u%05d\tuid=1|gid=1|home=/h|systempw=x\n" % i for i in range(10000))
    root = _userdb(tmp_path, lines)
    calls = []
    compile_userdb(str(root), progress=lambda done, total, n: calls.append((done, total, n)))
    assert calls[-1] == (len(lines), len(lines), 10000)
    assert all(done <= total for done, total, _ in calls)


def test_parallel_and_single_process_compiles_are_identical(tmp_path: Path) -> None:
    text = b"".join(b"u%d\tuid=%d|gid=1|home=/h%s\n" % (i, i, b"|imappw=p" if i % 3 else b"") for i in range(500))
    one = _userdb(tmp_path, text, "one")
    two = _userdb(tmp_path, text, "two")
    compile_userdb(str(one), parallel=False)
    compile_userdb(str(two), parallel=True)
    assert _pairs(one) == _pairs(two)


def test_check_text_reports_every_problem_with_file_and_line(tmp_path: Path) -> None:
    root = _userdb(tmp_path, b"a\tuid=1|gid=1|home=/h\nnotab\na\tuid=1|gid=1|home=/h\nb\tuid=1\nc\tuid=x|gid=1|home=/h\n")
    messages = list(check_text(str(root)))
    assert messages == [
        f"{root}:2: no TAB between the name and the fields",
        f"{root}:3: duplicate account 'a' (first defined at {root}:1)",
        f"{root}:4: account 'b' lacks home, uid or gid (Courier ignores it)",
        f"{root}:5: account 'c' has a uid or gid that is not a number",
    ]


def test_verify_compiled_finds_a_stale_record_and_an_extra_key(tmp_path: Path) -> None:
    root = _userdb(tmp_path, b"a\tuid=1|gid=1|home=/h|systempw=x\nb\tuid=1|gid=1|home=/h\n")
    compile_userdb(str(root))
    assert list(verify_compiled(str(root))) == []
    root.write_bytes(b"a\tuid=1|gid=1|home=/h|systempw=y\n")
    assert list(verify_compiled(str(root))) == [
        f"{root}:1: 'a' differs in {root}shadow.dat",
        f"{root}.dat: 'b' is not in the text userdb",
    ]


def test_fallback_writer_through_authkit_gdbm_gives_the_same_files(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    text = b"".join(b"u%d\tuid=%d|gid=1|home=/h|systempw=p%d\n" % (i, i, i) for i in range(300))
    fast = _userdb(tmp_path, text, "fast")
    slow = _userdb(tmp_path, text + b"u7\tuid=1|gid=1|home=/h\n", "slow")
    compile_userdb(str(fast))
    monkeypatch.setenv("AUTHKIT_GDBM_BACKEND", "_gdbm")  # the slower, portable writer
    with pytest.raises(CompileError, match=f"{slow}:301: duplicate account 'u7'"):
        compile_userdb(str(slow))
    slow.write_bytes(text)
    compile_userdb(str(slow), parallel=False)
    assert _pairs(slow) == _pairs(fast)


# ---------------------------------------------------------------- one rule, one place (issue 16)

RECORDS = [
    b"uid=1|gid=1|home=/h",
    b"uid=12345678901|gid=1|home=/h",  # 11 digits: every lookup refuses it
    b"uid=1|gid=99999999999|home=/h",
    b"uid=4294967295|gid=0|home=/h",
    b"uid=1|gid=1",
    b"uid=|gid=1|home=/h",
    b"uid=-1|gid=1|home=/h",
    b"uid=\xd9\xa1|gid=1|home=/h",  # an Arabic-Indic digit: isdigit() but not ASCII
    b"uid|gid=1|home=/h",
    b"home=|uid=1|gid=1",
    b"uid=1|gid=1|home=/h|uid=x",  # the first value counts
    b"uid=x|uid=1|gid=1|home=/h",
    b"||uid=1||gid=1|home=/h||",
    b"systempw=x|uid=1|gid=1|home=/h",
]


def test_check_reports_an_eleven_digit_uid(tmp_path: Path) -> None:
    # issue 16: `authkit check` was silent about a record every lookup refuses
    root = _userdb(tmp_path, b"a\tuid=12345678901|gid=1|home=/h\n")
    assert list(check_text(str(root))) == [f"{root}:1: account 'a' has a uid or gid that is not a number"]


@pytest.mark.parametrize("fields", RECORDS)
def test_check_reports_exactly_the_records_lookups_refuse(tmp_path: Path, fields: bytes) -> None:
    from authkit.errors import UnknownUser
    from authkit.userdb.source import UserdbSource

    root = _userdb(tmp_path, b"a\t" + fields + b"\n")
    text_source = UserdbSource(str(root))
    try:
        text_source.lookup("a")
        refused_text = False
    except UnknownUser:
        refused_text = True
    compile_userdb(str(root))
    try:
        UserdbSource(str(root)).lookup("a")
        refused_compiled = False
    except UnknownUser:
        refused_compiled = True
    reported = list(check_text(str(root)))
    assert refused_text == refused_compiled == bool(reported), (fields, reported)


LINES = [b"", b"#x", b"# x\tuid=1", b"   ", b" \t ", b"\t", b"\tuid=1", b"a", b"a\t", b"a\tb\tc",
         b"a\r", b"a\tuid=1\r", b" a\tuid=1", b"a \tuid=1", b"\x00\tuid=1", b"a|b\tuid=1|",
         b"a\tuid=1||", b"a\t|", b"\xff\tsystempw=x|"]


@pytest.mark.parametrize("line", LINES)
def test_the_inlined_hot_loop_splits_lines_like_the_shared_rule(tmp_path: Path, line: bytes) -> None:
    """makeuserdb's hot loop (_feed) inlines text.split_line: for every line it
    stores, skips or refuses exactly what the shared rule says, and stores
    exactly split_compiled_bytes of the fields."""
    from authkit.userdb.text import MalformedLine, split_compiled_bytes, split_line

    try:
        parts = split_line(line)
        why = None
    except MalformedLine as exc:
        parts, why = None, str(exc)
    root = _userdb(tmp_path, b"z\tuid=1|gid=1|home=/h\n" + line + b"\n")
    for parallel in (False, True):
        if why is not None:
            with pytest.raises(CompileError, match=f"^{root}:2: {why}$"):
                compile_userdb(str(root), parallel=parallel)
            continue
        compile_userdb(str(root), parallel=parallel)
        main, shadow = _pairs(root)
        expected_main = {b"z": b"uid=1|gid=1|home=/h|_="}
        expected_shadow = {}
        if parts is not None:
            value, secret = split_compiled_bytes(parts[1], b"")
            expected_main[parts[0]] = value
            if secret is not None:
                expected_shadow[parts[0]] = secret
        assert (main, shadow) == (expected_main, expected_shadow)
