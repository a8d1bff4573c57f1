"""The server side of the authdaemond socket protocol, sans-I/O.

The other half of :mod:`authkit.authdaemon.protocol` (the client side): a
:class:`RequestParser` fed the bytes a client sends returns one typed request,
and the reply builders give the bytes Courier's ``authdaemond`` would send.  No
sockets, no files, no clocks: ``authkit.daemon`` does the I/O and the timers.

What a request may be (Courier's ``authdaemond.c`` ``doauth``, spec
courier-authlib.md section 4):

* zero or more header lines ``NAME=value\\n`` (a line whose first space or ``=``
  is an ``=``); only ``TCPREMOTEIP`` is kept, cut to 39 bytes as Courier keeps it;
* then one command line: :class:`PreRequest`, :class:`LoginRequest` or
  :class:`CramRequest` (both ``AUTH <n>`` plus ``n`` more bytes),
  :class:`PasswdRequest` or :class:`EnumerateRequest`.

Lines are at most :data:`~authkit.authdaemon.protocol.MAX_LINE` bytes before the
``\\n``; a NUL byte ends a line's text, as C strings do.  What Courier answers
with silence (connection closed, nothing sent, which its clients report as a
temporary failure) the parser returns as :class:`Refusal` with an empty
``reply``: an over-long line, EOF mid-request, an unknown or lower-case command,
a PRE line without service or name, a PASSWD line with fewer than four
tab-separated fields, ``AUTH n`` with ``n`` outside ``0..8191``, an AUTH body
without service and authtype lines.  What Courier answers ``FAIL`` to is a
:class:`Refusal` with ``reply == FAIL_REPLY``: a PASSWD line holding a control
byte other than tab, an AUTH whose authtype is not ``login``/``cram-md5``/
``cram-sha1``/``cram-sha256`` or whose data lacks the two lines the authtype
needs, a CRAM response that is not base64 or holds no space.  Bytes after a
complete request are ignored, as Courier reads only what it needs.

Deliberately not copied: Courier checks ``strcmp(buf, "ENUMERATE")`` after
serving an AUTH, with ``buf`` then holding the AUTH body, so an AUTH whose
service is ``ENUMERATE`` also gets a listing; here it is just an AUTH.

Names, services and the other text fields are ``str`` decoded with
``surrogateescape`` (:func:`~authkit.authdaemon.protocol.decode`), so any byte
goes back out unchanged; passwords stay ``bytes``.  Reply builders raise
``ValueError`` for an account value holding a newline (it would let a directory
value forge reply lines such as ``UID=0``); the daemon treats that as a
temporary failure.
"""

from __future__ import annotations

from ..account import fullname_from_gecos, merge_options
from .protocol import MAX_AUTH_BODY, MAX_LINE, decode, encode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..account import Account

#: Courier keeps ``char tcpremoteip[40]``: 39 bytes of the value.
MAX_REMOTE_IP = 39
#: Header lines accepted before the command (Courier has no limit; each costs a
#: line of up to MAX_LINE bytes, so this bounds a request to about 260 kB).
MAX_HEADERS = 32

#: The rejection reply.
FAIL_REPLY = b"FAIL\n"
#: PASSWD's success reply.
OK_REPLY = b"OK\n"
#: The last line of an account reply and of an ENUMERATE listing.
END_LINE = b".\n"
#: The CRAM authtypes, ``cram-<alg>`` -> ``<alg>``.
CRAM_AUTHTYPES = {b"cram-md5": "md5", b"cram-sha1": "sha1", b"cram-sha256": "sha256"}


# ----------------------------------------------------------------- requests

class Request:
    """Base of the typed requests.  ``remote_ip`` is the ``TCPREMOTEIP`` header
    (cut to 39 bytes), "" when none was sent."""

    __slots__ = ("remote_ip",)
    kind = ""

    def __init__(self, remote_ip: str) -> None:
        self.remote_ip = remote_ip

    def _fields(self) -> "tuple[object, ...]":
        return tuple(getattr(self, name) for cls in type(self).__mro__
                     for name in getattr(cls, "__slots__", ()))

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._fields() == other._fields()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self._fields()))

    def __repr__(self) -> str:  # never shows a password
        shown = [f"{name}={getattr(self, name)!r}" for cls in type(self).__mro__
                 for name in getattr(cls, "__slots__", ())
                 if name not in ("password", "old", "new")]
        return f"{type(self).__name__}({', '.join(shown)})"


