"""The poppassd dialogue (TCP 106) as a sans-I/O state machine.

This module contains no networking code at all (like h11): a
:class:`PoppassdSession` is fed the bytes a client sent with
:meth:`~PoppassdSession.receive_data` (``b""`` means EOF) and returns a list of
*actions* for the caller to carry out, in order:

* :class:`Reply`: send ``reply.data`` (one line, ``<code> <text>\\r\\n``);
* :class:`Delay`: pause before the next action (the failure delay; see its doc);
* :class:`VerifyOld`: check the old password (``source.authenticate`` plus the
  uid policy), then report with :meth:`~PoppassdSession.old_password_ok`,
  :meth:`~PoppassdSession.old_password_refused` or
  :meth:`~PoppassdSession.server_error`;
* :class:`ChangePassword`: make the change durable, then report with
  :meth:`~PoppassdSession.password_changed`,
  :meth:`~PoppassdSession.change_refused`,
  :meth:`~PoppassdSession.old_password_refused` or
  :meth:`~PoppassdSession.server_error`;
* :class:`Close`: send nothing more and close; ``close.outcome`` is what to log.

The dialogue (poppassd.md sections 0 and 2.1, courierpassd(8)):

    S: 200 courierpassd v<version> hello, who are you?
    C: user <name>        S: 200 Your password please       (also for unknown users)
    C: pass <old>         S: 200 Your new password please   (after VerifyOld succeeds)
    C: newpass <new>      S: 200 Password changed           (after ChangePassword commits)
    C: quit               S: 200 Bye

Every error is one ``500 <text>`` line, then :class:`Close` (one attempt per
connection).  Only the codes 200 and 500 are ever sent.  Lines end in LF (a CR
before it is dropped); the keyword is case-insensitive and separated from its
argument by one space or tab; the argument is the rest of the line, every other
blank kept (leading, inner and trailing: a password may start with a blank).  An
argument of blanks only counts as missing.  A line longer than :data:`MAX_LINE` bytes is refused at
once, even before its LF arrives.  A line not ended by LF when EOF comes is never
acted on (it may be a cut-off password).

Every state change lives in :data:`TRANSITIONS` (h11's rule 1); what a state
expects is :data:`EXPECTED`.  Not here: sockets, timers, the account source, the
log (authkit.cli.courierpassd does those).
"""

from __future__ import annotations

from .errors import PolicyRefused
from .policy import check_new_password
from .printable import printable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .config import Settings

#: Longest line accepted, in bytes, without its LF/CRLF (poppassd's BUFSIZE).
MAX_LINE = 1000

# -- states -------------------------------------------------------------------

WANT_USER = "WANT_USER"
WANT_PASS = "WANT_PASS"
VERIFYING = "VERIFYING"  # waiting for the caller's verdict on the old password
WANT_NEWPASS = "WANT_NEWPASS"
CHANGING = "CHANGING"  # waiting for the caller to commit the change
WANT_QUIT = "WANT_QUIT"  # the change is committed
CLOSED = "CLOSED"

#: The states in which the client is expected to send a line.
OPEN_STATES = (WANT_USER, WANT_PASS, WANT_NEWPASS, WANT_QUIT)

#: (state, trigger) -> next state: every state change of the session, closing
#: ones included (h11's rule 1).  Triggers are client keywords (``user``,
#: ``pass``, ``newpass``, ``quit``), caller verdicts (``old_ok``,
#: ``old_refused``, ``changed``, ``change_refused``, ``server_error``), the
#: policy refusal of a new password (``policy``) and, in every open state,
#: ``error`` (a protocol error: wrong keyword, missing argument, line or
#: argument too long), ``eof``, ``timeout`` and ``shutdown``.  A caller verdict
#: nobody asked for raises :class:`PoppassdProtocolError`; a client line that has
#: no transition is answered with the state's refusal and ``error``.
TRANSITIONS: dict[tuple[str, str], str] = {
    (WANT_USER, "user"): WANT_PASS,
    (WANT_PASS, "pass"): VERIFYING,
    (VERIFYING, "old_ok"): WANT_NEWPASS,
    (VERIFYING, "old_refused"): CLOSED,
    (VERIFYING, "server_error"): CLOSED,
    (WANT_NEWPASS, "newpass"): CHANGING,
    (WANT_NEWPASS, "policy"): CLOSED,
    (CHANGING, "changed"): WANT_QUIT,
    (CHANGING, "change_refused"): CLOSED,
    (CHANGING, "old_refused"): CLOSED,
    (CHANGING, "server_error"): CLOSED,
    (WANT_QUIT, "quit"): CLOSED,
    (WANT_USER, "quit"): CLOSED,
    (WANT_PASS, "quit"): CLOSED,
    (WANT_NEWPASS, "quit"): CLOSED,
    **{(state, trigger): CLOSED for state in OPEN_STATES
       for trigger in ("error", "eof", "timeout", "shutdown")},
}

