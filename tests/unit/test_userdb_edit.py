"""authkit.userdb.edit and the modules it writes through (atomic, journal,
recordstore, locks): the in-kernel splice and the undo journal of an
interrupted change (the record finder is tested in test_userdb_find.py; the
SIGKILL loop against Courier's authdaemond is in
tests/integration/test_admin_courier.py)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from authkit.errors import TemporaryFailure
from authkit.userdb import atomic, edit, gdbm, journal, locks, recordstore
from authkit.userdb.compile import compile_userdb, verify_compiled

TEXT = b"ab\tx=1\n#c\nabc\tuid=2\nxab\tq\nab2\t\nlast\tz"


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


def _compile_as_courier(path: Path) -> None:
    """Compile the way Courier's makeuserdb does: knowing nothing of the journal."""
    marker = Path(journal.pending_path(str(path)))
    saved = marker.read_bytes() if marker.exists() else None
    if saved is not None:
        marker.unlink()
    compile_userdb(str(path), parallel=False)
    if saved is not None:
        marker.write_bytes(saved)


def test_journal_is_never_applied_to_a_text_changed_since(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """issue 17 item 1: after a killed change of b, another program deletes b and
    lengthens a (above it) and recompiles; the next change of any record must
    not put b's old line back (nor into a's line): it refuses, keeps the journal,
    writes nothing, and says what to do."""
    path = tmp_path / "userdb"
    path.write_bytes(b"a\tuid=1|gid=1|home=/h|systempw=A\nb\tuid=1|gid=1|home=/h|systempw=OLD\n"
                     b"c\tuid=1|gid=1|home=/h|systempw=C\n")
    path.chmod(0o600)
    compile_userdb(str(path), parallel=False)
    killed = _killed_before_compiled_rename(monkeypatch)
    with pytest.raises(killed):
        edit.update_record(str(path), "b", [("systempw", "NEW")])
    monkeypatch.undo()
    marker = Path(journal.pending_path(str(path)))
    assert marker.exists()
    # Courier's userdb del b, userdb a set mail=..., then Courier's makeuserdb
    path.write_bytes(b"a\tuid=1|gid=1|home=/h|systempw=A|mail=/a/longer/maildir\n"
                     b"c\tuid=1|gid=1|home=/h|systempw=C\n")
    _compile_as_courier(path)
    before = path.read_bytes()
    with pytest.raises(TemporaryFailure) as refused:
        edit.update_record(str(path), "c", [("quota", "1S")])
    message = str(refused.value)
    assert str(path) in message and "'b'" in message and str(marker) in message and "remove" in message
    assert "OLD" not in message and "NEW" not in message
    assert path.read_bytes() == before and marker.exists()
    assert _shadow(path, b"b") is None and list(verify_compiled(str(path))) == []
    assert journal.pending(str(path)) == [str(marker)]
    with pytest.raises(TemporaryFailure):
        compile_userdb(str(path), parallel=False)  # makeuserdb refuses too
    marker.unlink()  # what the message says to do (after checking b's record)
    edit.update_record(str(path), "c", [("quota", "1S")])
    assert path.read_bytes() == before.replace(b"systempw=C\n", b"systempw=C|quota=1S\n")
    assert list(verify_compiled(str(path))) == []


def _kill_at_commit_of(monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    """Stop (as a kill would) just before a file ending in ``suffix`` is renamed into place."""
    real_commit = atomic.Replacement.commit

    def commit(self: atomic.Replacement) -> None:
        if self.path.endswith(suffix):
            raise Killed
        real_commit(self)

    monkeypatch.setattr(atomic.Replacement, "commit", commit)


def test_a_recovery_killed_half_way_is_finished_by_the_next_one(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = _userdb(tmp_path)
    before = path.read_bytes()
    _kill_at_commit_of(monkeypatch, "shadow.dat")  # text and userdb.dat new, shadow old
    with pytest.raises(Killed):
        edit.update_record(str(path), "a", [("systempw", "NEW"), ("quota", "2S")])
    monkeypatch.undo()
    _kill_at_commit_of(monkeypatch, "/userdb.dat")  # the recovery puts the old text back, then dies
    with pytest.raises(Killed):
        edit.update_record(str(path), "b", [("quota", "1S")])
    monkeypatch.undo()
    assert path.read_bytes() == before and os.path.exists(journal.pending_path(str(path)))
    assert len(list(verify_compiled(str(path)))) == 1  # userdb.dat still has a's quota
    assert journal.recover_all(str(path)) == 1
    assert path.read_bytes() == before and list(verify_compiled(str(path))) == []
    assert not os.path.exists(journal.pending_path(str(path)))


def test_a_failed_compiled_copy_leaves_the_text_unchanged_and_no_journal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """issue 17 item 1: disk full (or any error) while copying userdbshadow.dat."""
    path = _userdb(tmp_path)
    before = path.read_bytes()
    real_copy = atomic.copy_range

    def full(src: int, dst: int, offset: int, count: int) -> None:
        if count > 4096:  # the compiled copy, not the text
            raise OSError(errno.ENOSPC, "No space left on device")
        real_copy(src, dst, offset, count)

    monkeypatch.setattr(atomic, "copy_range", full)
    with pytest.raises(TemporaryFailure, match="No space left on device"):
        edit.update_record(str(path), "a", [("systempw", "NEW")])
    monkeypatch.undo()
    assert path.read_bytes() == before and _shadow(path, b"a") == b"systempw=OLD"
    assert sorted(n for n in os.listdir(tmp_path) if n.startswith(".")) == [".lock.userdb"]
    edit.update_record(str(path), "a", [("systempw", "NEW")])
    assert _shadow(path, b"a") == b"systempw=NEW"


def test_a_failed_compiled_rename_rolls_the_text_back_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _userdb(tmp_path)
    before = path.read_bytes()
    real_commit = atomic.Replacement.commit

    def refuse_shadow(self: atomic.Replacement) -> None:
        if self.path.endswith("shadow.dat"):
            self.abort()
            raise TemporaryFailure(f"cannot write {self.path}: Input/output error")
        real_commit(self)

    monkeypatch.setattr(atomic.Replacement, "commit", refuse_shadow)
    with pytest.raises(TemporaryFailure):
        edit.update_record(str(path), "a", [("systempw", "NEW"), ("quota", "2S")])  # both files change
    monkeypatch.undo()
    assert path.read_bytes() == before and list(verify_compiled(str(path))) == []
    assert not os.path.exists(journal.pending_path(str(path)))


def test_extended_attributes_survive_every_rewrite(tmp_path: Path) -> None:
    """issue 17 item 9 (the ACL case with a real reader is in
    tests/integration/test_admin_courier.py)."""
    path = _userdb(tmp_path)
    names = (str(path), f"{path}.dat", f"{path}shadow.dat")
    try:
        for name in names:
            os.setxattr(name, "user.authkit-test", b"kept")
    except OSError as exc:
        pytest.skip(f"no user extended attributes on {tmp_path}: {exc.strerror}")
    edit.update_record(str(path), "a", [("systempw", "NEW"), ("quota", "2S")])
    assert [os.getxattr(n, "user.authkit-test") for n in names] == [b"kept"] * 3
    compile_userdb(str(path))
    assert [os.getxattr(n, "user.authkit-test") for n in names] == [b"kept"] * 3


def test_a_symlinked_text_is_edited_where_it_points_under_the_targets_lock(tmp_path: Path) -> None:
    """issue 17 item 6 (the concurrent case with a held lock is in
    tests/reliability/test_faults.py)."""
    real = tmp_path / "real"
    real.mkdir()
    target = real / "userdb-file"
    target.write_bytes(b"a\tuid=1|gid=1|home=/h|systempw=OLD\n")
    target.chmod(0o600)
    link = tmp_path / "userdb"
    link.symlink_to(target)
    edit.update_record(str(link), "a", [("systempw", "NEW")])
    assert link.is_symlink() and target.read_bytes() == b"a\tuid=1|gid=1|home=/h|systempw=NEW\n"
    assert (real / ".lock.userdb-file").exists() and not (tmp_path / ".lock.userdb").exists()
    assert locks.text_lock_path(str(link)) == str(real / ".lock.userdb-file")


def test_a_planted_lock_symlink_is_refused_and_nothing_is_created(tmp_path: Path) -> None:
    """issue 17 item 8: root must not create a file anywhere through a link."""
    path = _userdb(tmp_path)
    before = path.read_bytes()
    for lock in (tmp_path / ".lock.userdb", tmp_path / "userdb.lock"):
        lock.unlink(missing_ok=True)
        victim = tmp_path / ("created-through-" + lock.name)
        lock.symlink_to(victim)
        with pytest.raises(TemporaryFailure, match="symbolic link"):
            edit.update_record(str(path), "a", [("systempw", "NEW")])
        assert not victim.exists() and path.read_bytes() == before
        lock.unlink()


def test_a_symlinked_compiled_file_is_refused_not_replaced(tmp_path: Path) -> None:
    path = _userdb(tmp_path)
    shadow = tmp_path / "userdbshadow.dat"
    elsewhere = tmp_path / "elsewhere.dat"
    shadow.rename(elsewhere)
    shadow.symlink_to(elsewhere)
    kept = elsewhere.read_bytes()
    with pytest.raises(TemporaryFailure, match="symbolic link"):
        edit.update_record(str(path), "a", [("systempw", "NEW")])
    assert shadow.is_symlink() and elsewhere.read_bytes() == kept
    assert b"systempw=OLD" in path.read_bytes()


def test_a_killed_change_is_still_rolled_back_after_a_record_was_appended(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal's new line is still at its place: the rollback is safe."""
    path = _userdb(tmp_path)
    killed = _killed_before_compiled_rename(monkeypatch)
    with pytest.raises(killed):
        edit.update_record(str(path), "a", [("systempw", "NEW")])
    monkeypatch.undo()
    with open(path, "ab") as handle:  # Courier's userdb c set ... appends
        handle.write(b"c\tuid=1|gid=1|home=/h|systempw=C\n")
    edit.update_record(str(path), "b", [("quota", "1S")])
    assert path.read_bytes() == (b"a\tuid=1|gid=1|home=/h|systempw=OLD\nb\tuid=1|gid=1|home=/h|systempw=B|quota=1S\n"
                                 b"c\tuid=1|gid=1|home=/h|systempw=C\n")
    assert _shadow(path, b"a") == b"systempw=OLD"


def test_a_killed_delete_is_not_undone_once_the_name_was_added_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty new line proves nothing: the size must match too, else a
    rollback would make a duplicate name."""
    path = _userdb(tmp_path)
    killed = _killed_before_compiled_rename(monkeypatch)
    with pytest.raises(killed):
        edit.delete_record(str(path), "a")
    monkeypatch.undo()
    with open(path, "ab") as handle:  # someone adds a again, at the end
        handle.write(b"a\tuid=2|gid=2|home=/h2|systempw=ANEW\n")
    before = path.read_bytes()
    with pytest.raises(TemporaryFailure, match="cannot be rolled back"):
        edit.update_record(str(path), "b", [("quota", "1S")])
    assert path.read_bytes() == before and path.read_bytes().count(b"\na\t") + before.startswith(b"a\t") == 1
