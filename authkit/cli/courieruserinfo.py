"""courieruserinfo: print what authlib knows about one account.

    courieruserinfo [--stderr] [--config FILE] [-AudanmqohV] username

The contract is docs/courieruserinfo.8.  In short: one ``item=value`` line per
item, in the fixed order ``uid``, ``gid``, ``homedir``, ``address``, ``name``,
``maildir``, ``quota``, ``options`` whatever the order of the flags; a blank value
when the account has none; no item flag (or ``-A``) prints every item, any item
flag overrides ``-A``.  Exit 0 found, 1 unknown user (nothing on stdout), 2 misuse
(usage on stderr), 111 temporary failure (stdout empty, the reason on stderr).

This is a per-message program (tmda-ofmipd's ``-S`` script calls it for every
message), so it parses argv by hand and imports only ``authkit.config``, the one
account source chosen and, on a failure, the event log.  What it is not: a
password checker (no password is read or verified) nor an enumerator.
"""

from __future__ import annotations

import os
import sys

PROGRAM = "courieruserinfo"

USAGE = f"usage: {PROGRAM} [--stderr] [--config FILE] [-AudanmqohV] username"

HELP = f"""{USAGE}
Print account information known to the Courier authentication library.

  -A, --all       every item (the default when no item is asked for)
  -u, --uid       uid= and gid=
  -d, --homedir   homedir=
  -a, --address   address=
  -n, --name      name= (the full name)
  -m, --maildir   maildir=
  -q, --quota     quota=
  -o, --options   options=
  -h, --help      this help
  -V, --version   the version
      --stderr    log to stderr instead of syslog
      --config FILE  read the account source and settings from FILE

Each item is printed as item=value on its own line, in the order above.
Exit status: 0 found, 1 unknown user, 2 usage error, 111 temporary failure.
"""

#: Item names in output order, with the Account attribute each prints.
ITEMS = (
    ("uid", "uid"),
    ("gid", "gid"),
    ("homedir", "home"),
    ("address", "address"),
    ("name", "fullname"),
    ("maildir", "maildir"),
    ("quota", "quota"),
    ("options", "options"),
)

#: Short flag -> the items it selects ("" for the non-item flags).
_SHORT = {
    "A": ("*",),
    "u": ("uid", "gid"),
    "d": ("homedir",),
    "a": ("address",),
    "n": ("name",),
    "m": ("maildir",),
    "q": ("quota",),
    "o": ("options",),
}
_LONG = {
    "all": "A", "uid": "u", "homedir": "d", "address": "a", "name": "n",
    "maildir": "m", "quota": "q", "options": "o", "help": "h", "version": "V",
}


class UsageError(Exception):
    """A command line that does not follow the synopsis (exit 2)."""


class Request:
    """A parsed command line: ``items`` (set of item names, empty = all),
    ``username`` (None with --help/--version), ``config`` (path or None),
    ``to_stderr``, ``action`` ("show", "help" or "version")."""

    __slots__ = ("items", "username", "config", "to_stderr", "action")

    def __init__(self) -> None:
        self.items: set[str] = set()
        self.username: str | None = None
        self.config: str | None = None
        self.to_stderr = False
        self.action = "show"


def _apply_flag(request: Request, flag: str) -> None:
    if flag == "h":
        request.action = "help"
    elif flag == "V":
        if request.action != "help":
            request.action = "version"
    elif flag in _SHORT:
        for item in _SHORT[flag]:
            if item != "*":  # -A adds nothing: "all" is what an empty set means
                request.items.add(item)
    else:
        raise UsageError(f"unknown option -{flag}")


def parse_args(argv: "list[str]") -> Request:
    """The :class:`Request` of ``argv`` (without the program name).

    GNU-style: short flags cluster (``-ud``), long options need their full name,
    ``--config FILE`` and ``--config=FILE`` both work, options may follow the
    username, ``--`` ends the options.  Exactly one username is required unless
    ``-h`` or ``-V`` is given (``-h`` wins over ``-V``).  Raises
    :class:`UsageError`."""
    request = Request()
    positional: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == "--":
            positional.extend(args)
            break
        if arg.startswith("--"):
            name, sep, value = arg[2:].partition("=")
            if name == "config":
                if not sep:
                    value = next(args, None)  # type: ignore[assignment]
                    if value is None:
                        raise UsageError("option --config needs a file name")
                if not value:
                    raise UsageError("option --config needs a file name")
                request.config = value
            elif sep:
                raise UsageError(f"option --{name} takes no value")
            elif name == "stderr":
                request.to_stderr = True
            elif name in _LONG:
                _apply_flag(request, _LONG[name])
            else:
                raise UsageError(f"unknown option --{name}")
        elif arg.startswith("-") and arg != "-":
            for flag in arg[1:]:
                _apply_flag(request, flag)
        else:
            positional.append(arg)
    if request.action != "show":
        return request
    if not positional:
        raise UsageError("no username given")
    if len(positional) > 1:
        raise UsageError("only one username may be given")
    if not positional[0]:
        raise UsageError("the username is empty")
    request.username = positional[0]
    return request


