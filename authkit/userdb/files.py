"""Reading a Courier userdb text source from disk: a file, or a directory.

A directory userdb is every file below it, recursively, skipping names that start
with ``.`` (makeuserdb's ``do_file``; this also skips Courier's ``.lock.*`` and
``.tmp.*`` files).  Each file's *location* is its path relative to the userdb root
plus ``/`` (``example.com/``), "" for a single-file userdb: the value makeuserdb
stores in the ``_`` field.  authkit walks a directory in sorted order, so that the
first of two records with the same name is well defined (makeuserdb refuses such
duplicates).

Errors: a missing or unreadable userdb raises ``TemporaryFailure`` naming the path.
"""

from __future__ import annotations

import os

from ..errors import TemporaryFailure
from . import compiled_paths  # noqa: F401 - re-exported: files.compiled_paths
from .text import MalformedLine, decode, split_line

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Iterator

    ProblemHandler = Callable[[str, int, str], None]


def _os_failure(path: str, exc: OSError) -> TemporaryFailure:
    reason = exc.strerror or exc.__class__.__name__
    return TemporaryFailure(f"cannot read userdb {path}: {reason}")


def userdb_files(root: str) -> list[tuple[str, str]]:
    """``(path, location)`` of every text file of the userdb at ``root``.

    Raises ``TemporaryFailure`` when ``root`` is missing or unreadable."""
    try:
        if not os.path.isdir(root):
            os.stat(root)
            return [(root, "")]
    except OSError as exc:
        raise _os_failure(root, exc) from None
    found: list[tuple[str, str]] = []

    def walk(directory: str, prefix: str) -> None:
        try:
            names = sorted(os.listdir(directory))
        except OSError as exc:
            raise _os_failure(directory, exc) from None
        for name in names:
            if name.startswith("."):
                continue
            path = os.path.join(directory, name)
            if os.path.isdir(path):
                walk(path, prefix + name + "/")
            else:
                found.append((path, prefix + name + "/"))

    walk(root, "")
    return found


def read_file(path: str) -> bytes:
    """The whole file; ``TemporaryFailure`` naming it on any error."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise _os_failure(path, exc) from None


def find_in_data(data: bytes, name: bytes) -> tuple[int, int] | None:
    """Start and end offsets (end excludes the newline) of the first line of
    ``data`` whose name is exactly ``name``, or None (always None for a name
    starting with ``#``: such a line is a comment).  A byte-level search: the
    cost of a lookup in a text userdb is one ``bytes.find`` pass, not a parse."""
    if name[:1] == b"#":
        return None  # a "#" line is a comment (a commented-out record), never an account
    needle = name + b"\t"
    start = 0
    while True:
        hit = data.find(needle, start)
        if hit < 0:
            return None
        if hit == 0 or data[hit - 1 : hit] == b"\n":
            end = data.find(b"\n", hit)
            return hit, (len(data) if end < 0 else end)
        start = hit + 1


def line_number(data: bytes, offset: int) -> int:
    """1-based line number of ``offset`` in ``data``."""
    return data.count(b"\n", 0, offset) + 1


def iter_lines(
    root: str, on_problem: "ProblemHandler | None" = None
) -> "Iterator[tuple[str, str, int, str, str]]":
    """``(path, location, lineno, name, fields)`` of every record line of the
    userdb, in order.  A malformed line is reported to ``on_problem(path, lineno,
    message)`` and skipped: it never hides the other accounts."""
    for path, location in userdb_files(root):
        data = read_file(path)
        for lineno, line in enumerate(data.split(b"\n"), 1):
            try:
                parts = split_line(line)
            except MalformedLine as exc:
                if on_problem is not None:
                    on_problem(path, lineno, str(exc))
                continue
            if parts is not None:
                yield path, location, lineno, decode(parts[0]), decode(parts[1])


__all__ = [
    "compiled_paths",
    "userdb_files",
    "read_file",
    "find_in_data",
    "line_number",
    "iter_lines",
]
