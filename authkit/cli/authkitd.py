"""authkitd: an authdaemond-compatible service for Courier and authkit's programs.

    authkitd [--config FILE] [--socket PATH] [--stderr] [-v]

The contract is docs/authkitd.8.  In short: runs in the foreground, listens on
``PATH`` (default the config's ``authkitd_socket``, Courier's
``/run/courier/authdaemon/socket``) and answers authdaemond's protocol from the
account source of the configuration (``open_source(settings, daemon=True)``: a
userdb, LDAP, PostgreSQL or a chain).  Exit 0 after SIGTERM, 2 for a bad command
line, 111 when it cannot start (configuration, socket).  Logs go to syslog
(facility auth), or stderr with ``--stderr``; ``-v`` adds a line per request.

A thin CLI: argv is parsed by hand (no argparse), the work is in
:mod:`authkit.daemon`.
"""

from __future__ import annotations

import os
import sys

PROGRAM = "authkitd"
USAGE = f"usage: {PROGRAM} [--config FILE] [--socket PATH] [--stderr] [-v]"
HELP = f"""{USAGE}
Serve Courier authdaemond's socket protocol from authkit's account sources.

  --config FILE  the configuration (default $AUTHKIT_CONFIG, /etc/authkit/authkit.conf)
  --socket PATH  the socket to listen on (default: authkitd_socket,
                 /run/courier/authdaemon/socket)
  --stderr       log to stderr instead of syslog
  -v, --verbose  log every request (never a password)
  -h, --help     this help
  -V, --version  the version

Runs in the foreground.  SIGTERM: finish the requests being answered, exit 0.
SIGHUP: re-read the configuration (a bad one is logged and the old one kept).
Exit status: 0 stopped, 2 usage error, 111 cannot start.
"""


class UsageError(Exception):
    """A command line that does not follow the synopsis (exit 2)."""


def parse_args(argv: "list[str]") -> "dict[str, object]":
    """``{"config", "socket", "stderr", "verbose", "help", "version"}`` from ``argv``;
    raises :class:`UsageError`."""
    options: "dict[str, object]" = {"config": None, "socket": None, "stderr": False,
                                    "verbose": False, "help": False, "version": False}
    index = 0
    while index < len(argv):
        arg = argv[index]
        index += 1
        name, equals, value = arg.partition("=")
        if name in ("--config", "--socket"):
            if not equals:
                if index >= len(argv):
                    raise UsageError(f"{name} needs a value")
                value = argv[index]
                index += 1
            if not value:
                raise UsageError(f"{name} needs a value")
            options[name[2:]] = value
        elif arg == "--stderr":
            options["stderr"] = True
        elif arg in ("-v", "--verbose"):
            options["verbose"] = True
        elif arg in ("-h", "--help"):
            options["help"] = True
        elif arg in ("-V", "--version"):
            options["version"] = True
        else:
            raise UsageError(f"unknown argument {arg!r}")
    return options


def _same_path(one: str, other: str) -> bool:
    return os.path.realpath(one) == os.path.realpath(other)


def check_settings(settings: object, socket_path: str) -> None:
    """Refuse a configuration authkitd cannot serve: a source that is
    authdaemond on authkitd's own socket (it would ask itself for ever).
    (``rehash_on_login`` and the other values are checked when the file is read,
    by authkit.config.)  Raises ``ConfigError``."""
    from ..config import chain_kinds
    from ..errors import ConfigError

    kind = settings.chosen_source  # type: ignore[attr-defined]
    sockets = []
    if kind == "authdaemon":
        sockets.append(settings.chosen_path)  # type: ignore[attr-defined]
    elif kind == "chain" and "authdaemon" in chain_kinds(settings.source):  # type: ignore[attr-defined]
        sockets.append(settings.authdaemon_socket)  # type: ignore[attr-defined]
    for path in sockets:
        if path and _same_path(path, socket_path):
            raise ConfigError(
                f"the account source is authdaemond on authkitd's own socket {socket_path}: "
                "set source (e.g. source = userdb and userdb = /etc/courier/userdb) in authkit.conf")


