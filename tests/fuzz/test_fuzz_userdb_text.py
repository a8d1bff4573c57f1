"""Fuzzing the userdb text parser and the locked editor (authkit.userdb.text,
authkit.userdb.edit).

Properties: ``split_line`` returns None, a ``(name, fields)`` pair, or raises
``MalformedLine``; ``make_account`` returns an Account or raises
``InvalidRecord``; an edit either refuses (ValueError) or yields a record in
which the set fields read back as set, every other field is kept, and there is
no extra field and no extra line; ``update_record`` on a real file changes at
most the one line, byte for byte elsewhere, and keeps the file's mode.
"""

from __future__ import annotations

import os
import tempfile

from hypothesis import given
from hypothesis import strategies as st

from _budget import Counter, run_fuzz
from authkit.account import Account
from authkit.userdb import edit, text

_nasty = st.sampled_from(["|", "=", "\t", "\r", "\n", "\0", "\udcff", "é", "#", " ", "x", "pw"])
_value = st.one_of(st.text(max_size=12), st.lists(_nasty, max_size=6).map("".join),
                   st.binary(max_size=12).map(text.decode))
_key = st.one_of(st.sampled_from(["systempw", "imappw", "uid", "gid", "home", "mail", "hmac-md5pw", "options"]),
                 _value)


def test_split_line_and_make_account_raise_only_their_own_errors() -> None:
    count = Counter()

    @given(line=st.one_of(st.binary(max_size=80),
                          st.lists(st.binary(max_size=15), max_size=5).map(lambda fs: b"a\t" + b"|".join(fs)),
                          st.sampled_from([b"x\tuid=" + b"9" * 4400 + b"|gid=1|home=/h",
                                           b"x\tuid=\xd9\xa1|gid=1|home=/h", b"#a\tuid=1"])))
    def target(line: bytes) -> None:
        count()
        try:
            parts = text.split_line(line)
        except text.MalformedLine as exc:
            assert b"\t" not in line or line.startswith(b"\t")
            assert str(exc) in ("no TAB between the name and the fields", "empty account name")
            return
        if parts is None:
            assert not line or line.startswith(b"#") or not line.strip()
            return
        name, fields = parts
        assert name and b"\t" not in name and line == name + b"\t" + fields
        values = text.first_values(text.parse_fields(text.decode(fields)))
        try:
            account = text.make_account(text.decode(name), values)
        except text.InvalidRecord:
            return
        assert isinstance(account, Account) and account.home

    run_fuzz("userdb-split_line-make_account", target, count)


def test_edit_fields_never_adds_a_field_or_a_line() -> None:
    count = Counter()

    @given(fields=st.lists(st.tuples(_key, _value), max_size=6),
           sets=st.lists(st.tuples(_key, _value), max_size=3),
           unset=st.lists(_key, max_size=2))
    def target(fields: list, sets: list, unset: list) -> None:
        count()
        # one value per key: with a key twice, edit_fields keeps the last value for
        # an existing field but the first for a new one (reported, not relied on)
        sets = list({k: (k, v) for k, v in reversed(sets)}.values())[::-1]
        clean = [(k, v) for k, v in fields
                 if k and not set(k) & set("|=\t\n\r\0") and not set(v) & set("|\n\r\0")]
        old = "|".join(f"{k}={v}" for k, v in clean)
        try:
            new = text.edit_fields(old, sets, unset)
        except ValueError:
            assert any(not k or set(k) & set("|=\t\n\r\0") or set(v) & set("|\n\r\0") for k, v in sets)
            return
        line = text.format_line("someone", new)
        assert line.count(b"\n") == 1 and b"\r" not in line and b"\0" not in line
        assert line.count(b"\t") == 1 + text.encode(new).count(b"\t")
        pairs = text.parse_fields(new)
        keys = [k for k, _ in pairs]
        expected = {k for k, _ in clean} | {k for k, _ in sets}
        assert set(keys) <= expected - (set(unset) - {k for k, _ in sets})
        values = text.first_values(pairs)
        wanted = dict(sets)
        for key, value in wanted.items():
            if key not in unset:
                assert values[key] == value
        assert len(pairs) <= len(clean) + len(wanted)

    run_fuzz("userdb-edit_fields", target, count)


_NEIGHBOURS = (b"# comment line, kept\n"
               b"before\tuid=1000|gid=1000|home=/home/before|systempw={SHA}AAAA\n"
               b"\n"
               b"target\tuid=1000|gid=1000|home=/home/t|systempw={SHA}BBBB|mail=/m\n"
               b"after\tuid=1001|gid=1001|home=/home/after\n")


def test_update_record_on_a_file_touches_one_line_only() -> None:
    count = Counter()

    @given(sets=st.lists(st.tuples(_key, _value), min_size=1, max_size=3), mode=st.sampled_from([0o600, 0o640]))
    def target(sets: list, mode: int) -> None:
        count()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "userdb")
            with open(path, "wb") as handle:
                handle.write(_NEIGHBOURS)
            os.chmod(path, mode)
            try:
                edit.update_record(path, "target", sets)
            except ValueError:
                assert open(path, "rb").read() == _NEIGHBOURS
                return
            data = open(path, "rb").read()
            old_lines, new_lines = _NEIGHBOURS.split(b"\n"), data.split(b"\n")
            assert len(new_lines) == len(old_lines), "an edit never adds a line"
            changed = [i for i, (a, b) in enumerate(zip(old_lines, new_lines)) if a != b]
            assert changed in ([], [3])
            assert new_lines[3].startswith(b"target\t")
            assert os.stat(path).st_mode & 0o7777 == mode
            assert sorted(os.listdir(tmp)) == [".lock.userdb", "userdb", "userdb.lock"]

    run_fuzz("userdb-update_record", target, count, scale=0.5)
