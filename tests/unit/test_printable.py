"""authkit.printable: the one sanitizer of untrusted text (issue 16), and the
characters issue 17 item 10 found passing through the log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from authkit.cli._log import safe
from authkit.printable import is_unprintable, printable

ROOT = Path(__file__).resolve().parents[2]

#: issue 17 item 10: C1 controls, line/paragraph separators, every bidi control
MISSED = ["\u0085", "\u009b", "\u0080", "\u009f", "\u2028", "\u2029", "\u202e", "\u202a", "\u202b",
          "\u202c", "\u202d", "\u2066", "\u2067", "\u2068", "\u2069", "\u200e", "\u200f", "\u061c"]


@pytest.mark.parametrize("char", MISSED + ["\0", "\n", "\r", "\t", "\x1b", "\x7f", "\udcff"])
def test_every_line_breaking_or_reordering_character_is_escaped(char: str) -> None:
    code = ord(char)
    escaped = f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    assert is_unprintable(char)
    assert printable(f"a{char}b") == f"a{escaped}b"
    assert safe(f"a{char}b") == f"a{escaped}b"


@pytest.mark.parametrize("text", ["alice@example.com", "José Ñandú", "日本語", "a b", "€ 5", "\u00a0"])
def test_ordinary_text_is_kept(text: str) -> None:
    assert printable(text) == text


def test_options_escape_keep_surrogates_replacement_and_limit() -> None:
    assert safe("a b\\c") == "a\\x20b\\x5cc"
    assert printable("a\tb\nc", keep="\t") == "a\tb\\x0ac"
    assert printable("\udcff\u2028", surrogates=True) == "\udcff\\u2028"
    assert printable("x\u202ey\n", replacement=" ") == "x y "
    assert printable("abcdef", 3) == "abc..." and printable("abc", 3) == "abc"
    assert printable(b"\xff\xc2\x85ok") == "\\xff\\x85ok"


def test_a_name_cannot_disguise_a_courierpasswd_log_line(tmp_path: Path) -> None:
    """End to end: the log line of a login whose name holds U+0085, U+2028 and
    U+202E is one line with those characters escaped."""
    userdb = tmp_path / "userdb"
    userdb.write_text("")
    name = "eve\u0085fake\u2028line\u202etxt.exe\u009b31m"
    r, w = os.pipe()
    os.write(w, name.encode() + b"\0pw\0")
    os.close(w)
    try:
        proc = subprocess.run([sys.executable, str(ROOT / "bin" / "courierpasswd"), "--stderr", "--stdin"],
                              stdin=r, capture_output=True, env={"AUTHKIT_USERDB": str(userdb), "PATH": "/usr/bin:/bin"},
                              timeout=60)
    finally:
        os.close(r)
    assert proc.returncode == 1
    line = proc.stderr.decode()
    assert line == "courierpasswd: auth user=eve\\x85fake\\u2028line\\u202etxt.exe\\x9b31m service=login result=rejected\n"


def test_courieruserinfo_prints_one_line_per_item_whatever_the_value() -> None:
    from authkit.cli.courieruserinfo import render

    class Account:
        uid, gid, home, address, maildir, quota, options = 5000, 5000, "/h", "a@x", "", "", ""
        fullname = "Eve\u2028uid=0\u202e\u0085\tx\udcff"

    assert render(Account(), {"name"}) == b"name=Eve\\u2028uid=0\\u202e\\x85\tx\xff\n"


def test_a_500_reply_text_stays_one_line() -> None:
    from authkit.poppassd import _one_line

    assert _one_line("refused\u2028200 Password changed\u0085") == "refused 200 Password changed"
