"""authkit.userdb.edit: the in-kernel splice and the undo journal of an
interrupted change (the record finder is tested in test_userdb_find.py; the
SIGKILL loop against Courier's authdaemond is in
tests/integration/test_admin_courier.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from authkit.userdb import edit, gdbm
from authkit.userdb.compile import compile_userdb, verify_compiled

TEXT = b"ab\tx=1\n#c\nabc\tuid=2\nxab\tq\nab2\t\nlast\tz"


def test_splice_file_keeps_owner_mode_and_the_rest_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "u"
    path.write_bytes(TEXT)
    path.chmod(0o640)
    edit.splice_file(str(path), 10, 20, b"abc\tuid=3|gid=3\n")
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


def _killed_after(monkeypatch: pytest.MonkeyPatch, function: str) -> None:
    """Make the change stop (as a kill would) right after edit.<function>."""
    original = getattr(edit, function)

    class Killed(BaseException):
        pass

    def stop(*args: object, **kwargs: object) -> None:
        original(*args, **kwargs)
        raise Killed

    monkeypatch.setattr(edit, function, stop)
    return Killed


def test_change_interrupted_after_the_text_rename_is_rolled_back(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = _userdb(tmp_path)
    killed = _killed_after(monkeypatch, "splice_file")
    with pytest.raises(killed):
        edit.update_record(str(path), "a", [("systempw", "NEW")])
    monkeypatch.undo()
    assert b"systempw=NEW" in path.read_bytes()  # text new, compiled old: the one difference
    assert _shadow(path, b"a") == b"systempw=OLD"
    assert os.path.exists(edit.pending_path(str(path)))
    assert [m for m in verify_compiled(str(path))] == [f"{path}:1: 'a' differs in {path}shadow.dat"]
    edit.update_record(str(path), "b", [("quota", "1S")])  # any change of the file recovers
    assert path.read_bytes().startswith(b"a\tuid=1|gid=1|home=/h|systempw=OLD\n")
    assert list(verify_compiled(str(path))) == []
    assert not os.path.exists(edit.pending_path(str(path)))


def test_change_interrupted_after_the_compiled_rename_is_kept(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = _userdb(tmp_path)
    killed = _killed_after(monkeypatch, "update_compiled")
    with pytest.raises(killed):
        edit.update_record(str(path), "a", [("systempw", "NEW")])
    monkeypatch.undo()
    compile_userdb(str(path))  # makeuserdb recovers first
    assert b"a\tuid=1|gid=1|home=/h|systempw=NEW\n" in path.read_bytes()
    assert _shadow(path, b"a") == b"systempw=NEW"
    assert not os.path.exists(edit.pending_path(str(path)))


def test_interrupted_delete_is_rolled_back_to_its_old_place(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = _userdb(tmp_path)
    before = path.read_bytes()
    killed = _killed_after(monkeypatch, "splice_file")
    with pytest.raises(killed):
        edit.delete_record(str(path), "a")
    monkeypatch.undo()
    assert edit.recover_pending(str(path)) == 1
    assert path.read_bytes() == before
    assert _shadow(path, b"a") == b"systempw=OLD"


def test_torn_journal_is_discarded(tmp_path: Path) -> None:
    path = _userdb(tmp_path)
    Path(edit.pending_path(str(path))).write_bytes(b"authkit-pend")
    edit.update_record(str(path), "b", [("quota", "1S")])
    assert not os.path.exists(edit.pending_path(str(path)))
    assert list(verify_compiled(str(path))) == []


def test_update_picks_up_a_text_edit_made_without_makeuserdb(tmp_path: Path) -> None:
    path = _userdb(tmp_path)
    path.write_bytes(path.read_bytes().replace(b"systempw=B", b"systempw=C"))  # Courier's userdb script
    edit.update_record(str(path), "b", [("quota", "1S")])
    assert _shadow(path, b"b") == b"systempw=C"