def _clean(value: str) -> str:
    """``value`` with every unprintable character but TAB written as ``\\xNN``
    or ``\\uNNNN`` (authkit.printable), so that one item is always exactly one
    line; bytes that were not UTF-8 are kept, to be written back as they were."""
    from authkit.printable import printable

    return printable(value, keep="\t", surrogates=True)


def render(account: object, items: "set[str] | frozenset[str]") -> bytes:
    """The output for ``account``: ``item=value\\n`` for each selected item (all
    when ``items`` is empty), in :data:`ITEMS` order, as bytes (values read from
    a non-UTF-8 userdb are written back as the same bytes)."""
    lines = []
    for item, attribute in ITEMS:
        if items and item not in items:
            continue
        value = getattr(account, attribute)
        lines.append(f"{item}={_clean(str(value))}\n")
    text = "".join(lines)
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _stderr(line: str, prefix: bool = True) -> None:
    text = f"{PROGRAM}: {line}\n" if prefix else f"{line}\n"
    try:
        _write_all(2, text.encode("utf-8", "backslashreplace"))
    except OSError:
        pass


def _version() -> str:
    from authkit import __version__

    return f"{PROGRAM} (authkit) {__version__}\n"


def run(argv: "list[str]", environ: "dict[str, str] | None" = None) -> int:
    """Do what the command line ``argv`` (without the program name) asks; return
    the exit status.  Writes the items to fd 1, diagnostics to fd 2 or syslog."""
    try:
        request = parse_args(argv)
    except UsageError as exc:
        _stderr(str(exc))
        _stderr(USAGE, prefix=False)
        return 2
    if request.action == "help":
        _write_all(1, HELP.encode())
        return 0
    if request.action == "version":
        _write_all(1, _version().encode())
        return 0

    from authkit.errors import AuthError, Misuse, Rejected

    username = request.username
    assert username is not None
    log = None

    def logger():  # the event log is imported only when something goes wrong
        nonlocal log
        if log is None:
            from authkit.cli._log import EventLog

            log = EventLog(PROGRAM, to_stderr=request.to_stderr)
        return log

    def on_problem(path: str, lineno: int, message: str) -> None:
        logger().event("problem", file=path, line=lineno or None, message=message)

    source = None
    try:
        from authkit.config import load_settings, open_source

        settings = load_settings(request.config, environ)
        limit = settings.max_username_length
        if len(username.encode("utf-8", "surrogateescape")) > limit:
            raise Misuse(f"the username is longer than {limit} bytes")
        source = open_source(settings, environ=environ, on_problem=on_problem)
        account = source.lookup(username, service="login")
        output = render(account, request.items)
    except Misuse as exc:
        _stderr(str(exc))
        _stderr(USAGE, prefix=False)
        return 2
    except Rejected:
        logger().event("lookup", user=username, result="unknown")
        return 1
    except Exception as exc:  # TemporaryFailure, ConfigError and anything unexpected
        reason = str(exc) if isinstance(exc, AuthError) else f"{exc.__class__.__name__}: {exc}"
        # Always on stderr (a script's caller sees why stdout is empty), and in
        # syslog too unless --stderr already sent it there.
        _stderr(f"temporary failure: {reason}")
        if not request.to_stderr:
            logger().event("lookup", user=username, result="temporary-failure", reason=reason)
        return 111
    finally:
        if source is not None:
            try:
                source.close()
            except Exception:
                pass
    try:
        _write_all(1, output)
    except OSError as exc:
        _stderr(f"temporary failure: cannot write to stdout: {exc.strerror or exc}")
        return 111
    return 0


def main(argv: "list[str] | None" = None) -> int:
    """Console-script entry point: ``run(sys.argv[1:])``."""
    return run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
