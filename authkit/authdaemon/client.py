"""Socket I/O for authdaemond: one request per connection, with timeouts.

The thin layer under :mod:`authkit.authdaemon.protocol`: connect to the unix
socket, write the request, feed what arrives to a reader, close.  Timeouts are
Courier's (authdaemonlib.c): ``connect_timeout`` for the connect,
``write_timeout`` for each write, ``read_timeout`` for the whole of a
PRE/AUTH/PASSWD reply, and ``per_read_timeout`` for each read of an ENUMERATE
reply.

Every failure is a ``TemporaryFailure`` whose message starts with the socket
path: socket missing, nothing listening, permission denied, a timeout, a reset
or a malformed reply (:class:`~authkit.authdaemon.protocol.ProtocolError`).

Uses the ``_socket`` C module rather than ``socket``: ``socket`` imports
``enum`` and ``selectors`` (about 5 ms), more than a login may spend.
"""

from __future__ import annotations

import _socket
from time import monotonic

from ..errors import TemporaryFailure

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterator

    from ..account import Account
    from .protocol import AccountReplyReader, EnumerateReader, PasswdReplyReader

#: Bytes asked of each recv().
_CHUNK = 8192


def _failure(path: str, what: str) -> TemporaryFailure:
    return TemporaryFailure(f"authdaemond socket {path}: {what}")


def connect(path: str, timeout: float) -> "_socket.socket":
    """A connected unix stream socket to ``path``; ``TemporaryFailure`` naming
    the path (and the likely cause) otherwise."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
    except FileNotFoundError:
        sock.close()
        raise _failure(path, "does not exist (is authdaemond running?)") from None
    except ConnectionRefusedError:
        sock.close()
        raise _failure(path, "connection refused (authdaemond is not running)") from None
    except PermissionError:
        sock.close()
        raise _failure(path, "permission denied") from None
    except TimeoutError:
        sock.close()
        raise _failure(path, f"no connection within {timeout:g} s") from None
    except BlockingIOError:
        sock.close()
        raise _failure(path, "authdaemond is too busy to accept a connection") from None
    except (OSError, ValueError) as exc:
        sock.close()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise _failure(path, f"cannot connect: {reason}") from None
    return sock


def _send(sock: "_socket.socket", path: str, request: bytes, timeout: float) -> None:
    sock.settimeout(timeout)
    try:
        sock.sendall(request)
    except TimeoutError:
        raise _failure(path, f"request not accepted within {timeout:g} s") from None
    except OSError as exc:
        raise _failure(path, f"connection lost while sending: {exc.strerror or exc}") from None


def _recv(sock: "_socket.socket", path: str, timeout: float, waited: str) -> bytes:
    sock.settimeout(timeout)
    try:
        return sock.recv(_CHUNK)
    except TimeoutError:
        raise _failure(path, f"no complete reply within {waited}") from None
    except OSError as exc:
        raise _failure(path, f"connection lost while reading: {exc.strerror or exc}") from None


def exchange(path: str, request: bytes,
             reader: "AccountReplyReader | PasswdReplyReader", *,
             connect_timeout: float = 10.0, write_timeout: float = 10.0,
             read_timeout: float = 30.0) -> object:
    """Send ``request`` on a new connection and return what ``reader`` makes of
    the reply (it reads until the reader says the reply is complete, and the
    whole reply must arrive within ``read_timeout`` seconds).  Raises
    ``TemporaryFailure`` naming ``path``."""
    sock = connect(path, connect_timeout)
    try:
        _send(sock, path, request, write_timeout)
        deadline = monotonic() + read_timeout
        while True:
            remaining = deadline - monotonic()
            if remaining <= 0:
                raise _failure(path, f"no complete reply within {read_timeout:g} s")
            chunk = _recv(sock, path, remaining, f"{read_timeout:g} s")
            try:
                result = reader.receive_data(chunk)
            except TemporaryFailure as exc:
                raise _failure(path, str(exc)) from None
            if result is not None:
                return result
    finally:
        sock.close()


def enumerate_accounts(path: str, request: bytes, reader: "EnumerateReader", *,
                       connect_timeout: float = 10.0, write_timeout: float = 10.0,
                       per_read_timeout: float = 60.0) -> "Iterator[Account]":
    """Send ``request`` (``ENUMERATE``) and yield the accounts as their lines
    arrive, never holding more than one read's worth of the reply.  Each read
    may wait ``per_read_timeout`` seconds.  Raises ``TemporaryFailure`` naming
    ``path`` (after the accounts already yielded) when the enumeration breaks
    off.  Closing the generator early closes the connection."""
    sock = connect(path, connect_timeout)
    try:
        _send(sock, path, request, write_timeout)
        while not reader.finished:
            chunk = _recv(sock, path, per_read_timeout, f"{per_read_timeout:g} s per read")
            try:
                accounts = reader.receive_data(chunk)
            except TemporaryFailure as exc:
                raise _failure(path, str(exc)) from None
            yield from accounts
    finally:
        sock.close()


__all__ = ["connect", "enumerate_accounts", "exchange"]
