"""authkit.userdb.edit and the modules it writes through (atomic, journal,
recordstore, locks): the chunked record finder, the in-kernel splice and the undo
journal of an interrupted change (the SIGKILL loop against Courier's authdaemond
is in tests/integration/test_admin_courier.py)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from authkit.userdb import atomic, edit, gdbm, journal, recordstore
from authkit.userdb.compile import compile_userdb, verify_compiled

TEXT = b"ab\tx=1\n#c\nabc\tuid=2\nxab\tq\nab2\t\nlast\tz"


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1 << 20])
def test_find_line_finds_the_first_exact_name_across_chunk_boundaries(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(edit, "_CHUNK", chunk)
    path = tmp_path / "u"
    path.write_bytes(TEXT)
    assert edit._find_line(str(path), b"ab") == (0, 7, b"x=1")
    assert edit._find_line(str(path), b"abc") == (10, 20, b"uid=2")
    assert edit._find_line(str(path), b"ab2") == (26, 31, b"")
    assert edit._find_line(str(path), b"last") == (31, 37, b"z")  # no final newline
    for absent in (b"b", b"x", b"nope", b"#c"):
        assert edit._find_line(str(path), absent) is None


def test_find_line_agrees_with_a_naive_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(1)
    path = tmp_path / "u"
    for chunk in (1, 5, 13):
        monkeypatch.setattr(edit, "_CHUNK", chunk)
        lines = [b"u%d\tv=%d" % (rng.randrange(40), i) for i in range(60)]
        path.write_bytes(b"\n".join(lines) + b"\n")
        for n in range(40):
            key, expected, pos = b"u%d" % n, None, 0
            for line in lines:
                if line.startswith(key + b"\t"):
                    expected = (pos, pos + len(line) + 1, line[len(key) + 1:])
                    break
                pos += len(line) + 1
            assert edit._find_line(str(path), key) == expected


def test_splice_file_keeps_owner_mode_and_the_rest_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "u"
    path.write_bytes(TEXT)
    path.chmod(0o640)
    atomic.splice_file(str(path), 10, 20, b"abc\tuid=3|gid=3\n")
    assert path.read_bytes() == TEXT.replace(b"abc\tuid=2\n", b"abc\tuid=3|gid=3\n")
    assert path.stat().st_mode & 0o777 == 0o640
    assert not (tmp_path / ".tmp.u").exists()


def _userdb(tmp_path: Path) -> Path:
    path = tmp_path / "userdb"
    path.write_bytes(b"a\tuid=1|gid=1|home=/h|systempw=OLD\nb\tuid=1|gid=1|home=/h|systempw=B\n")
    path.chmod(0o600)
    compile_userdb(str(path), parallel=False)
    return path


def _shadow(path: Path, name: bytes) -> bytes | None:
    with gdbm.open_reader(f"{path}shadow.dat") as db:
        return db.get(name)


class Killed(BaseException):
    """What a SIGKILL would do at that point: nothing more runs."""


def _killed_before_compiled_rename(monkeypatch: pytest.MonkeyPatch) -> type[BaseException]:
    """Make the change stop (as a kill would) after the text rename, before the
    compiled files are renamed into place."""
    original = recordstore.commit

    def stop(replacements: list) -> None:
        if replacements:  # (the check before the change has nothing to write)
            raise Killed
        original(replacements)

    monkeypatch.setattr(recordstore, "commit", stop)
    return Killed


def _killed_after_compiled_rename(monkeypatch: pytest.MonkeyPatch) -> type[BaseException]:
    original = recordstore.commit

    def stop(replacements: list) -> None:
        original(replacements)
        if replacements:
            raise Killed

    monkeypatch.setattr(recordstore, "commit", stop)
    return Killed


def test_change_interrupted_after_the_text_rename_is_rolled_back(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = _userdb(tmp_path)
    killed = _killed_before_compiled_rename(monkeypatch)
    with pytest.raises(killed):
        edit.update_record(str(path), "a", [("systempw", "NEW")])
    monkeypatch.undo()
    assert b"systempw=NEW" in path.read_bytes()  # text new, compiled old: the one difference
    assert _shadow(path, b"a") == b"systempw=OLD"
    assert os.path.exists(journal.pending_path(str(path)))
    assert [m for m in verify_compiled(str(path))] == [f"{path}:1: 'a' differs in {path}shadow.dat"]
    edit.update_record(str(path), "b", [("quota", "1S")])  # any change of the file recovers
    assert path.read_bytes().startswith(b"a\tuid=1|gid=1|home=/h|systempw=OLD\n")
    assert list(verify_compiled(str(path))) == []
    assert not os.path.exists(journal.pending_path(str(path)))


def test_change_interrupted_after_the_compiled_rename_is_kept(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = _userdb(tmp_path)
    killed = _killed_after_compiled_rename(monkeypatch)
    with pytest.raises(killed):
        edit.update_record(str(path), "a", [("systempw", "NEW")])
    monkeypatch.undo()
    compile_userdb(str(path))  # makeuserdb recovers first
    assert b"a\tuid=1|gid=1|home=/h|systempw=NEW\n" in path.read_bytes()
    assert _shadow(path, b"a") == b"systempw=NEW"
    assert not os.path.exists(journal.pending_path(str(path)))


def test_interrupted_delete_is_rolled_back_to_its_old_place(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = _userdb(tmp_path)
    before = path.read_bytes()
    killed = _killed_before_compiled_rename(monkeypatch)
    with pytest.raises(killed):
        edit.delete_record(str(path), "a")
    monkeypatch.undo()
    assert journal.recover_all(str(path)) == 1
    assert path.read_bytes() == before
    assert _shadow(path, b"a") == b"systempw=OLD"


def test_torn_journal_is_discarded(tmp_path: Path) -> None:
    path = _userdb(tmp_path)
    Path(journal.pending_path(str(path))).write_bytes(b"authkit-pend")
    edit.update_record(str(path), "b", [("quota", "1S")])
    assert not os.path.exists(journal.pending_path(str(path)))
    assert list(verify_compiled(str(path))) == []


def test_update_picks_up_a_text_edit_made_without_makeuserdb(tmp_path: Path) -> None:
    path = _userdb(tmp_path)
    path.write_bytes(path.read_bytes().replace(b"systempw=B", b"systempw=C"))  # Courier's userdb script
    edit.update_record(str(path), "b", [("quota", "1S")])
    assert _shadow(path, b"b") == b"systempw=C"