class PreRequest(Request):
    """``PRE <module> <service> <name>``: look ``name`` up, no password.
    ``module`` is ``.`` (every module) or one module's name."""

    __slots__ = ("module", "service", "name")
    kind = "pre"

    def __init__(self, remote_ip: str, module: str, service: str, name: str) -> None:
        super().__init__(remote_ip)
        self.module, self.service, self.name = module, service, name


class LoginRequest(Request):
    """``AUTH`` with authtype ``login``: ``name`` and ``password`` are the first
    two non-empty lines of the data (Courier's ``strtok(..., "\\n")``)."""

    __slots__ = ("service", "name", "password")
    kind = "login"

    def __init__(self, remote_ip: str, service: str, name: str, password: bytes) -> None:
        super().__init__(remote_ip)
        self.service, self.name, self.password = service, name, password


class CramRequest(Request):
    """``AUTH`` with authtype ``cram-<algorithm>``: ``challenge`` is the decoded
    first line; the decoded second line is split at its last space into
    ``name`` and ``response_hex`` (cramlib.c ``auth_get_cram``)."""

    __slots__ = ("service", "algorithm", "challenge", "name", "response_hex")
    kind = "cram"

    def __init__(self, remote_ip: str, service: str, algorithm: str, challenge: bytes,
                 name: str, response_hex: str) -> None:
        super().__init__(remote_ip)
        self.service, self.algorithm, self.challenge = service, algorithm, challenge
        self.name, self.response_hex = name, response_hex


class PasswdRequest(Request):
    """``PASSWD <service>\\t<name>\\t<old>\\t<new>`` (a fifth field and more are
    ignored)."""

    __slots__ = ("service", "name", "old", "new")
    kind = "passwd"

    def __init__(self, remote_ip: str, service: str, name: str, old: bytes, new: bytes) -> None:
        super().__init__(remote_ip)
        self.service, self.name, self.old, self.new = service, name, old, new


class EnumerateRequest(Request):
    """``ENUMERATE``: list every account."""

    __slots__ = ()
    kind = "enumerate"


class Refusal(Request):
    """A request Courier does not serve.  ``reply`` is what to send before
    closing: :data:`FAIL_REPLY`, or ``b""`` for Courier's silent close.
    ``reason`` says why, for the log (it never quotes the request)."""

    __slots__ = ("reply", "reason")
    kind = "refusal"

    def __init__(self, remote_ip: str, reply: bytes, reason: str) -> None:
        super().__init__(remote_ip)
        self.reply, self.reason = reply, reason


# ------------------------------------------------------------------- parser

def c_atoi(data: bytes) -> int:
    """C's ``atoi``: leading white space, an optional sign, then digits; 0 when
    there are none."""
    index, end = 0, len(data)
    while index < end and data[index] in b" \t\n\v\f\r":
        index += 1
    sign = 1
    if index < end and data[index] in b"+-":
        sign = -1 if data[index] == 0x2D else 1
        index += 1
    start = index
    while index < end and 0x30 <= data[index] <= 0x39:
        index += 1
    return sign * int(data[start:index]) if index > start else 0


_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUE = {byte: value for value, byte in enumerate(_B64)}


def sasl_frombase64(text: bytes) -> "bytes | None":
    """Courier's ``authsasl_frombase64``: the decoded bytes, or None where it
    returns -1.  Decoding stops at the first byte outside the alphabet; up to two
    bytes after that are ignored, ``=`` padding is skipped, and the length up to
    there must be a multiple of 4."""
    j = 0
    while j < len(text) and text[j] in _B64_VALUE:
        j += 1
    if len(text) - j >= 3:
        return None
    while j < len(text) and text[j] == 0x3D:
        j += 1
    if j % 4:
        return None
    out = bytearray()
    for i in range(0, j, 4):
        quad = text[i:i + 4]
        w, x = _B64_VALUE[quad[0]], _B64_VALUE[quad[1]]
        y = _B64_VALUE.get(quad[2], 0)
        z = _B64_VALUE.get(quad[3], 0)
        out.append(((w << 2) | (x >> 4)) & 0xFF)
        if quad[2] != 0x3D:
            out.append(((x << 4) | (y >> 2)) & 0xFF)
        if quad[3] != 0x3D:
            out.append(((y << 6) | z) & 0xFF)
    return bytes(out)


def _c_string(data: bytes) -> bytes:
    """``data`` as a C string sees it: up to its first NUL."""
    nul = data.find(b"\0")
    return data if nul < 0 else data[:nul]


def _tokens(data: bytes) -> "list[bytes]":
    """``strtok(data, "\\n")``: the non-empty lines."""
    return [part for part in data.split(b"\n") if part]


