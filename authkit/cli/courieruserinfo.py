"""courieruserinfo: print what authlib knows about one account.

    courieruserinfo [--stderr] [--config FILE] [-AudanmqohV] username

The contract is docs/courieruserinfo.8.  In short: one ``item=value`` line per
item, in the fixed order ``uid``, ``gid``, ``homedir``, ``address``, ``name``,
``maildir``, ``quota``, ``options`` whatever the order of the flags; a blank value
when the account has none; no item flag (or ``-A``) prints every item, any item
flag overrides ``-A``.  Exit 0 found, 1 unknown user (nothing on stdout), 2 misuse
(usage on stderr), 111 temporary failure (stdout empty, the reason on stderr).

This is a per-message program (tmda-ofmipd's ``-S`` script calls it for every
message), so it parses argv with the shared getopt of authkit.cli._edge (no
argparse) and imports only that, ``authkit.config``, the one account source
chosen and, on a failure, the event log.  What it is not: a
password checker (no password is read or verified) nor an enumerator.
"""

from __future__ import annotations

import sys

from ..errors import Misuse
from ._edge import COMMON_OPTIONS, close_quietly, exit_status, getopt, usage_error, write_all

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

#: Flag -> the items it selects ("A": none, as an empty set means all).
_ITEM_FLAGS = {
    "A": (),
    "u": ("uid", "gid"),
    "d": ("homedir",),
    "a": ("address",),
    "n": ("name",),
    "m": ("maildir",),
    "q": ("quota",),
    "o": ("options",),
}
_LONG = {"all": "A", "uid": "u", "homedir": "d", "address": "a", "name": "n",
         "maildir": "m", "quota": "q", "options": "o"}
#: spelling -> (name, takes a value): for _edge.getopt.
OPTIONS = {**{f"-{flag}": (flag, False) for flag in _ITEM_FLAGS},
           **{f"--{name}": (flag, False) for name, flag in _LONG.items()},
           **COMMON_OPTIONS}

#: A command line that does not follow the synopsis (authkit.errors.Misuse, exit 2).
UsageError = Misuse


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


def parse_args(argv: "list[str]") -> Request:
    """The :class:`Request` of ``argv`` (without the program name).

    GNU-style (authkit.cli._edge.getopt): short flags cluster (``-ud``), long
    options need their full name, ``--config FILE`` and ``--config=FILE`` both
    work, options may follow the username, ``--`` ends the options.  Exactly one
    username is required unless ``-h`` or ``-V`` is given (``-h`` wins over
    ``-V``).  Raises :class:`UsageError`."""
    request = Request()
    found, positional = getopt(argv, OPTIONS)
    for name, value in found:
        if name == "config":
            if not value:
                raise UsageError("option --config needs a file name")
            request.config = value  # type: ignore[assignment]
        elif name == "stderr":
            request.to_stderr = True
        elif name == "help":
            request.action = "help"
        elif name == "version":
            if request.action != "help":
                request.action = "version"
        else:
            request.items.update(_ITEM_FLAGS[name])
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


def _stderr(line: str) -> None:
    try:
        write_all(2, f"{PROGRAM}: {line}\n".encode("utf-8", "backslashreplace"))
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
        return usage_error(PROGRAM, str(exc), USAGE)
    if request.action == "help":
        write_all(1, HELP.encode())
        return 0
    if request.action == "version":
        write_all(1, _version().encode())
        return 0

    from ..errors import AuthError, Rejected

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
        return usage_error(PROGRAM, str(exc), USAGE)
    except Rejected as exc:
        logger().event("lookup", user=username, result="unknown")
        return exit_status(exc)
    except Exception as exc:  # TemporaryFailure, ConfigError and anything unexpected
        reason = str(exc) if isinstance(exc, AuthError) else f"{exc.__class__.__name__}: {exc}"
        # Always on stderr (a script's caller sees why stdout is empty), and in
        # syslog too unless --stderr already sent it there.
        _stderr(f"temporary failure: {reason}")
        if not request.to_stderr:
            logger().event("lookup", user=username, result="temporary-failure", reason=reason)
        return exit_status(exc)
    finally:
        close_quietly(source)
    try:
        write_all(1, output)
    except OSError as exc:
        _stderr(f"temporary failure: cannot write to stdout: {exc.strerror or exc}")
        return 111
    return 0


def main(argv: "list[str] | None" = None) -> int:
    """Console-script entry point: ``run(sys.argv[1:])``."""
    return run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
