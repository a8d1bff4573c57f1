"""The authdaemond socket protocol, sans-I/O.

This module contains no networking code at all: it turns requests into bytes
and bytes into replies, and says when a reply is complete.  ``client.py`` does
the socket calls; ``source.py`` puts both behind ``AccountSource``.

The wire format (spec courier-authlib.md section 4, Courier's authdaemonlib.c):

* one request per connection, optionally preceded by ``TCPREMOTEIP=<ip>\\n``;
* ``PRE . <service> <name>\\n`` (lookup) and ``AUTH <n>\\n<service>\\n<type>\\n<data>``
  (``login`` or ``cram-<alg>``) are answered by ``KEY=value\\n``... ``.\\n``, or
  ``FAIL\\n``; ``PASSWD <service>\\t<name>\\t<old>\\t<new>\\n`` by ``OK\\n`` or
  ``FAIL\\n``; ``ENUMERATE\\n`` by ``# <module>`` headers, tab-separated account
  lines and a final ``.\\n``;
* a connection closed without a complete reply is a temporary failure.

Request builders refuse, before anything is sent, what the framing cannot carry
(a newline in a name would start a second request line): they raise the
``Rejected`` subclass the daemon's answer would have been.  Reply readers are fed
with :meth:`receive_data` (``b""`` means EOF) and raise :class:`ProtocolError`
(a ``TemporaryFailure``) for anything malformed, cut short or too large.  Any
other exception from this module is a bug.  Messages never quote a reply's
content (it holds password hashes) nor a password.
"""

from __future__ import annotations

from binascii import b2a_base64

from ..account import CRAM_ALGORITHMS, Account
from ..errors import BadPassword, Misuse, PolicyRefused, TemporaryFailure, UnknownUser

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

#: Longest request line the daemon reads, without its ``\n`` (authdaemond.c
#: ``doauth``: 8191 bytes and more -> silent close).
MAX_LINE = 8190
#: ``AUTH <n>``: the daemon needs ``n < 8192``.
MAX_AUTH_BODY = 8191
#: Longest PRE/AUTH/PASSWD reply: Courier's client reads into an 8192-byte
#: buffer that keeps one byte for the NUL (authdaemonlib.c ``readauth``).
MAX_REPLY = 8191
#: Longest ENUMERATE line (with its ``\n``): Courier's ``linebuf[BUFSIZ]``.
MAX_ENUMERATE_LINE = 8192

#: The ENUMERATE request.
ENUMERATE_REQUEST = b"ENUMERATE\n"

#: Bytes ``PASSWD`` fields may not hold (authuserdbpwd.c ``bad()``), besides
#: every byte below 0x20.
_PASSWD_FORBIDDEN = b"|='\""


class ProtocolError(TemporaryFailure):
    """The daemon's reply is malformed, cut short, too large or missing: the
    answer is unknown, so this is a temporary failure (exit 111)."""