def parse_pre(remote_ip: str, args: bytes) -> Request:
    """The request of a ``PRE`` line's arguments (after ``PRE`` and its spaces)."""
    module, sep, rest = args.partition(b" ")
    if not sep:
        return Refusal(remote_ip, b"", "PRE without service and name")
    service, sep, rest = rest.lstrip(b" ").partition(b" ")
    if not sep:
        return Refusal(remote_ip, b"", "PRE without a name")
    return PreRequest(remote_ip, decode(module), decode(service), decode(rest.lstrip(b" ")))


def parse_passwd(remote_ip: str, args: bytes) -> Request:
    """The request of a ``PASSWD`` line's arguments."""
    if any(byte < 0x20 and byte != 0x09 for byte in args):
        return Refusal(remote_ip, FAIL_REPLY, "PASSWD with a control character")
    fields = args.split(b"\t", 4)
    if len(fields) < 4:
        return Refusal(remote_ip, b"", "PASSWD with fewer than four fields")
    return PasswdRequest(remote_ip, decode(fields[0]), decode(fields[1]), fields[2], fields[3])


def parse_auth_body(remote_ip: str, body: bytes) -> Request:
    """The request of an AUTH body (``<service>\\n<authtype>\\n<data>``)."""
    body = _c_string(body)
    service, sep, rest = body.partition(b"\n")
    if not sep:
        return Refusal(remote_ip, b"", "AUTH body without a service line")
    authtype, sep, data = rest.partition(b"\n")
    if not sep:
        return Refusal(remote_ip, b"", "AUTH body without an authtype line")
    tokens = _tokens(data)
    if authtype == b"login":
        if len(tokens) < 2:
            return Refusal(remote_ip, FAIL_REPLY, "AUTH login without name and password")
        return LoginRequest(remote_ip, decode(service), decode(tokens[0]), tokens[1])
    algorithm = CRAM_AUTHTYPES.get(authtype)
    if algorithm is None:
        return Refusal(remote_ip, FAIL_REPLY, "AUTH with an unsupported authtype")
    if len(tokens) < 2:
        return Refusal(remote_ip, FAIL_REPLY, "AUTH cram without challenge and response")
    challenge = sasl_frombase64(tokens[0])
    response = sasl_frombase64(tokens[1])
    if challenge is None or response is None:
        return Refusal(remote_ip, FAIL_REPLY, "AUTH cram with invalid base64")
    space = response.rfind(b" ")
    if space < 0:
        return Refusal(remote_ip, FAIL_REPLY, "AUTH cram response without a space")
    return CramRequest(remote_ip, decode(service), algorithm, _c_string(challenge),
                       decode(_c_string(response[:space])),
                       decode(_c_string(response[space + 1:])))


class RequestParser:
    """Reads one request.  :meth:`receive_data` returns None until the request
    is complete, then the :class:`Request` (possibly a :class:`Refusal`); later
    calls return that same value.  ``b""`` means EOF: a request cut short is a
    silent :class:`Refusal`.  Any exception from this class is a bug."""

    __slots__ = ("_buffer", "_remote_ip", "_headers", "_auth_length", "_result")

    def __init__(self) -> None:
        self._buffer = b""
        self._remote_ip = b""
        self._headers = 0
        self._auth_length = -1
        self._result: "Request | None" = None

    @property
    def remote_ip(self) -> str:
        """The ``TCPREMOTEIP`` seen so far ("" when none)."""
        return decode(self._remote_ip)

    def receive_data(self, data: bytes) -> "Request | None":
        """Feed the next bytes (``b""`` = EOF); the request once complete."""
        if self._result is not None:
            return self._result
        if not data:
            self._result = Refusal(self.remote_ip, b"", "connection closed mid-request")
            return self._result
        self._buffer += data
        while self._result is None:
            if self._auth_length >= 0:
                if len(self._buffer) < self._auth_length:
                    return None
                self._result = parse_auth_body(self.remote_ip, self._buffer[:self._auth_length])
                break
            end = self._buffer.find(b"\n", 0, MAX_LINE + 1)
            if end < 0:
                if len(self._buffer) > MAX_LINE:
                    self._result = Refusal(self.remote_ip, b"", "request line too long")
                    break
                return None
            line = _c_string(self._buffer[:end])
            self._buffer = self._buffer[end + 1:]
            self._line(line)
        self._buffer = b""
        return self._result

    def _line(self, line: bytes) -> None:
        space, equals = line.find(b" "), line.find(b"=")
        if equals >= 0 and (space < 0 or equals < space):
            self._headers += 1
            if self._headers > MAX_HEADERS:
                self._result = Refusal(self.remote_ip, b"", "too many header lines")
            elif line[:equals] == b"TCPREMOTEIP":
                self._remote_ip = line[equals + 1:equals + 1 + MAX_REMOTE_IP]
            return
        if space >= 0:
            command, args = line[:space], line[space + 1:].lstrip(b" ")
        else:
            command, args = line, b""
        ip = self.remote_ip
        if command == b"PRE":
            self._result = parse_pre(ip, args)
        elif command == b"PASSWD":
            self._result = parse_passwd(ip, args)
        elif command == b"ENUMERATE":
            self._result = EnumerateRequest(ip)
        elif command == b"AUTH":
            length = c_atoi(args)
            if not 0 <= length <= MAX_AUTH_BODY:
                self._result = Refusal(ip, b"", "AUTH length out of range")
            else:
                self._auth_length = length
        else:
            self._result = Refusal(ip, b"", "unknown command")


