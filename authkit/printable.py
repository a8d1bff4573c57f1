"""The one sanitizer of untrusted text for a log line, a reply or an output line.

:func:`printable` writes every character that could break a line or hide what
follows as an escape (``\\xNN`` below U+0100, else ``\\uNNNN``):

* the C0 controls, DEL and the C1 controls (U+0080-U+009F: U+0085 NEL ends a
  line for some readers, U+009B CSI starts a terminal escape);
* U+2028 LINE SEPARATOR and U+2029 PARAGRAPH SEPARATOR;
* the bidirectional controls (U+061C, U+200E, U+200F, U+202A-U+202E,
  U+2066-U+2069), which reorder what a terminal or a log viewer shows;
* lone surrogates (bytes that were not UTF-8, decoded with surrogateescape),
  unless the caller keeps them to write the same bytes back.

The set is a fixed list, not ``str.isprintable`` (whose answer changes with the
Unicode version), so a line reads the same on every Python.  Every program uses
this function: the event log (authkit.cli._log.safe), the reasons courierpasswd
logs, the values courieruserinfo prints, the 500 texts of courierpassd and the
error lines of ``authkit``.  It imports nothing (per-login path).
"""

from __future__ import annotations

_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def is_unprintable(char: str) -> bool:
    """True for a character :func:`printable` always escapes (see the module
    docstring), lone surrogates included."""
    code = ord(char)
    return (code < 0x20 or 0x7F <= code <= 0x9F or code == 0x2028 or code == 0x2029
            or 0xD800 <= code <= 0xDFFF or char in _BIDI)


def printable(text: "str | bytes", limit: "int | None" = None, *, escape: str = "", keep: str = "",
              surrogates: bool = False, replacement: "str | None" = None) -> str:
    """``text`` as one printable line.

    ``bytes`` are decoded as UTF-8 (other bytes become ``\\xNN``).  Every
    character :func:`is_unprintable` names, and every character of ``escape``
    (e.g. ``" \\\\"`` for ``key=value`` logs), is written as ``\\xNN`` or
    ``\\uNNNN``, or as ``replacement`` when one is given; characters of ``keep``
    (e.g. TAB) and, with ``surrogates``, lone surrogates are left as they are.
    With ``limit``, at most that many characters of ``text`` are kept and
    ``...`` marks the cut."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "backslashreplace")
    cut = limit is not None and len(text) > limit
    if cut:
        text = text[:limit]
    if text.isascii() and text.isprintable() and not (escape and any(c in text for c in escape)):
        return text + "..." if cut else text
    out = []
    for char in text:
        if char in keep or not (char in escape or is_unprintable(char)):
            out.append(char)
        elif surrogates and 0xD800 <= ord(char) <= 0xDFFF:
            out.append(char)
        elif replacement is not None:
            out.append(replacement)
        else:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    if cut:
        out.append("...")
    return "".join(out)


__all__ = ["printable", "is_unprintable"]