# -- values -------------------------------------------------------------------


class _Value:
    """An immutable value with ``__slots__``, compared and hashed by its fields
    (what ``@dataclass(frozen=True, slots=True)`` gives, without importing
    dataclasses, re and inspect on courierpassd's per-connection path).
    ``_hidden`` fields are left out of ``repr`` (passwords)."""

    __slots__: tuple = ()
    _hidden: tuple = ()

    def __init__(self, *values: object) -> None:
        defaults = getattr(self, "_defaults", ())
        missing = len(self.__slots__) - len(values)
        if missing < 0 or missing > len(defaults):
            raise TypeError(f"{type(self).__name__} takes {len(self.__slots__)} values")
        values = values + tuple(defaults[len(defaults) - missing:]) if missing else values
        for name, value in zip(self.__slots__, values):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((self.__class__, self._values()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__
                          if name not in self._hidden)
        return f"{type(self).__name__}({inner})"


# -- replies ------------------------------------------------------------------


class Reply(_Value):
    """One reply line.  Fields: ``code`` (200 or 500), ``text``.  ``data`` is the
    line as sent, ending in CRLF."""

    __slots__ = ("code", "text")
    code: int
    text: str

    @property
    def data(self) -> bytes:
        return f"{self.code} {self.text}\r\n".encode("utf-8", "replace")


def greeting(version: str) -> Reply:
    """The banner nmap knows: ``200 courierpassd v<version> hello, who are you?``."""
    return Reply(200, f"courierpassd v{version} hello, who are you?")


PASSWORD_PLEASE = Reply(200, "Your password please")
NEW_PASSWORD_PLEASE = Reply(200, "Your new password please")
PASSWORD_CHANGED = Reply(200, "Password changed")
BYE = Reply(200, "Bye")
USERNAME_REQUIRED = Reply(500, "Username required")
PASSWORD_REQUIRED = Reply(500, "Password required")
NEW_PASSWORD_REQUIRED = Reply(500, "New password required")
QUIT_REQUIRED = Reply(500, "Quit required")
OLD_PASSWORD_INCORRECT = Reply(500, "Old password is incorrect")
SERVER_ERROR = Reply(500, "Server error, password not changed")
LINE_TOO_LONG = Reply(500, f"Line too long (max {MAX_LINE})")
TIMEOUT = Reply(500, "Timeout, closing connection")
SERVER_BUSY = Reply(500, "Server busy - try again later")
SHUTTING_DOWN = Reply(500, "Server shutting down")


def username_too_long(limit: int) -> Reply:
    return Reply(500, f"Username too long (max {limit})")


def password_too_long(limit: int) -> Reply:
    return Reply(500, f"Password too long (max {limit})")


#: state -> (the keyword it expects, the reply to anything else).
EXPECTED: dict[str, tuple[str, Reply]] = {
    WANT_USER: ("user", USERNAME_REQUIRED),
    WANT_PASS: ("pass", PASSWORD_REQUIRED),
    WANT_NEWPASS: ("newpass", NEW_PASSWORD_REQUIRED),
    WANT_QUIT: ("quit", QUIT_REQUIRED),
}

# -- outcomes (Close.outcome; what courierpassd logs) --------------------------

CHANGED = "changed"
BAD_PASSWORD = "bad password"
UNKNOWN_USER = "unknown user"
LOW_UID = "low uid"
POLICY = "policy"
TIMED_OUT = "timeout"
PROTOCOL_ERROR = "protocol error"
TEMPFAIL = "tempfail"
ABORTED = "aborted"  # the client left (EOF or quit) before a change

# -- actions ------------------------------------------------------------------


class Delay(_Value):
    """Pause before carrying out the next action.  ``seconds`` counts from the
    moment the caller received the :class:`VerifyOld` or :class:`ChangePassword`
    that led here, so that the refusal leaves at the same time whatever the
    verification cost (unknown user, wrong password and low uid look alike)."""

    __slots__ = ("seconds",)
    seconds: float


class VerifyOld(_Value):
    """Check ``old`` for ``user`` (and the uid policy).  Fields ``user`` (str,
    UTF-8 with surrogateescape for other bytes), ``old`` (bytes; never in repr)."""

    __slots__ = ("user", "old")
    _hidden = ("old",)
    user: str
    old: bytes


class ChangePassword(_Value):
    """Change ``user``'s password from ``old`` to ``new`` and make it durable
    before reporting back.  Passwords are never in repr."""

    __slots__ = ("user", "old", "new")
    _hidden = ("old", "new")
    user: str
    old: bytes
    new: bytes


class Close(_Value):
    """The session is over: close the connection.  ``outcome`` is one of the
    outcome constants; ``detail`` a short log-safe reason ("" if none)."""

    __slots__ = ("outcome", "detail")
    _defaults = ("",)
    outcome: str
    detail: str


class PoppassdProtocolError(Exception):
    """The *caller* misused the session (e.g. reported a verdict nobody asked
    for).  Client mistakes never raise: they become a 500 reply and Close."""


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def split_command(line: bytes) -> tuple[str, bytes]:
    """``(keyword in lower case, argument)`` of one line without its LF: the
    keyword runs to the first space or tab, the argument is everything after
    that one separator (further blanks belong to the argument: every client
    found sends exactly one space, and a password may start with a blank)."""
    index = 0
    length = len(line)
    while index < length and line[index] not in b" \t":
        index += 1
    keyword = line[:index].decode("ascii", "replace").lower()
    return keyword, line[index + 1 :]


class PoppassdSession:
    """One poppassd connection, without I/O.

    Args:
        settings: limits and policy: ``max_username_length`` (characters),
            ``max_password_length`` (characters, the new password only: an old
            password is bounded by :data:`MAX_LINE`), ``bad_pass_delay``
            (seconds), and whatever :func:`authkit.policy.check_new_password` reads.
        version: the version shown in the greeting.

    :meth:`start` returns the greeting.  After :class:`Close` every method
    returns ``[]``.  Only a caller error raises (:class:`PoppassdProtocolError`).
    """

    def __init__(self, settings: "Settings", version: str) -> None:
        self.settings = settings
        self.version = version
        self.state = WANT_USER
        self.user: str | None = None
        self.outcome: str | None = None
        self._old = b""
        self._buffer = bytearray()
        self._eof = False
        self._started = False

    # -- driving ---------------------------------------------------------------

    def start(self) -> list:
        """The greeting (call once, before anything else)."""
        if self._started:
            raise PoppassdProtocolError("start() called twice")
        self._started = True
        return [greeting(self.version)]

    def receive_data(self, data: bytes) -> list:
        """Feed what the client sent (``b""`` = EOF); return the actions due.

        While a :class:`VerifyOld` or :class:`ChangePassword` is outstanding, input
        is only buffered; the verdict method then processes it."""
        if self.state == CLOSED:
            return []
        if not data:
            self._eof = True
        else:
            self._buffer += data
        return self._process()

    def timeout(self) -> list:
        """The client said nothing for too long: a 500 and Close."""
        if self.state in (CLOSED, VERIFYING, CHANGING):
            return []
        return self._fail("timeout", TIMEOUT, TIMED_OUT)

    def shutdown(self) -> list:
        """The server is stopping: a 500 and Close (unless mid-change)."""
        if self.state in (CLOSED, VERIFYING, CHANGING):
            return []
        return self._fail("shutdown", SHUTTING_DOWN, ABORTED, "server shutdown")

    # -- verdicts from the caller -------------------------------------------------

    def old_password_ok(self) -> list:
        """The old password is right and the uid allowed."""
        self._transition("old_ok")
        return [NEW_PASSWORD_PLEASE] + self._process()

    def old_password_refused(self, outcome: str = BAD_PASSWORD) -> list:
        """Wrong password, unknown user or low uid (``outcome`` says which, for
        the log only): after the delay, the same 500 for all three."""
        self._transition("old_refused")
        self._old = b""
        return self._closing(OLD_PASSWORD_INCORRECT, outcome, "", delay=True)

    def password_changed(self) -> list:
        """The change is committed."""
        self._transition("changed")
        self._old = b""
        return [PASSWORD_CHANGED] + self._process()

    def change_refused(self, message: str) -> list:
        """The source refused the new password (``PolicyRefused``): its message,
        made single-line, is the 500 text."""
        self._transition("change_refused")
        return self._closing(Reply(500, _one_line(message)), POLICY, _one_line(message))

    def server_error(self, detail: str = "") -> list:
        """The source could not be asked or the change failed: nothing changed."""
        self._transition("server_error")
        return self._closing(SERVER_ERROR, TEMPFAIL, detail)

    # -- internals ---------------------------------------------------------------

    def _transition(self, trigger: str) -> None:
        new = TRANSITIONS.get((self.state, trigger))
        if new is None:
            raise PoppassdProtocolError(f"{trigger!r} is not valid in state {self.state}")
        self.state = new

    def _closing(self, reply: Reply, outcome: str, detail: str = "", delay: bool = False) -> list:
        """The last actions (after a transition to CLOSED): the reply, then Close."""
        self.outcome = outcome
        self._buffer.clear()
        actions: list = []
        if delay and self.settings.bad_pass_delay > 0:
            actions.append(Delay(float(self.settings.bad_pass_delay)))
        actions += [reply, Close(outcome, detail)]
        return actions

    def _fail(self, trigger: str, reply: Reply, outcome: str, detail: str = "") -> list:
        self._transition(trigger)
        return self._closing(reply, outcome, detail)

    def _process(self) -> list:
        actions: list = []
        while self.state not in (CLOSED, VERIFYING, CHANGING):
            newline = self._buffer.find(b"\n")
            if newline < 0:
                if len(self._buffer) > MAX_LINE + 1 or (
                    len(self._buffer) == MAX_LINE + 1 and not self._buffer.endswith(b"\r")
                ):
                    return actions + self._fail("error", LINE_TOO_LONG, PROTOCOL_ERROR, "line too long")
                if self._eof:
                    if self.state == WANT_QUIT:
                        return actions + self._closing_quiet(CHANGED)
                    return actions + self._closing_quiet(ABORTED, "eof")
                return actions
            line = bytes(self._buffer[:newline])
            del self._buffer[: newline + 1]
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > MAX_LINE:
                return actions + self._fail("error", LINE_TOO_LONG, PROTOCOL_ERROR, "line too long")
            actions += self._line(line)
        return actions

    def _closing_quiet(self, outcome: str, detail: str = "") -> list:
        self._transition("eof")
        self.outcome = outcome
        self._buffer.clear()
        return [Close(outcome, detail)]

    def _line(self, line: bytes) -> list:
        keyword, argument = split_command(line)
        expected, refusal = EXPECTED[self.state]
        if keyword == "quit" and (self.state, "quit") in TRANSITIONS:
            outcome = CHANGED if self.state == WANT_QUIT else ABORTED
            self._transition("quit")
            self.outcome = outcome
            return [BYE, Close(outcome, "" if outcome == CHANGED else "quit")]
        if keyword != expected or not argument.strip(b" \t"):
            outcome = CHANGED if self.state == WANT_QUIT else PROTOCOL_ERROR
            return self._fail("error", refusal, outcome, "" if outcome == CHANGED else f"{keyword or 'empty line'} in {self.state}")
        settings = self.settings
        if self.state == WANT_USER:
            user = _decode(argument)
            if len(user) > settings.max_username_length:
                return self._fail("error", username_too_long(settings.max_username_length), PROTOCOL_ERROR, "username too long")
            self.user = user
            self._transition("user")
            return [PASSWORD_PLEASE]
        if self.state == WANT_PASS:  # an old password is bounded by MAX_LINE only
            self._old = argument
            self._transition("pass")
            return [VerifyOld(self.user or "", argument)]
        # WANT_NEWPASS
        if len(_decode(argument)) > settings.max_password_length:
            return self._fail("error", password_too_long(settings.max_password_length), PROTOCOL_ERROR, "password too long")
        try:
            check_new_password(self._old, argument, settings)
        except PolicyRefused as exc:
            self._transition("policy")
            self._old = b""
            return self._closing(Reply(500, _one_line(str(exc))), POLICY, _one_line(str(exc)))
        self._transition("newpass")
        return [ChangePassword(self.user or "", self._old, argument)]


def _one_line(text: str) -> str:
    """``text`` with unprintable characters (authkit.printable) replaced by
    spaces, at most 200 characters."""
    return printable(text, replacement=" ").strip()[:200] or "Password not changed"


__all__ = [
    "PoppassdSession",
    "PoppassdProtocolError",
    "Reply",
    "Delay",
    "VerifyOld",
    "ChangePassword",
    "Close",
    "TRANSITIONS",
    "OPEN_STATES",
    "EXPECTED",
    "MAX_LINE",
    "greeting",
    "split_command",
    "username_too_long",
    "password_too_long",
]
