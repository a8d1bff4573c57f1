"""Replacing a file so that a crash leaves the old one or the new one, never a mix.

The one way authkit writes a userdb file (text, ``userdb.dat``,
``userdbshadow.dat``), in two steps so that a change of several files can write
every new version before it puts any in place:

1. :func:`prepare` creates ``.tmp.<name>`` beside the file (``O_NOFOLLOW``: a planted
   symbolic link is refused), gives it the old file's
   owner, extended attributes (ACLs included: ``system.posix_acl_access``) and
   mode, lets the caller write the content, and fsyncs it.  Disk full, a
   read-only directory and every other error surface here, as
   ``TemporaryFailure`` naming the file, with the temporary file removed and the
   old file untouched;
2. :meth:`Replacement.commit` renames it over the file and fsyncs the directory
   (:meth:`Replacement.abort` removes it instead).

The old file is opened once, with ``O_NOFOLLOW``, and everything (owner, mode,
attributes, the bytes copied) comes from that descriptor: nothing is checked by
name and then used by name.  A file that is a symbolic link is refused here;
callers that follow links (Courier's ``userdb`` does, for the text) pass the
target.
"""

from __future__ import annotations

import errno
import os

from .._io import write_all
from ..errors import TemporaryFailure

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Iterable


def fsync_dir(directory: str) -> None:
    """fsync ``directory`` (after a rename in it)."""
    fd = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_range(src: int, dst: int, offset: int, count: int) -> None:
    """Copy ``count`` bytes of ``src`` from ``offset`` to the current end of
    ``dst`` (in the kernel with copy_file_range; read/write if unsupported)."""
    out = os.lseek(dst, 0, os.SEEK_CUR)
    while count > 0:
        try:
            done = os.copy_file_range(src, dst, min(count, 1 << 30), offset, out)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
                raise
            done = -1
        if done <= 0:
            chunk = os.pread(src, min(count, 1 << 20), offset)
            if not chunk:
                raise OSError(errno.EIO, "short read while copying")
            done = os.pwrite(dst, chunk, out)
        offset += done
        out += done
        count -= done
    os.lseek(dst, out, os.SEEK_SET)


#: attributes whose loss changes who may read the file: never skipped
_ACCESS_ATTRIBUTES = ("system.posix_acl_access", "system.posix_acl_default")


def copy_xattrs(src: int, dst: int) -> None:
    """Copy every extended attribute of the file open as ``src`` to ``dst``
    (POSIX ACLs, ``user.*``, ``security.*`` ...).  An attribute this process may
    not set (``trusted.*`` or a security label when not privileged) is skipped;
    failing to copy an ACL raises ``OSError``, since readers would lose access."""
    try:
        names = os.listxattr(src)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return
        raise
    for name in names:
        try:
            os.setxattr(dst, name, os.getxattr(src, name))
        except OSError as exc:
            if name in _ACCESS_ATTRIBUTES or exc.errno not in (
                    errno.EPERM, errno.EACCES, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA):
                raise


def open_existing(path: str) -> int | None:
    """``path`` opened read-only without following a symbolic link, or None if
    it does not exist.  Raises ``TemporaryFailure`` (a link: refused)."""
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise TemporaryFailure(f"{path} is a symbolic link: refusing to replace it") from None
        raise TemporaryFailure(f"cannot read {path}: {exc.strerror}") from None


class Replacement:
    """A fully written, fsync'ed new version of ``path`` waiting beside it as
    ``tmp``.  Exactly one of :meth:`commit` and :meth:`abort` should follow."""

    __slots__ = ("path", "tmp")

    def __init__(self, path: str, tmp: str) -> None:
        self.path = path
        self.tmp = tmp

    def commit(self) -> None:
        """Rename the new version over ``path`` and fsync the directory.  Raises
        ``TemporaryFailure`` (the new version is then removed)."""
        try:
            os.rename(self.tmp, self.path)
            fsync_dir(os.path.dirname(self.path))
        except OSError as exc:
            self.abort()
            raise TemporaryFailure(f"cannot write {self.path}: {exc.strerror}") from None

    def abort(self) -> None:
        """Remove the new version (``path`` stays as it is)."""
        try:
            os.unlink(self.tmp)
        except OSError:
            pass


