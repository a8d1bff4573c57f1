"""courierpasswd: a drop-in checkpassword program (see docs/courierpasswd.8).

    courierpasswd [-chvV] [-s SERVICE] [-C CRAMTYPE] [--stdin] [--stderr]
                  [--config FILE] [--] [prog...]

Reads ``user\\0password\\0...`` from descriptor 3 (0 with ``--stdin``), checks it
against the account source authkit.config chooses, and on success execs ``prog``
with ``USER``/``HOME`` set and every descriptor but 3 kept (exit 0 when there is
no prog).  Exit 1: rejected; 2: misuse; 3: Dovecot lookup of an unknown user;
111: temporary failure.  One log line per attempt, to syslog (facility auth) or
stderr; never anything on stdout, which is the client's socket under qpsmtpd and
qmail-smtpd.

This is the per-login path: arguments are parsed by the shared getopt of
authkit.cli._edge and the account source is imported only once the input is
valid (no argparse, logging, typing, re, hashlib, base64 or passlib).
"""

from __future__ import annotations

import os
import sys
import time

from ..checkpassword import (CRAM_HEX_LENGTHS, MAX_INPUT, CramLogin, InputCollector, Lookup,
                             PasswordChange, PlainLogin, parse_request)
from ..errors import Misuse, PolicyRefused, Rejected, TemporaryFailure, UnknownUser
from ..printable import printable
from ._edge import COMMON_OPTIONS, close_quietly, exit_status, getopt, usage_error, write_all
from ._log import EventLog, safe

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Sequence

    from ..account import Account
    from ..checkpassword import Request
    from ..config import Settings
    from ..source import AccountSource

PROGRAM = "courierpasswd"
USAGE = (
    "usage: courierpasswd [-chvV] [-s SERVICE] [-C md5|sha1|sha256] [--stdin] [--stderr]\n"
    "                     [--config FILE] [--] [prog...]"
)
HELP = USAGE + """

Check the credentials a checkpassword caller writes on descriptor 3
(user NUL password NUL ...), then run prog.

  -s, --service SERVICE   service whose password is checked (default: login)
  -c, --changepwd         change the password: user NUL old NUL new NUL
  -C, --cramtype TYPE     accept a CRAM response (md5, sha1, sha256); ignored with -c
      --stdin             read the credentials from descriptor 0, not 3
      --stderr            log to stderr instead of syslog (facility auth)
  -v, --verbose           trace every step on stderr
      --config FILE       authkit configuration file (see authkit.conf(5))
  -h, --help              show this help and exit
  -V, --version           show the version and exit

Exit: prog's status on success (0 without prog), 1 rejected, 2 misuse,
3 unknown user in a Dovecot lookup, 111 temporary failure.
"""

#: spelling -> (Options attribute, takes a value): for _edge.getopt.
OPTIONS = {
    "-s": ("service", True), "--service": ("service", True),
    "-C": ("cram", True), "--cramtype": ("cram", True),
    "-c": ("change", False), "--changepwd": ("change", False),
    "--stdin": ("stdin", False),
    "-v": ("verbose", False), "--verbose": ("verbose", False),
    **COMMON_OPTIONS,
}


class Options:
    """The parsed command line.  ``prog`` is everything after the options."""

    __slots__ = ("service", "change", "cram", "stdin", "stderr", "verbose", "config",
                 "help", "version", "prog")

    def __init__(self) -> None:
        self.service = "login"
        self.change = self.stdin = self.stderr = self.verbose = False
        self.help = self.version = False
        self.cram: str | None = None
        self.config: str | None = None
        self.prog: list = []


def parse_args(argv: "Sequence[str]") -> Options:
    """Parse ``argv`` (without the program name) the way getopt_long would, with
    option parsing ending at ``--`` or at the first non-option; the rest is
    ``prog`` (later ``--`` and options included, for tmda-cgi).  Raises ``Misuse``
    for an unknown option, a missing value or a bad CRAM type or service."""
    opts = Options()
    found, opts.prog = getopt(argv, OPTIONS, permute=False)
    for name, value in found:
        setattr(opts, name, value)
    if opts.cram is not None:
        opts.cram = opts.cram.lower()
        if opts.cram not in CRAM_HEX_LENGTHS:
            raise Misuse(f"unknown CRAM type {safe(opts.cram)} (md5, sha1, sha256)")
    service = opts.service
    if not service or service[0] == "-" or not all(c.isalnum() or c in "-_." for c in service):
        raise Misuse(f"bad service name {safe(opts.service)}")
    return opts


