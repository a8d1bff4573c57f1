"""Low-level descriptor I/O shared by the program edges (authkit.cli._edge) and
the userdb writer (authkit.userdb.atomic).  Imports nothing but ``os``: it is on
the per-login path."""

from __future__ import annotations

import os


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``, looping over short writes (``os.write``
    may write less); OSError as ``os.write`` raises it."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


__all__ = ["write_all"]