def prepare(path: str, body: "Callable[[int], None]", like: int | None, *, tmp_path: str | None = None,
            new_mode: int = 0o600) -> Replacement:
    """Write the new version of ``path`` beside it (``tmp_path``, default
    ``<dir>/.tmp.<name>``): ``body(fd)`` writes the content.  ``like`` is a
    descriptor of the old file, whose owner (kept ours when not root, as Courier's
    script does), extended attributes and mode the new one gets; None for a new
    file (mode ``new_mode``, our owner).  Returns the :class:`Replacement`; on any
    error the temporary file is removed and ``TemporaryFailure`` names the file."""
    directory, name = os.path.split(path)
    tmp = tmp_path or os.path.join(directory, ".tmp." + name)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise TemporaryFailure(f"cannot write {tmp}: {exc.strerror}") from None
    replacement = Replacement(path, tmp)
    try:
        try:
            mode = new_mode
            if like is not None:
                st = os.fstat(like)
                mode = st.st_mode & 0o7777
                if st.st_uid != os.geteuid() or st.st_gid != os.getegid():
                    try:
                        os.fchown(fd, st.st_uid, st.st_gid)
                    except PermissionError:
                        pass
                copy_xattrs(like, fd)
            os.fchmod(fd, mode)
            body(fd)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException as exc:
        replacement.abort()
        if isinstance(exc, OSError):
            raise TemporaryFailure(f"cannot write {path}: {exc.strerror}") from None
        raise
    return replacement


def prepare_splice(path: str, start: int, end: int, replacement: bytes) -> Replacement:
    """The new version of ``path`` with bytes ``[start, end)`` replaced by
    ``replacement`` (the unchanged parts copied in the kernel), prepared with
    :func:`prepare`.  ``path`` must exist."""
    src = open_existing(path)
    if src is None:
        raise TemporaryFailure(f"cannot read {path}: No such file or directory")
    try:
        try:
            size = os.fstat(src).st_size
        except OSError as exc:
            raise TemporaryFailure(f"cannot read {path}: {exc.strerror}") from None

        def body(fd: int) -> None:
            copy_range(src, fd, 0, start)
            write_all(fd, replacement)
            copy_range(src, fd, end, size - end)

        return prepare(path, body, src)
    finally:
        os.close(src)


def splice_file(path: str, start: int, end: int, replacement: bytes) -> None:
    """Replace bytes ``[start, end)`` of ``path`` with ``replacement`` the safe
    way (:func:`prepare_splice`, then commit).  Raises ``TemporaryFailure`` naming
    the file; ``path`` is then untouched."""
    prepare_splice(path, start, end, replacement).commit()


def replace_file(path: str, chunks: "Iterable[bytes]", tmp_path: str | None = None) -> None:
    """Replace ``path`` (or create it, mode 0600) with the concatenation of
    ``chunks``, the safe way.  Raises ``TemporaryFailure`` naming the file;
    ``path`` is then untouched."""

    def body(fd: int) -> None:
        for chunk in chunks:
            write_all(fd, chunk)

    like = open_existing(path)
    try:
        replacement = prepare(path, body, like, tmp_path=tmp_path)
    finally:
        if like is not None:
            os.close(like)
    replacement.commit()


def copy_attributes(old_path: str, new_path: str) -> None:
    """Give ``new_path`` (a file about to be renamed over ``old_path``) the
    extended attributes of ``old_path``, if that exists (for files written by
    someone else's code, e.g. libgdbm in makeuserdb).  Raises ``TemporaryFailure``."""
    old = open_existing(old_path)
    if old is None:
        return
    try:
        new = os.open(new_path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            copy_xattrs(old, new)
        finally:
            os.close(new)
    except OSError as exc:
        raise TemporaryFailure(f"cannot copy the attributes of {old_path}: {exc.strerror}") from None
    finally:
        os.close(old)


__all__ = ["fsync_dir", "write_all", "copy_range", "copy_xattrs", "open_existing", "Replacement",
           "prepare", "prepare_splice", "splice_file", "replace_file", "copy_attributes"]
