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


def iter_file_records(
    path: str, on_problem: "ProblemHandler | None" = None
) -> "Iterator[tuple[int, bytes, bytes, int]]":
    """``(lineno, name, fields, line_bytes)`` of every record line of the text
    file ``path``, streamed (1 MiB buffer), split by the one line rule
    (:func:`authkit.userdb.text.split_line`; ``line_bytes`` counts the newline).
    A malformed line is reported to ``on_problem(path, lineno, message)`` (which
    may raise to stop) and skipped: it never hides the other accounts."""
    try:
        handle = open(path, "rb", buffering=1 << 20)
    except OSError as exc:
        raise _os_failure(path, exc) from None
    with handle:
        try:
            for lineno, line in enumerate(handle, 1):
                try:
                    parts = split_line(line[:-1] if line[-1:] == b"\n" else line)
                except MalformedLine as exc:
                    if on_problem is not None:
                        on_problem(path, lineno, str(exc))
                    continue
                if parts is not None:
                    yield lineno, parts[0], parts[1], len(line)
        except OSError as exc:
            raise _os_failure(path, exc) from None


def iter_lines(
    root: str, on_problem: "ProblemHandler | None" = None
) -> "Iterator[tuple[str, str, int, str, str]]":
    """``(path, location, lineno, name, fields)`` of every record line of the
    userdb, in order, decoded (:func:`iter_file_records` for each file)."""
    for path, location in userdb_files(root):
        for lineno, name, fields, _size in iter_file_records(path, on_problem):
            yield path, location, lineno, decode(name), decode(fields)


__all__ = [
    "compiled_paths",
    "userdb_files",
    "iter_file_records",
    "iter_lines",
]
