"""Courier userdb: the text format (``text``), reading it from files and
directories (``files``), the compiled GDBM pair (``gdbm``, ``compile``), the
account source (``source``) and the locked editor (``edit``), which writes
through ``locks`` (the lock order), ``atomic`` (replace a file: temporary,
fsync, rename), ``recordstore`` (one compiled record, copy-on-write) and
``journal`` (the undo journal and recovery)."""


def compiled_paths(root: str) -> tuple[str, str]:
    """Courier's names for the compiled pair of a userdb: ``<root>.dat`` and
    ``<root>shadow.dat`` (``/etc/courier/userdb`` -> ``userdb.dat``,
    ``userdbshadow.dat``).  Here, in the package, so that a login against the
    compiled pair does not import the text-file reader."""
    return root + ".dat", root + "shadow.dat"