def open_generation(config_path: "str | None", socket_path: "str | None", log: object):  # noqa: ANN201
    """Load the settings, check them, open the source: ``(settings,
    Generation)``.  Raises ``ConfigError`` (or the source's
    ``TemporaryFailure``)."""
    from ..config import COURIER_MODULES, load_settings, open_source
    from ..daemon import Generation, Responder

    settings = load_settings(config_path)
    path = socket_path or settings.authkitd_socket
    check_settings(settings, path)

    def problem(file: str, lineno: int, message: str) -> None:
        log.line(f"{file}:{lineno}: {message}", 4)  # type: ignore[attr-defined]

    source = open_source(settings, on_problem=problem, daemon=True)
    if settings.chosen_source == "chain":
        modules = dict(zip(source.names, source.members))  # type: ignore[attr-defined]
    else:
        modules = {COURIER_MODULES.get(settings.chosen_source, settings.chosen_source): source}
    userdbs = [member for member in modules.values() if type(member).__name__ == "UserdbSource"]
    rehash = userdbs if settings.rehash_on_login else []
    cache = None
    if settings.cache_ttl > 0:
        from ..cache import CachingSource, userdb_stamp

        paths = [member.path for member in userdbs]  # type: ignore[attr-defined]
        source = cache = CachingSource(source, settings.cache_ttl,
                                       lambda: tuple(userdb_stamp(path) for path in paths))
    responder = Responder(source, modules, settings.default_options, rehash_targets=rehash,
                          log=log, cache=cache)
    generation = Generation(
        responder, source_timeout=settings.source_timeout,
        failure_delay=settings.failure_delay, failure_delay_max=settings.failure_delay_max,
        refusal_floor=settings.refusal_floor,
        description=source.description, close=source.close)
    return settings, generation


def _preload() -> None:
    """Import what a request may need before the workers start, so that no
    request pays for (or races on) a first import; and use the crypt binding
    that releases the GIL, so verifications run on every core."""
    import importlib

    from ..schemes import cryptlib

    cryptlib.prefer_ctypes()
    for name in ("authkit.schemes", "authkit.schemes.unixcrypt", "authkit.schemes.digests",
                 "authkit.schemes.hmacstate", "authkit.userdb.edit", "authkit.userdb.gdbm",
                 "authkit.userdb.files", "authkit.account", "authkit.rehash", "authkit.cache"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def _raise_file_limit() -> None:
    """Raise the soft limit on open files to the hard one: each held
    connection is a descriptor."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > 65536:
            hard = 65536
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


def inherited_socket():  # noqa: ANN201
    """The listening unix socket systemd passed (``LISTEN_PID`` is this process,
    ``LISTEN_FDS`` >= 1: descriptor 3, sd_listen_fds(3)), or None.  The
    variables are removed so that no child sees them."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    count = os.environ.get("LISTEN_FDS", "")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if not count.isdigit() or int(count) < 1:
        return None
    import socket

    listener = socket.socket(fileno=3)
    if listener.family != socket.AF_UNIX or listener.type != socket.SOCK_STREAM:
        listener.detach()
        return None
    listener.set_inheritable(False)
    return listener


def run(argv: "list[str]") -> int:
    """The program: ``argv`` without the program name; the exit status."""
    try:
        options = parse_args(argv)
    except UsageError as exc:
        from ._edge import usage_error

        return usage_error(PROGRAM, str(exc), USAGE)
    if options["help"]:
        os.write(1, HELP.encode())
        return 0
    if options["version"]:
        from .. import __version__

        os.write(1, f"{PROGRAM} (authkit) {__version__}\n".encode())
        return 0
    from ..errors import ConfigError, TemporaryFailure
    from ._log import EventLog

    log = EventLog(PROGRAM, bool(options["stderr"]), bool(options["verbose"]))
    config_path = options["config"]

    def fatal(message: str) -> int:
        log.line(message, 3)
        if not options["stderr"]:
            os.write(2, f"{PROGRAM}: {message}\n".encode("utf-8", "backslashreplace"))
        return 111

    try:
        settings, generation = open_generation(config_path, options["socket"], log)  # type: ignore[arg-type]
    except (ConfigError, TemporaryFailure) as exc:
        return fatal(f"configuration error: {exc}")
    socket_path = str(options["socket"] or settings.authkitd_socket)

    from ..daemon import Daemon, bind_socket

    _preload()
    _raise_file_limit()
    listener = inherited_socket()
    shown = socket_path
    if listener is not None:  # systemd socket activation (contrib/systemd/authkitd.socket)
        socket_path = str(listener.getsockname() or socket_path)
        shown = socket_path + " (from systemd)"
        try:
            check_settings(settings, socket_path)
        except ConfigError as exc:
            return fatal(f"configuration error: {exc}")
    else:
        try:
            listener = bind_socket(socket_path)
        except OSError as exc:
            return fatal(f"cannot listen on {socket_path}: {exc.strerror or exc}")

    def reload():  # noqa: ANN202
        new_settings, new_generation = open_generation(config_path, socket_path, log)  # type: ignore[arg-type]
        if new_settings.workers != settings.workers or new_settings.max_clients != settings.max_clients:
            log.line("workers and max_clients take effect at the next start", 4)
        return new_generation

    daemon = Daemon(listener, generation, log, reload=reload, workers=settings.workers,
                    max_clients=settings.max_clients)
    log.line(f"listening on {shown}: {generation.description}, {settings.workers} workers")
    try:
        return daemon.run()
    finally:
        current = daemon.generation  # retired ones the daemon has closed itself
        if current.close is not None:
            current.close()


def main(argv: "list[str] | None" = None) -> int:
    """Console-script entry point: ``run(sys.argv[1:])``."""
    return run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