def read_input(fd: int) -> bytes:
    """Everything on ``fd`` up to end of file (at most 512 bytes).  Raises
    ``TemporaryFailure`` for a read error (a closed descriptor included, as djb's
    checkpassword exits 111) and ``Rejected`` for more than 512 bytes."""
    collector = InputCollector()
    while True:
        try:
            chunk = os.read(fd, MAX_INPUT + 1)
        except OSError as exc:
            raise TemporaryFailure(f"cannot read descriptor {fd}: {exc.strerror}") from None
        if collector.receive_data(chunk):
            return collector.data


def _clean(message: object) -> str:
    """A one-line, printable rendering of an error message (spaces kept)."""
    return printable(str(message), 300)


class _Attempt:
    """The log line of one attempt: ``<verb> user=... service=... result=... ip=...``."""

    def __init__(self, log: EventLog, verb: str, service: str) -> None:
        self.log = log
        self.verb = verb
        self.service = service
        self.user: bytes | None = None

    def report(self, result: str, reason: str | None = None, priority: int = 6) -> None:
        parts = [self.verb]
        if self.user is not None:
            parts.append("user=" + safe(self.user))
        parts.append("service=" + safe(self.service))
        parts.append("result=" + result)
        ip = os.environ.get("TCPREMOTEIP")
        if ip:
            parts.append("ip=" + safe(ip))
        line = " ".join(parts)
        if reason:
            line += ": " + _clean(reason)
        self.log.line(line, priority)


def _close_fd3() -> None:
    try:
        os.close(3)
    except OSError:
        pass


def _login(request: "PlainLogin", opts: Options, source: "AccountSource", settings: "Settings") -> "Account":
    return source.authenticate(_name(request), request.password, opts.service)


def _cram(request: "CramLogin", opts: Options, source: "AccountSource", settings: "Settings") -> "Account":
    return source.authenticate_cram(request.challenge, _name(request), request.response,
                                    request.algorithm, opts.service)


def _lookup(request: "Lookup", opts: Options, source: "AccountSource", settings: "Settings") -> "Account":
    return source.lookup(_name(request), opts.service)


def _change(request: "PasswordChange", opts: Options, source: "AccountSource", settings: "Settings") -> "Account":
    """The shared policy on the new password first; then the change, which
    verifies the old password (once) and applies the uid policy before it
    writes."""
    from ..policy import check_new_password, check_uid

    check_new_password(request.old, request.new, settings)
    return source.change_password(_name(request), request.old, request.new, opts.service,
                                  check_account=lambda account: check_uid(account, settings))


def _name(request: "Request") -> str:
    return request.user.decode("utf-8", "surrogateescape")


#: request type -> what asks the source for it.
_HANDLERS = {PlainLogin: _login, CramLogin: _cram, Lookup: _lookup, PasswordChange: _change}


def _run(request: "Request", opts: Options, source: "AccountSource", settings: "Settings") -> "Account":
    """Ask ``source`` what ``request`` asks (by its type); return the account or raise."""
    return _HANDLERS[type(request)](request, opts, source, settings)  # type: ignore[operator]


def _become(account: "Account", allow_root_ids: bool = False) -> None:
    """As root: take the account's gid (as the only group) and uid, then chdir to
    its home, like djb's checkpassword.  Otherwise change nothing.  Raises
    ``PolicyRefused`` for uid 0 or gid 0 unless ``allow_root_ids`` (a record
    must not make prog run as root: ``uid=0000000000`` is uid 0 too), and
    ``TemporaryFailure`` when any step fails."""
    if os.geteuid() != 0:
        return
    if not allow_root_ids and (account.uid == 0 or account.gid == 0):
        which = "uid 0" if account.uid == 0 else "gid 0"
        raise PolicyRefused(f"the account has {which}: prog is not run as root (allow_root_ids = no)")
    try:
        os.setgroups([account.gid])
        os.setgid(account.gid)
        os.setuid(account.uid)
    except OSError as exc:
        raise TemporaryFailure(f"cannot change to uid {account.uid} gid {account.gid}: {exc.strerror}") from None
    try:
        os.chdir(account.home)
    except OSError as exc:
        raise TemporaryFailure(f"cannot chdir to {account.home}: {exc.strerror}") from None


#: Exit status of a Dovecot lookup (AUTHORIZED=1) of an unknown user.
LOOKUP_UNKNOWN_USER = 3


