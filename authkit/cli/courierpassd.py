"""courierpassd: the poppassd password-change server (see docs/courierpassd.8).

Two ways to run:

* on stdin/stdout (one connection) under tcpserver, xinetd, inetd or systemd
  socket activation with ``Accept=yes``;
* ``--listen ADDR:PORT``: a standalone server, one thread per connection, SIGTERM
  stops it (in-flight changes finish; idle clients get a 500).

Optional implicit TLS (``--tls-cert``/``--tls-key``, client certificates checked
against ``--tls-ca``) in both modes (stdin must then be a socket).

The dialogue is :mod:`authkit.poppassd`; this module only does the I/O: reading
with an idle timeout, the failure delay, asking the account source, logging one
event per connection.  Exit status (stdin mode): 0 password changed, 1 anything
else (refused, protocol error, timeout, client gone, quit before a change), 2
usage, 111 temporary failure.  Options are read by the shared getopt of
authkit.cli._edge (a connection under inetd starts this program: no argparse).
"""

from __future__ import annotations

import os
import select
import socket
import sys
import time

from .. import __version__
from .. import poppassd as pp
from ..errors import BadPassword, ConfigError, Misuse, PolicyRefused, Rejected, TemporaryFailure, UnknownUser
from ._edge import COMMON_OPTIONS, exit_status, getopt, usage_error, write_all
from ._log import EventLog, safe

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Sequence

    from ..config import Settings
    from ..source import AccountSource

PROGRAM = "courierpassd"
USAGE = (
    "usage: courierpassd [-hV] [-s SERVICE] [--stderr] [--config FILE] [-v]\n"
    "                    [--listen ADDR:PORT] [--tls-cert FILE --tls-key FILE [--tls-ca FILE]]"
)
#: how often a waiting reader or the accept loop looks at the stop flag (seconds).
POLL = 0.25

HELP = USAGE + """

poppassd-protocol password change server for a Courier userdb or authdaemond.

  -s, --service SERVICE  service whose password is changed (<service>pw, else
                         systempw); default login
      --stderr           log to stderr instead of syslog
      --config FILE      authkit.conf to use (see authkit.conf(5))
      --listen ADDR:PORT serve standalone on ADDR:PORT (e.g. 127.0.0.1:106, [::1]:106)
      --tls-cert FILE    TLS certificate chain (PEM): implicit TLS
      --tls-key FILE     TLS private key (PEM)
      --tls-ca FILE      require client certificates signed by these CAs
  -v, --verbose          trace the dialogue on stderr (never passwords)
  -h, --help             show this help and exit
  -V, --version          show the version and exit

See courierpassd(8).
"""

#: spelling -> (Options attribute, takes a value): for _edge.getopt.
OPTIONS = {
    "-s": ("service", True), "--service": ("service", True),
    "--listen": ("listen", True),
    "--tls-cert": ("tls_cert", True), "--tls-key": ("tls_key", True), "--tls-ca": ("tls_ca", True),
    "-v": ("verbose", False), "--verbose": ("verbose", False),
    **COMMON_OPTIONS,
}


class Options:
    """The parsed command line (attributes named as in :data:`OPTIONS`)."""

    __slots__ = ("service", "stderr", "config", "listen", "tls_cert", "tls_key", "tls_ca",
                 "verbose", "help", "version")

    def __init__(self) -> None:
        self.service = "login"
        self.stderr = self.verbose = self.help = self.version = False
        self.config = self.listen = self.tls_cert = self.tls_key = self.tls_ca = None


def parse_args(argv: "Sequence[str]") -> Options:
    """The options of ``argv`` (without the program name); no operand is
    allowed.  Raises ``Misuse``."""
    found, operands = getopt(argv, OPTIONS)
    if operands:
        raise Misuse(f"unexpected argument {safe(operands[0])}")
    opts = Options()
    for name, value in found:
        setattr(opts, name, value)
    if bool(opts.tls_cert) != bool(opts.tls_key) or (opts.tls_ca and not opts.tls_cert):
        raise Misuse("--tls-cert and --tls-key go together (--tls-ca needs both)")
    return opts


