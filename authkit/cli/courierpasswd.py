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

This is the per-login path: arguments are parsed by hand and the account source
is imported only once the input is valid (no argparse, logging, typing, re,
hashlib, base64 or passlib).
"""

from __future__ import annotations

import os
import sys
import time

from ..checkpassword import CRAM_HEX_LENGTHS, MAX_INPUT, InputCollector, parse_request
from ..errors import Misuse, PolicyRefused, Rejected, TemporaryFailure, UnknownUser
from ..printable import printable
from ._log import EventLog, safe, usage_error

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

_VALUE_LONG = {"service": "service", "cramtype": "cram", "config": "config"}
_FLAG_LONG = {"changepwd": "change", "stdin": "stdin", "stderr": "stderr",
              "verbose": "verbose", "help": "help", "version": "version"}
_VALUE_SHORT = {"s": "service", "C": "cram"}
_FLAG_SHORT = {"c": "change", "v": "verbose", "h": "help", "V": "version"}


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
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            if name in _VALUE_LONG:
                if not eq:
                    i += 1
                    if i >= len(args):
                        raise Misuse(f"option --{name} needs a value")
                    value = args[i]
                setattr(opts, _VALUE_LONG[name], value)
            elif name in _FLAG_LONG:
                if eq:
                    raise Misuse(f"option --{name} takes no value")
                setattr(opts, _FLAG_LONG[name], True)
            else:
                raise Misuse(f"unknown option --{name}")
            i += 1
            continue
        if arg.startswith("-") and arg != "-":
            j = 1
            while j < len(arg):
                letter = arg[j]
                if letter in _VALUE_SHORT:
                    value = arg[j + 1 :]
                    if not value:
                        i += 1
                        if i >= len(args):
                            raise Misuse(f"option -{letter} needs a value")
                        value = args[i]
                    setattr(opts, _VALUE_SHORT[letter], value)
                    break
                if letter not in _FLAG_SHORT:
                    raise Misuse(f"unknown option -{letter}")
                setattr(opts, _FLAG_SHORT[letter], True)
                j += 1
            i += 1
            continue
        break
    opts.prog = args[i:]
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


def _run(request: "Request", opts: Options, source: "AccountSource", settings: "Settings") -> "Account":
    """Ask ``source`` what ``request`` asks; return the account or raise."""
    user = request.user.decode("utf-8", "surrogateescape")
    kind = request.kind
    if kind == "login":
        return source.authenticate(user, request.password, opts.service)  # type: ignore[attr-defined]
    if kind == "cram":
        return source.authenticate_cram(
            request.challenge, user, request.response,  # type: ignore[attr-defined]
            request.algorithm, opts.service,  # type: ignore[attr-defined]
        )
    if kind == "lookup":
        return source.lookup(user, opts.service)
    # kind == "change": policy on the new password first, then the old one, then uid
    from ..policy import check_new_password, check_uid

    check_new_password(request.old, request.new, settings)  # type: ignore[attr-defined]
    account = source.authenticate(user, request.old, opts.service)  # type: ignore[attr-defined]
    check_uid(account, settings)
    return source.change_password(user, request.old, request.new, opts.service)  # type: ignore[attr-defined]


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
        os.write(1, HELP.encode())
        return 0
    if opts.version:
        from .. import __version__

        os.write(1, f"courierpasswd (authkit) {__version__}\n".encode())
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
        lookup = request.kind == "lookup"
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
    except UnknownUser:
        _wait_out(started, settings, lookup)
        attempt.report("rejected", None, 5)
        return 3 if lookup else 1
    except PolicyRefused as exc:
        _wait_out(started, settings, lookup)
        attempt.report("rejected", str(exc), 5)
        return 1
    except Rejected as exc:
        _wait_out(started, settings, lookup)
        # a wrong password logs exactly what an unknown user does (not even with -v);
        # only input refused before any name was read (over 512 bytes) gets a reason
        attempt.report("rejected", None if attempt.user is not None else str(exc), 5)
        return 1
    except Misuse as exc:
        attempt.report("misuse", str(exc), 4)
        return 2
    except TemporaryFailure as exc:
        attempt.report("tempfail", str(exc), 3)
        return 111
    except Exception as exc:  # anything unexpected is temporary, never a traceback
        attempt.report("tempfail", f"internal error: {exc.__class__.__name__}: {exc}", 3)
        return 111
    finally:
        if source is not None:
            try:
                source.close()
            except Exception:
                pass

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