def parse_request(data: bytes) -> Request:
    """The request in ``data`` followed by EOF (for tests and one-shot use)."""
    parser = RequestParser()
    result = parser.receive_data(data)
    return result if result is not None else parser.receive_data(b"")  # type: ignore[return-value]


# ------------------------------------------------------------------ replies

def _line(key: bytes, value: str) -> bytes:
    raw = encode(value)
    if b"\n" in raw:
        raise ValueError(f"account field {key.decode()} holds a newline")
    return key + b"=" + raw + b"\n"


def account_reply(account: "Account", *, default_options: str = "",
                  clear_password: "bytes | None" = None) -> bytes:
    """The reply to a PRE or an ``AUTH login`` (``printauth``): ``UID``, ``GID``,
    ``HOME``, ``ADDRESS``, ``NAME`` (up to its first comma), ``MAILDIR``,
    ``QUOTA``, ``PASSWD`` (the stored hash), ``PASSWD2`` (``clear_password``,
    given only for a login), ``OPTIONS`` (with ``default_options`` merged by
    :func:`authkit.account.merge_options`, Courier's ``mergeoptions``), then
    ``.``; fields without a value are left out.  ``USERNAME`` is never sent:
    every authkit source gives numeric ids."""
    out = [b"UID=%d\n" % account.uid, b"GID=%d\n" % account.gid,
           _line(b"HOME", account.home)]
    if account.address:
        out.append(_line(b"ADDRESS", account.address))
    if account.fullname:
        out.append(_line(b"NAME", fullname_from_gecos(account.fullname)))
    if account.maildir:
        out.append(_line(b"MAILDIR", account.maildir))
    if account.quota:
        out.append(_line(b"QUOTA", account.quota))
    if account.encrypted_password:
        out.append(_line(b"PASSWD", account.encrypted_password))
    if clear_password:
        raw = clear_password
        if b"\n" in raw:
            raise ValueError("clear password holds a newline")
        out.append(b"PASSWD2=" + raw + b"\n")
    options = merge_options(account.options, default_options)
    if options:
        out.append(_line(b"OPTIONS", options))
    out.append(END_LINE)
    return b"".join(out)


def cram_reply(account: "Account", *, default_options: str = "") -> bytes:
    """The reply to an ``AUTH cram-*`` (authuserdb.c ``auth_cram``): only
    ``UID``, ``GID``, ``HOME``, ``ADDRESS``, ``MAILDIR`` and ``OPTIONS``."""
    return account_reply(account.replace(fullname="", quota="", encrypted_password=""),
                         default_options=default_options)


def enumerate_header(module: str) -> bytes:
    """``# <module>\\n\\n``: the start of one module's part of a listing."""
    return b"# " + encode(module) + b"\n\n"


def enumerate_line(account: "Account", *, default_options: str = "") -> bytes:
    """``name\\tuid\\tgid\\thome\\tmaildir\\toptions\\n`` (``enum_cb``), options
    merged with ``default_options``."""
    fields = (encode(account.address), b"%d" % account.uid, b"%d" % account.gid,
              encode(account.home), encode(account.maildir),
              encode(merge_options(account.options, default_options)))
    line = b"\t".join(fields)
    if b"\n" in line:
        raise ValueError("account field holds a newline")
    return line + b"\n"


__all__ = [
    "CRAM_AUTHTYPES", "END_LINE", "FAIL_REPLY", "MAX_HEADERS", "MAX_REMOTE_IP", "OK_REPLY",
    "CramRequest", "EnumerateRequest", "LoginRequest", "PasswdRequest", "PreRequest",
    "Refusal", "Request", "RequestParser", "account_reply", "c_atoi", "cram_reply",
    "enumerate_header", "enumerate_line", "parse_auth_body", "parse_passwd",
    "parse_pre", "parse_request", "sasl_frombase64",
]