class Fail:
    """The daemon's ``FAIL``: a rejection.  Use the :data:`FAIL` instance."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "FAIL"


#: The one :class:`Fail` value a reader returns.
FAIL = Fail()


# --------------------------------------------------------------------- text

def encode(text: str) -> bytes:
    """``text`` as the daemon sees it: UTF-8, with ``surrogateescape`` so that
    names read from non-UTF-8 input go back out as the same bytes."""
    return text.encode("utf-8", "surrogateescape")


def decode(data: bytes) -> str:
    """The inverse of :func:`encode`."""
    return data.decode("utf-8", "surrogateescape")


def _has_control(data: bytes) -> bool:
    """True if ``data`` holds a byte below 0x20 (Courier's ``badstr``)."""
    return any(byte < 0x20 for byte in data)


def _service(service: str) -> bytes:
    """The service name, which must be one non-empty word without control bytes
    (``PRE`` splits at spaces); otherwise the caller misused the interface."""
    raw = encode(service)
    if not raw or any(byte <= 0x20 for byte in raw):
        raise Misuse(f"service name {service!r} cannot be sent to authdaemond")
    return raw


def apply_defdomain(name: str, defdomain: str, domainsep: str | None = None) -> str:
    """Courier's ``strdupdefdomain`` (authmoduser3.c), used for logins and CRAM,
    never for ``PRE`` or ``PASSWD``: append ``defdomain`` to ``name`` unless
    ``name`` holds a character of ``domainsep`` or, when ``domainsep`` is None
    (unset), the first character of ``defdomain``.  ``defdomain`` is the whole
    suffix, ``@`` included (``DEFDOMAIN=@example.com``)."""
    if not defdomain:
        return name
    if domainsep is not None:
        has_domain = any(char in name for char in domainsep)
    else:
        has_domain = defdomain[0] in name
    return name if has_domain else name + defdomain


# ----------------------------------------------------------------- requests

def metadata(remote_ip: str | None) -> bytes:
    """The ``TCPREMOTEIP=<ip>\\n`` line, or ``b""`` when ``remote_ip`` is None or
    empty.  A value with a control byte, or too long for a request line, is a
    ``TemporaryFailure`` as in Courier's ``request_with_meta`` (the environment
    of the program is broken, not the credentials)."""
    if not remote_ip:
        return b""
    line = b"TCPREMOTEIP=" + encode(remote_ip)
    if _has_control(line) or len(line) > MAX_LINE:
        raise TemporaryFailure("TCPREMOTEIP holds a control character or is too long")
    return line + b"\n"


def pre_request(service: str, name: str, remote_ip: str | None = None) -> bytes:
    """``PRE . <service> <name>\\n`` (all modules).  Raises ``UnknownUser``
    without sending for a name no account can have on the wire: empty, with a
    control byte, starting with a space (the daemon skips it) or too long."""
    raw_service = _service(service)
    raw_name = encode(name)
    line = b"PRE . " + raw_service + b" " + raw_name
    if not raw_name or raw_name[:1] == b" " or _has_control(raw_name) or len(line) > MAX_LINE:
        raise UnknownUser(f"no account {name!r} (cannot be sent to authdaemond)")
    return metadata(remote_ip) + line + b"\n"


def _auth(service: str, authtype: bytes, authdata: bytes, remote_ip: str | None) -> bytes:
    """``AUTH <n>\\n<service>\\n<authtype>\\n<authdata>``, ``n`` counting every byte
    after the first line (authdaemon.c ``auth_generic``)."""
    body = _service(service) + b"\n" + authtype + b"\n" + authdata
    if len(body) > MAX_AUTH_BODY:
        raise BadPassword("credentials too long for authdaemond")
    return metadata(remote_ip) + b"AUTH %d\n" % len(body) + body


def login_request(service: str, name: str, password: bytes,
                  remote_ip: str | None = None) -> bytes:
    """``AUTH`` with authtype ``login`` and data ``<name>\\n<password>\\n``.

    ``name`` is sent as given (apply :func:`apply_defdomain` first).  Raises
    ``BadPassword`` without sending for an empty name or password, or one with a
    control byte (Courier's ``auth_login`` refuses those the same way)."""
    raw_name = encode(name)
    if not raw_name or not password or _has_control(raw_name) or _has_control(password):
        raise BadPassword("login name or password cannot be sent to authdaemond")
    return _auth(service, b"login", raw_name + b"\n" + password + b"\n", remote_ip)


def cram_request(service: str, algorithm: str, challenge: bytes, name: str,
                 response_hex: str, remote_ip: str | None = None) -> bytes:
    """``AUTH`` with authtype ``cram-<algorithm>`` and data
    ``base64(challenge)\\nbase64("<name> <response_hex>")\\n`` (cramlib.c).

    Raises ``Misuse`` for an algorithm other than md5, sha1, sha256;
    ``BadPassword`` without sending for an empty or control-byte name, or a
    response that is empty or holds a space or control byte (the daemon splits
    the decoded response at its last space)."""
    if algorithm not in CRAM_ALGORITHMS:
        raise Misuse(f"unknown CRAM algorithm {algorithm!r}")
    raw_name = encode(name)
    raw_response = encode(response_hex)
    if (not raw_name or _has_control(raw_name) or not raw_response
            or any(byte <= 0x20 for byte in raw_response)):
        raise BadPassword("CRAM name or response cannot be sent to authdaemond")
    authdata = (b2a_base64(challenge, newline=False) + b"\n"
                + b2a_base64(raw_name + b" " + raw_response, newline=False) + b"\n")
    return _auth(service, b"cram-" + algorithm.encode(), authdata, remote_ip)


def passwd_request(service: str, name: str, old: bytes, new: bytes,
                   remote_ip: str | None = None) -> bytes:
    """``PASSWD <service>\\t<name>\\t<old>\\t<new>\\n``.

    Refused without sending, as authuserdb would refuse it (``FAIL``) or the
    framing could not carry it: an empty name (``UnknownUser``), an empty old
    password (``BadPassword``); an empty new password, or any field holding a
    byte below 0x20 (tab and newline included), ``|``, ``=``, ``'`` or ``"``,
    or a line too long (``PolicyRefused``)."""
    raw_service = _service(service)
    raw_name = encode(name)
    if not raw_name:
        raise UnknownUser("empty login name")
    if not old:
        raise BadPassword("empty old password")
    if not new:
        raise PolicyRefused("the new password is empty")
    fields = (raw_service, raw_name, old, new)
    for field in fields:
        if _has_control(field) or any(byte in _PASSWD_FORBIDDEN for byte in field):
            raise PolicyRefused(
                "authdaemond cannot change a password with a control character, "
                "| = ' or \" in the name or a password")
    line = b"PASSWD " + b"\t".join(fields)
    if len(line) > MAX_LINE:
        raise PolicyRefused("name or password too long for authdaemond")
    return metadata(remote_ip) + line + b"\n"


# ------------------------------------------------------------------ replies

class AccountReplyReader:
    """Reads one ``PRE``/``AUTH`` reply.

    :meth:`receive_data` returns None until the reply is complete, then
    :data:`FAIL` (the reply was exactly ``FAIL\\n``) or the ``KEY -> value``
    dict of a success reply (``PASSWD2``, the clear password, is dropped).
    It raises :class:`ProtocolError` when the connection ends (``b""``) before
    that, when more than ``limit`` bytes arrive, when a line is neither
    ``KEY=value`` nor the terminator, or when bytes follow the end."""

    __slots__ = ("limit", "_buffer", "_received", "_fields", "_result")

    def __init__(self, limit: int = MAX_REPLY) -> None:
        self.limit = limit
        self._buffer = b""
        self._received = 0
        self._fields: "dict[str, str]" = {}
        self._result: "dict[str, str] | Fail | None" = None

    def receive_data(self, data: bytes) -> "dict[str, str] | Fail | None":
        """Feed the next bytes (``b""`` = EOF); the reply once complete."""
        if self._result is not None:
            if data:
                raise ProtocolError("authdaemond sent data after the end of its reply")
            return self._result
        if not data:
            if self._received == 0:
                raise ProtocolError("authdaemond closed the connection without a reply")
            raise ProtocolError(f"authdaemond's reply was cut short after {self._received} bytes")
        self._received += len(data)
        if self._received > self.limit:
            raise ProtocolError(f"authdaemond's reply is longer than {self.limit} bytes")
        buffer = self._buffer + data
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line = buffer[start:end]
            start = end + 1
            if line == b".":
                self._result = self._fields
            elif line == b"FAIL" and not self._fields:  # only as the whole reply
                self._result = FAIL
            else:
                key, sep, value = line.partition(b"=")
                if not sep or not key:
                    raise ProtocolError("authdaemond's reply has a line that is not KEY=value")
                if key != b"PASSWD2":
                    self._fields[decode(key)] = decode(value)
                continue
            if start != len(buffer):
                raise ProtocolError("authdaemond sent data after the end of its reply")
            self._buffer = b""
            return self._result
        self._buffer = buffer[start:]
        return None


class PasswdReplyReader:
    """Reads one ``PASSWD`` reply: :meth:`receive_data` returns None until the
    first line is complete, then True for ``OK`` or :data:`FAIL`.  Raises
    :class:`ProtocolError` for EOF before that, any other line, bytes after it,
    or more than ``limit`` bytes."""

    __slots__ = ("limit", "_buffer", "_result")

    def __init__(self, limit: int = MAX_REPLY) -> None:
        self.limit = limit
        self._buffer = b""
        self._result: "bool | Fail | None" = None

    def receive_data(self, data: bytes) -> "bool | Fail | None":
        """Feed the next bytes (``b""`` = EOF); the verdict once complete."""
        if self._result is not None:
            if data:
                raise ProtocolError("authdaemond sent data after the end of its reply")
            return self._result
        if not data:
            if not self._buffer:
                raise ProtocolError("authdaemond closed the connection without a reply")
            raise ProtocolError("authdaemond's reply was cut short")
        buffer = self._buffer + data
        if len(buffer) > self.limit:
            raise ProtocolError(f"authdaemond's reply is longer than {self.limit} bytes")
        line, sep, rest = buffer.partition(b"\n")
        if not sep:
            self._buffer = buffer
            return None
        if line == b"OK":
            result: "bool | Fail" = True
        elif line == b"FAIL":
            result = FAIL
        else:
            raise ProtocolError("authdaemond's PASSWD reply is neither OK nor FAIL")
        if rest:
            raise ProtocolError("authdaemond sent data after the end of its reply")
        self._buffer = b""
        self._result = result
        return result


class EnumerateReader:
    """Reads an ``ENUMERATE`` reply as it streams in.

    :meth:`receive_data` returns the accounts whose lines completed with these
    bytes (a list, maybe empty); :attr:`finished` turns True at the ``.`` line.
    ``# <module>`` headers set :attr:`module`; empty lines are skipped.  An
    account line is ``name\\tuid\\tgid\\thome[\\tmaildir[\\toptions]]`` (further
    fields ignored); like Courier's ``_auth_enumerate`` a line with fewer
    fields, or whose uid or gid is 0 or not a number, is skipped.  (Unlike it,
    a ``#`` inside a line is kept: Courier cuts the line there.)

    Raises :class:`ProtocolError` for EOF before the ``.`` line (an aborted
    enumeration), bytes after it, or a line longer than ``line_limit``."""

    __slots__ = ("line_limit", "module", "finished", "_buffer")

    def __init__(self, line_limit: int = MAX_ENUMERATE_LINE) -> None:
        self.line_limit = line_limit
        self.module = ""
        self.finished = False
        self._buffer = b""

    def receive_data(self, data: bytes) -> "list[Account]":
        """Feed the next bytes (``b""`` = EOF); the accounts they completed."""
        if self.finished:
            if data:
                raise ProtocolError("authdaemond sent data after the end of its enumeration")
            return []
        if not data:
            raise ProtocolError("authdaemond's enumeration was aborted (no final '.' line)")
        buffer = self._buffer + data
        accounts: "list[Account]" = []
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            if end + 1 - start > self.line_limit:
                raise ProtocolError(
                    f"authdaemond's enumeration has a line longer than {self.line_limit} bytes")
            line = buffer[start:end]
            start = end + 1
            if line == b".":
                if start != len(buffer):
                    raise ProtocolError("authdaemond sent data after the end of its enumeration")
                self.finished = True
                self._buffer = b""
                return accounts
            if line[:1] == b"#":
                self.module = decode(line[1:].strip())
                continue
            account = _enumerated_account(line)
            if account is not None:
                accounts.append(account)
        rest = buffer[start:]
        if len(rest) >= self.line_limit:
            raise ProtocolError(
                f"authdaemond's enumeration has a line longer than {self.line_limit} bytes")
        self._buffer = rest
        return accounts


def _enumerated_account(line: bytes) -> "Account | None":
    """The account of one ENUMERATE line, or None for a line Courier skips."""
    fields = line.split(b"\t")
    if len(fields) < 4:
        return None
    name, uid, gid, home = fields[0], fields[1], fields[2], fields[3]
    if (not (uid.isdigit() and gid.isdigit()) or max(len(uid), len(gid)) > 10
            or int(uid) == 0 or int(gid) == 0):
        return None
    maildir = fields[4] if len(fields) > 4 else b""
    options = fields[5] if len(fields) > 5 else b""
    return Account(address=decode(name), uid=int(uid), gid=int(gid), home=decode(home),
                   maildir=decode(maildir), options=decode(options))


# ------------------------------------------------------------------ account

def _number(fields: "dict[str, str]", key: str) -> int:
    value = fields.get(key)
    if value is None:
        raise ProtocolError(f"authdaemond's reply has no {key}")
    if not (value.isascii() and value.isdigit()) or len(value) > 10:
        raise ProtocolError(f"authdaemond's reply has a {key} that is not a number")
    return int(value)


def account_from_reply(fields: "dict[str, str]", name: str,
                       getpwnam: "Callable[[str], tuple[int, int] | None] | None" = None,
                       ) -> Account:
    """The :class:`Account` a success reply describes.

    ``UID``, ``GID``, ``HOME`` -> uid, gid, home; ``ADDRESS`` -> address (``name``,
    the name sent, when absent); ``NAME`` -> fullname; ``MAILDIR``, ``QUOTA``,
    ``OPTIONS``; ``PASSWD`` -> encrypted_password.  ``passwords`` stays empty.

    ``USERNAME`` (sent by modules such as authpam, never by authuserdb) names a
    system account: as in Courier's ``auth_callback_default`` the uid is that
    account's (``getpwnam(USERNAME)``, which returns ``(uid, gid)`` or None),
    the gid is ``GID`` when sent, else the system account's.

    Raises :class:`ProtocolError` when UID (without USERNAME), GID (without
    USERNAME) or HOME is missing or malformed, and ``TemporaryFailure`` when
    USERNAME names no system account."""
    username = fields.get("USERNAME")
    if username is not None:
        system = getpwnam(username) if getpwnam is not None else None
        if system is None:
            raise TemporaryFailure(
                f"authdaemond's reply names system user {username!r}, which does not exist")
        uid = system[0]
        gid = _number(fields, "GID") if "GID" in fields else system[1]
    else:
        uid = _number(fields, "UID")
        gid = _number(fields, "GID")
    home = fields.get("HOME")
    if not home:
        raise ProtocolError("authdaemond's reply has no HOME")
    return Account(
        address=fields.get("ADDRESS", name),
        uid=uid,
        gid=gid,
        home=home,
        maildir=fields.get("MAILDIR", ""),
        quota=fields.get("QUOTA", ""),
        fullname=fields.get("NAME", ""),
        options=fields.get("OPTIONS", ""),
        encrypted_password=fields.get("PASSWD", ""),
    )


__all__ = [
    "ENUMERATE_REQUEST", "FAIL", "MAX_AUTH_BODY", "MAX_ENUMERATE_LINE", "MAX_LINE",
    "MAX_REPLY", "AccountReplyReader", "EnumerateReader", "Fail", "PasswdReplyReader",
    "ProtocolError", "account_from_reply", "apply_defdomain", "cram_request", "decode",
    "encode", "login_request", "metadata", "passwd_request", "pre_request",
]