def _failed(attempt: _Attempt, exc: Exception, lookup: bool) -> int:
    """Log the attempt that ended in ``exc``; return the exit status: the
    error class's ``exit_code`` (1 rejected, 2 misuse, 111 temporary and
    anything unexpected), 3 for a Dovecot lookup of an unknown user."""
    if isinstance(exc, Rejected):
        # a wrong password logs exactly what an unknown user does (not even with
        # -v); a policy refusal, and input refused before any name was read (over
        # 512 bytes), get a reason
        reason = str(exc) if isinstance(exc, PolicyRefused) or attempt.user is None else None
        attempt.report("rejected", reason, 5)
        if lookup and isinstance(exc, UnknownUser):
            return LOOKUP_UNKNOWN_USER
    elif isinstance(exc, Misuse):
        attempt.report("misuse", str(exc), 4)
    elif isinstance(exc, TemporaryFailure):
        attempt.report("tempfail", str(exc), 3)
    else:
        attempt.report("tempfail", f"internal error: {exc.__class__.__name__}: {exc}", 3)
    return exit_status(exc)


def _wait_out(started: float, settings: "Settings | None", lookup: bool) -> None:
    """Every refused password check lasts ``refusal_floor`` seconds from its
    start (the source's own floor covers unknown/wrong; this one also covers a
    uid refused after a right password, and any source kind)."""
    if started and settings is not None and not lookup:
        from ..policy import wait_out_refusal

        wait_out_refusal(started, settings.refusal_floor)


def main(argv: "Sequence[str] | None" = None) -> int:
    """Run courierpasswd with ``argv`` (default ``sys.argv[1:]``).  Returns the
    exit status, or does not return (exec of prog)."""
    args = sys.argv[1:] if argv is None else list(argv)
    head = args[: args.index("--")] if "--" in args else args
    try:
        opts = parse_args(args)
    except Misuse as exc:
        if "--stderr" not in head:
            EventLog(PROGRAM).line(f"usage error: {_clean(exc)}", 4)
        return usage_error(PROGRAM, _clean(exc), USAGE)
    if opts.help:
        write_all(1, HELP.encode())
        return 0
    if opts.version:
        from .. import __version__

        write_all(1, f"courierpasswd (authkit) {__version__}\n".encode())
        return 0

    log = EventLog(PROGRAM, opts.stderr, opts.verbose)
    attempt = _Attempt(log, "change" if opts.change else "auth", opts.service)
    lookup = False
    source = None
    settings = None
    started = 0.0
    try:
        try:
            data = read_input(0 if opts.stdin else 3)
        finally:
            _close_fd3()
        log.debug(f"read {len(data)} bytes from descriptor {0 if opts.stdin else 3}")
        request = parse_request(
            data,
            change=opts.change,
            cram=None if opts.change else opts.cram,
            authorized=os.environ.get("AUTHORIZED") == "1",
        )
        attempt.user = request.user
        lookup = isinstance(request, Lookup)
        if lookup:
            attempt.verb = "lookup"
        log.debug(f"request: {request!r}")

        from ..config import load_settings, open_source

        settings = load_settings(opts.config)

        def on_problem(path: str, lineno: int, message: str) -> None:
            log.line(f"userdb problem: {_clean(path)}:{lineno}: {_clean(message)}", 4)

        source = open_source(settings, on_problem=on_problem)
        log.debug(f"source: {source.description}")
        started = time.monotonic()
        account = _run(request, opts, source, settings)
        if lookup:
            os.environ["AUTHORIZED"] = "2"
        os.environ["USER"] = account.address
        os.environ["HOME"] = account.home
        if account.shell:
            os.environ["SHELL"] = account.shell
        if opts.prog:  # ids and cwd matter only to the program run next
            _become(account, settings.allow_root_ids)
    except Exception as exc:  # anything unexpected is temporary, never a traceback
        if isinstance(exc, Rejected):
            _wait_out(started, settings, lookup)
        return _failed(attempt, exc, lookup)
    finally:
        close_quietly(source)

    attempt.report("changed" if opts.change else "ok")
    if not opts.prog:
        return 0
    log.debug(f"exec {opts.prog[0]}")
    try:
        os.execvp(opts.prog[0], opts.prog)
    except OSError as exc:
        log.line(f"cannot exec {_clean(opts.prog[0])}: {exc.strerror}", 3)
    return 111


__all__ = ["main", "parse_args", "read_input", "Options", "USAGE"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