def outcome_status(outcome: str) -> int:
    """The exit status of a stdin-mode session that ended in ``outcome``: 0
    changed, the error classes' codes otherwise (111 temporary failure, 1 for
    every refusal, protocol error, timeout or abort)."""
    if outcome == pp.CHANGED:
        return 0
    return TemporaryFailure.exit_code if outcome == pp.TEMPFAIL else Rejected.exit_code


# -- transports ------------------------------------------------------------------


class Closed(Exception):
    """The peer went away (or the server is stopping) while we waited."""


class Transport:
    """What a session needs from a connection: ``recv(timeout)`` (``b""`` = EOF,
    ``None`` = timed out), ``send(data)``, ``close()``."""

    def recv(self, timeout: float) -> bytes | None:
        raise NotImplementedError

    def send(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class FdTransport(Transport):
    """stdin/stdout file descriptors (tcpserver, xinetd, inetd)."""

    def __init__(self, rfd: int = 0, wfd: int = 1) -> None:
        self.rfd, self.wfd = rfd, wfd

    def recv(self, timeout: float) -> bytes | None:
        ready, _, _ = select.select([self.rfd], [], [], max(timeout, 0))
        if not ready:
            return None
        try:
            return os.read(self.rfd, 4096)
        except OSError:
            return b""

    def send(self, data: bytes) -> None:
        write_all(self.wfd, data)


class SocketTransport(Transport):
    """A connected (possibly TLS) socket; ``stopping`` ends a wait early."""

    def __init__(self, sock: socket.socket, stopping: "Callable[[], bool]" = lambda: False) -> None:
        self.sock = sock
        self.stopping = stopping

    def recv(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        while True:
            if self.stopping():
                raise Closed("server stopping")
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            pending = getattr(self.sock, "pending", None)
            if not (pending and pending()):
                self.sock.settimeout(min(left, POLL))
            try:
                return self.sock.recv(4096)
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return b""

    def send(self, data: bytes) -> None:
        self.sock.settimeout(30)
        self.sock.sendall(data)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# -- one connection ------------------------------------------------------------------


class Server:
    """Everything a connection needs, shared by all of them."""

    def __init__(self, settings: "Settings", source: "AccountSource", service: str, log: EventLog) -> None:
        self.settings = settings
        self.source = source
        self.service = service
        self.log = log
        self.stopping = False

    def _trace(self) -> None:
        """With -v, the traceback of an unexpected error (it holds no secret:
        passwords are never in exception messages)."""
        if self.log.verbose:
            import traceback

            self.log.debug(traceback.format_exc().replace("\n", " | "))

    def verify(self, action: pp.VerifyOld, session: pp.PoppassdSession) -> list:
        """Check the old password and the uid policy; the session's verdict."""
        from ..policy import check_uid, wait_out_refusal

        started = time.monotonic()

        def ask() -> None:
            check_uid(self.source.authenticate(action.user, action.old, self.service), self.settings)

        def low_uid(exc: PolicyRefused) -> list:
            # (the source floors unknown and wrong; a uid refused after a right
            # password waits as long, whatever bad_pass_delay adds afterwards)
            wait_out_refusal(started, self.settings.refusal_floor)
            return session.old_password_refused(pp.LOW_UID)

        return self._verdict(session, ask, session.old_password_ok, low_uid)

    def change(self, action: pp.ChangePassword, session: pp.PoppassdSession) -> list:
        """Make the change durable; the session's verdict."""
        def ask() -> None:
            self.source.change_password(action.user, action.old, action.new, self.service)

        return self._verdict(session, ask, session.password_changed,
                             lambda exc: session.change_refused(str(exc)))

    def _verdict(self, session: pp.PoppassdSession, ask: "Callable[[], None]",
                 success: "Callable[[], list]", policy: "Callable[[PolicyRefused], list]") -> list:
        """The one error ladder of :meth:`verify` and :meth:`change`: call
        ``ask()``; return ``success()``, or the session's answer to what it
        raised (``policy`` for a ``PolicyRefused``; unknown user and wrong
        password alike on the wire; a temporary failure, and anything
        unexpected, a server error)."""
        try:
            ask()
        except PolicyRefused as exc:
            return policy(exc)
        except UnknownUser:
            return session.old_password_refused(pp.UNKNOWN_USER)
        except BadPassword:
            return session.old_password_refused(pp.BAD_PASSWORD)
        except TemporaryFailure as exc:
            return session.server_error(str(exc))
        except Exception as exc:  # anything unexpected is temporary
            self._trace()
            return session.server_error(f"internal error: {type(exc).__name__}")
        return success()

    def handle(self, transport: Transport, peer: str | None) -> str:
        """Run one dialogue to its end; log it; return the outcome."""
        session = pp.PoppassdSession(self.settings, __version__)
        log = self.log
        started = time.monotonic()
        outcome = pp.ABORTED
        detail = ""
        pending = session.start()
        deadline = time.monotonic() + self.settings.idle_timeout
        action_started = started
        try:
            while True:
                if not pending:
                    left = deadline - time.monotonic()
                    try:
                        data = transport.recv(left) if left > 0 else None
                    except Closed:
                        pending = session.shutdown()
                        continue
                    if data is None:
                        pending = session.timeout()
                    else:
                        pending = session.receive_data(data)
                        if pending:
                            deadline = time.monotonic() + self.settings.idle_timeout
                    continue
                action = pending.pop(0)
                if isinstance(action, pp.Reply):
                    log.debug(f"S: {action.code} {action.text}")
                    transport.send(action.data)
                elif isinstance(action, pp.Delay):
                    wait = action_started + action.seconds - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                elif isinstance(action, pp.VerifyOld):
                    log.debug(f"C: user/pass for {action.user!r}")
                    action_started = time.monotonic()
                    pending = self.verify(action, session) + pending
                elif isinstance(action, pp.ChangePassword):
                    log.debug("C: newpass")
                    action_started = time.monotonic()
                    pending = self.change(action, session) + pending
                    deadline = time.monotonic() + self.settings.idle_timeout
                elif isinstance(action, pp.Close):
                    outcome, detail = action.outcome, action.detail
                    break
        except (OSError, Closed) as exc:
            # the client vanished while we were writing; a committed change stands
            outcome = session.outcome or (pp.CHANGED if session.state == pp.WANT_QUIT else pp.ABORTED)
            detail = detail or f"connection lost: {getattr(exc, 'strerror', None) or exc}"
        finally:
            transport.close()
        if outcome == pp.TEMPFAIL:
            log.line(f"passwd user={_safe(session.user)} ip={_safe(peer)} service={self.service} "
                     f"result={outcome.replace(' ', '-')} error={_safe(detail, 200)}", 3)
        else:
            log.event("passwd", user=session.user, ip=peer, service=self.service,
                      result=outcome.replace(" ", "-"), reason=detail,
                      seconds=f"{time.monotonic() - started:.2f}")
        return outcome


def _safe(value: str | None, limit: int = 128) -> str:
    return safe(value or "-", limit)


# -- TLS ----------------------------------------------------------------------------


def tls_context(cert: str, key: str, ca: str | None):  # noqa: ANN201
    """A server SSLContext (TLS 1.2+); with ``ca``, client certificates are required."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if ca:
        context.load_verify_locations(ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _wrap(context, sock: socket.socket, timeout: float) -> socket.socket:  # noqa: ANN001
    sock.settimeout(timeout)
    return context.wrap_socket(sock, server_side=True)


# -- modes --------------------------------------------------------------------------


def _peer_from_fd0() -> str | None:
    env = os.environ
    if env.get("TCPREMOTEIP"):
        return env["TCPREMOTEIP"]
    if env.get("REMOTE_HOST"):  # xinetd
        return env["REMOTE_HOST"]
    try:
        sock = socket.socket(fileno=os.dup(0))
    except OSError:
        return None
    try:
        peer = sock.getpeername()
        return peer[0] if isinstance(peer, tuple) else str(peer) or None
    except OSError:
        return None
    finally:
        sock.close()


def serve_stdio(server: Server, context=None) -> int:  # noqa: ANN001
    """One connection on fds 0/1.  Returns the exit status."""
    peer = _peer_from_fd0()
    if context is not None:
        try:
            raw = socket.socket(fileno=os.dup(0))
        except OSError:
            server.log.line("TLS needs a socket on standard input", 3)
            return TemporaryFailure.exit_code
        try:
            transport: Transport = SocketTransport(_wrap(context, raw, server.settings.idle_timeout))
        except (OSError, ValueError) as exc:
            server.log.event("passwd", ip=peer, result="tls-error", reason=str(exc))
            raw.close()
            return Rejected.exit_code
    else:
        transport = FdTransport(0, 1)
    outcome = server.handle(transport, peer)
    return outcome_status(outcome)


def parse_listen(value: str) -> tuple[str, int]:
    """``ADDR:PORT`` (``[v6]:PORT`` for IPv6) -> ``(addr, port)``; ValueError."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"--listen wants ADDR:PORT, got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"port out of range: {port}")
    return host, int(port)


def _preload() -> None:
    """Import every module a change may need before threads start, so that no
    connection pays for (or waits on) a first import."""
    import importlib

    for name in ("authkit.schemes.unixcrypt", "authkit.schemes.digests", "authkit.schemes.hmacstate",
                 "authkit.userdb.edit", "authkit.userdb.gdbm", "authkit.policy", "authkit.account"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


class TurnedAway:
    """The connections answered ``500 Server busy``, until they close.

    A busy reply followed at once by ``close()`` resets a client that has
    already sent its lines (the kernel answers unread input with RST, and the
    client's next read fails with ECONNRESET instead of seeing the reply and end
    of file).  So a turned-away connection gets the reply, then its write side is
    shut (the client reads the reply and EOF) and whatever it sends is read and
    dropped until it closes, for at most :data:`LINGER` seconds.  At most
    :data:`MAX_LINGERING` are kept; beyond that one is closed at once.  All of
    this runs in the accept loop's thread: :meth:`wait` waits for the listener
    and these connections together.  :meth:`close` closes the lingering
    connections, not the listener."""

    LINGER = 5.0
    MAX_LINGERING = 128

    def __init__(self, listener: socket.socket) -> None:
        import selectors

        self.listener = listener
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ)
        self.deadlines: dict = {}  # socket -> monotonic deadline

    def add(self, conn: socket.socket) -> None:
        """Send the busy reply on ``conn`` and linger on it."""
        try:
            conn.settimeout(1)
            conn.sendall(pp.SERVER_BUSY.data)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            conn.close()
            return
        if len(self.deadlines) >= self.MAX_LINGERING:
            conn.close()
            return
        conn.setblocking(False)
        self.selector.register(conn, self.selector.get_key(self.listener).events)
        self.deadlines[conn] = time.monotonic() + self.LINGER

    def _drop(self, conn: socket.socket) -> None:
        self.selector.unregister(conn)
        del self.deadlines[conn]
        conn.close()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; drain (and close at EOF, error or
        deadline) the lingering connections; True when the listener may accept."""
        ready = False
        for key, _events in self.selector.select(timeout):
            conn = key.fileobj
            if conn is self.listener:
                ready = True
                continue
            try:
                data = conn.recv(4096)  # type: ignore[union-attr]
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                self._drop(conn)  # type: ignore[arg-type]
        now = time.monotonic()
        for conn in [c for c, deadline in self.deadlines.items() if deadline <= now]:
            self._drop(conn)
        return ready

    def close(self) -> None:
        """Close every lingering connection and the selector."""
        for conn in list(self.deadlines):
            self._drop(conn)
        self.selector.close()


def serve_listen(server: Server, host: str, port: int, context=None,  # noqa: ANN001
                 ready: "Callable[[socket.socket], None] | None" = None) -> int:
    """Accept connections until SIGTERM/SIGINT, one thread each."""
    import signal
    import threading

    # _crypt holds the GIL while hashing; the ctypes path releases it, so that
    # concurrent verifications run in parallel (see authkit.schemes.cryptlib).
    from ..schemes import cryptlib

    cryptlib.prefer_ctypes()
    _preload()

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
        listener.listen(128)
    except OSError as exc:
        server.log.line(f"cannot listen on {host}:{port}: {exc.strerror}", 3)
        listener.close()
        return TemporaryFailure.exit_code
    listener.settimeout(POLL)
    bound = listener.getsockname()
    server.log.line(f"listening on {bound[0]}:{bound[1]}{' (TLS)' if context else ''}")
    if ready is not None:
        ready(listener)

    def stop(signum: int, frame: object) -> None:
        server.stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    threads: set[threading.Thread] = set()
    lock = threading.Lock()

    def run(conn: socket.socket, peer: str) -> None:
        try:
            if context is not None:
                try:
                    conn = _wrap(context, conn, server.settings.idle_timeout)
                except (OSError, ValueError) as exc:
                    server.log.event("passwd", ip=peer, result="tls-error", reason=str(exc))
                    conn.close()
                    return
            server.handle(SocketTransport(conn, lambda: server.stopping), peer)
        finally:
            with lock:
                threads.discard(threading.current_thread())

    turned_away = TurnedAway(listener)
    try:
        while not server.stopping:
            if not turned_away.wait(POLL):
                continue
            try:
                conn, addr = listener.accept()
            except (socket.timeout, TimeoutError, BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                server.log.line(f"accept failed: {exc.strerror}", 4)
                time.sleep(POLL)
                continue
            peer = addr[0]
            with lock:
                busy = len(threads) >= server.settings.max_connections
            if busy:
                turned_away.add(conn)
                server.log.event("passwd", ip=peer, result="busy")
                continue
            thread = threading.Thread(target=run, args=(conn, peer), daemon=True)
            with lock:
                threads.add(thread)
            thread.start()
    finally:
        turned_away.close()
        listener.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    # in-flight changes finish; idle readers see the stop flag within POLL seconds
    while True:
        with lock:
            remaining = list(threads)
        if not remaining:
            break
        for thread in remaining:
            thread.join(60)
    server.log.line("stopped")
    return 0


def main(argv: "Sequence[str] | None" = None) -> int:
    """Run courierpassd with ``argv`` (default ``sys.argv[1:]``); returns the
    exit status."""
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        listen = parse_listen(args.listen) if args.listen else None
    except (Misuse, ValueError) as exc:
        return usage_error(PROGRAM, str(exc), USAGE)
    if args.help:
        write_all(1, HELP.encode())
        return 0
    if args.version:
        write_all(1, f"{PROGRAM} {__version__}\n".encode())
        return 0
    log = EventLog(PROGRAM, args.stderr, args.verbose)
    from ..config import load_settings, open_source

    def problem(path: str, lineno: int, message: str) -> None:
        log.line(f"{path}:{lineno}: {message}", 4)

    try:
        settings = load_settings(args.config)
        source = open_source(settings, on_problem=problem)
    except ConfigError as exc:
        log.line(f"configuration error: {exc}", 3)
        if not args.stderr:
            try:
                write_all(2, f"{PROGRAM}: {exc}\n".encode("utf-8", "backslashreplace"))
            except OSError:
                pass
        return exit_status(exc)
    context = None
    if args.tls_cert:
        try:
            context = tls_context(args.tls_cert, args.tls_key, args.tls_ca)  # type: ignore[arg-type]
        except (OSError, ValueError) as exc:
            log.line(f"TLS setup failed: {exc}", 3)
            return TemporaryFailure.exit_code
    server = Server(settings, source, args.service, log)
    try:
        if listen is not None:
            return serve_listen(server, listen[0], listen[1], context)
        return serve_stdio(server, context)
    finally:
        source.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
