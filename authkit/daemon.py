"""authkitd's service: authdaemond's socket protocol served from an account source.

One thread runs an event loop (``selectors``) over the listening socket, every
client connection and a wake-up pipe; a small pool of worker threads makes the
blocking source calls (a userdb read, a crypt verification, an LDAP query).  A
client is handed to a worker only once its request is complete, so a client that
connects and sends nothing, or sends a byte now and then, costs a timer and a
file descriptor, never a worker: it cannot stall anyone (Courier's authdaemond
gives each connection a whole process until it ends).

Timers, per connection (Courier's values where Courier has one):

* :data:`READ_TIMEOUT` (10 s) between two reads of a request, and
  :data:`REQUEST_TIMEOUT` (60 s) for the whole request: then the connection is
  closed with nothing sent, as Courier does after its 10 s ``select``;
* ``source_timeout`` (authkit.conf, 25 s, below the clients' 30 s) for the answer
  of the source, queueing for a worker included: then the connection is closed
  with nothing sent (the client's temporary failure); the worker's late answer is
  thrown away;
* :data:`WRITE_TIMEOUT` (30 s) without progress while sending a reply.

What a request gets is decided by :class:`Responder` (pure: request in, bytes
out, in a worker thread): account replies byte for byte as Courier's daemon
sends them (:mod:`authkit.authdaemon.server`); ``FAIL`` for a rejection; for a
temporary failure of the source the connection is closed with nothing sent,
also for ``PASSWD`` (where Courier's daemon would answer ``FAIL``: a rejection
must never stand for "could not tell").

Shared state that only a daemon can hold lives in the loop thread:
:class:`Penalty`, the per-``TCPREMOTEIP`` failure delay.

The refusal floor (``refusal_floor``, authkit.conf(5)) is kept here too, as a
timer: the ``FAIL`` of a refused password check leaves no sooner than
``refusal_floor`` seconds after the request went to a worker, whatever the
source, so an unknown user and a wrong password answer at the same time.  The
worker is free at once (a sleep in it would let a few wrong passwords a second
occupy every worker, the stall authkitd exists to prevent); the sources are
opened without a floor of their own (``open_source(daemon=True)``).

Signals: SIGTERM/SIGINT stop accepting, close connections whose request is not
being answered, let the answers being worked out go out, then :meth:`Daemon.run`
returns 0.  SIGHUP calls the ``reload`` function given; when it raises, the old
configuration stays and the reason is logged.  The socket file is left in place
on exit: a new instance renames its own over it, and removing it could remove
the newer one's.
"""

from __future__ import annotations

import heapq
import os
import queue
import selectors
import signal
import socket
import threading
from time import monotonic

from .authdaemon import server
from .errors import Misuse, Rejected, TemporaryFailure

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

    from .source import AccountSource

#: Courier's authdaemond: 10 s per read of a request.
READ_TIMEOUT = 10.0
#: authkitd's cap on a whole request (Courier has none: a client sending a byte
#: every 9 s held a Courier worker for ever).
REQUEST_TIMEOUT = 60.0
#: Courier's authdaemond: 30 s per write.
WRITE_TIMEOUT = 30.0
#: An ENUMERATE is built whole before it is sent (about 2.5 s per 100,000 userdb
#: accounts): it gets this long instead of ``source_timeout`` (Courier's
#: authenumerate waits 60 s for each read).
ENUMERATE_TIMEOUT = 55.0
#: Forget an address's failures after this long without one (Dovecot: 1 h).
PENALTY_FORGET = 3600.0
#: At most this many addresses are remembered; the oldest are dropped first.
PENALTY_TABLE_MAX = 65536
#: Courier's listen backlog is SOMAXCONN.
BACKLOG = socket.SOMAXCONN


# ------------------------------------------------------------------ answers

class Outcome:
    """What a worker made of one request: ``reply`` (``b""`` = close with
    nothing sent), ``result`` for the log (``ok``, ``fail``, ``tempfail``,
    ``refused``, ``error``), ``guess`` True when it was a password check
    (login, CRAM, PASSWD) whose result feeds the failure delay, ``user`` and
    ``reason`` for the log (never a secret)."""

    __slots__ = ("reply", "result", "guess", "user", "reason")

    def __init__(self, reply: bytes, result: str, guess: bool = False, user: str = "",
                 reason: str = "") -> None:
        self.reply, self.result, self.guess, self.user, self.reason = reply, result, guess, user, reason


class Responder:
    """Answers typed requests from ``source``.

    ``modules`` maps Courier module names (``authuserdb``...) to the sources
    ``PRE <module>`` and the ENUMERATE headers name, in order; ``PRE .`` and
    every other request use ``source`` (the chain of them, or the one source).
    ``default_options`` is merged into every OPTIONS (Courier's DEFAULTOPTIONS).
    Safe to call from several threads at once when the sources are."""

    def __init__(self, source: "AccountSource", modules: "dict[str, AccountSource]",
                 default_options: str = "", *, rehash_targets: "list | tuple" = (),
                 log: object = None, cache: object = None) -> None:
        self.source = source
        self.modules = modules
        self.default_options = default_options
        self.rehash_targets = list(rehash_targets)
        self.log = log
        self.cache = cache

    def answer(self, request: server.Request) -> Outcome:
        """The outcome of ``request``; never raises."""
        kind = request.kind
        try:
            if kind == "refusal":
                return Outcome(request.reply, "refused", reason=request.reason)  # type: ignore[attr-defined]
            if kind == "pre":
                return self._pre(request)  # type: ignore[arg-type]
            if kind == "login":
                return self._login(request)  # type: ignore[arg-type]
            if kind == "cram":
                return self._cram(request)  # type: ignore[arg-type]
            if kind == "passwd":
                return self._passwd(request)  # type: ignore[arg-type]
            if kind == "enumerate":
                return self._enumerate()
        except TemporaryFailure as exc:
            return Outcome(b"", "tempfail", user=getattr(request, "name", ""), reason=str(exc))
        except ValueError as exc:  # a reply builder refused a value (a newline)
            return Outcome(b"", "error", user=getattr(request, "name", ""), reason=str(exc))
        except Exception as exc:  # a bug or a source's unexpected error: no answer
            return Outcome(b"", "error", user=getattr(request, "name", ""),
                           reason=f"{type(exc).__name__}: {exc}")
        return Outcome(b"", "error", reason=f"unknown request kind {kind!r}")

    def _pre(self, request: server.PreRequest) -> Outcome:
        if request.module == ".":
            source = self.source
        else:
            found = self.modules.get(request.module)
            if found is None:
                return Outcome(server.FAIL_REPLY, "fail", user=request.name, reason="no such module")
            source = found
        try:
            account = source.lookup(request.name, request.service)
        except (Rejected, Misuse) as exc:
            return Outcome(server.FAIL_REPLY, "fail", user=request.name, reason=type(exc).__name__)
        return Outcome(server.account_reply(account, default_options=self.default_options),
                       "ok", user=request.name)

    def _login(self, request: server.LoginRequest) -> Outcome:
        try:
            account = self.source.authenticate(request.name, request.password, request.service)
        except (Rejected, Misuse) as exc:
            return Outcome(server.FAIL_REPLY, "fail", True, request.name, type(exc).__name__)
        reply = server.account_reply(account, default_options=self.default_options,
                                     clear_password=request.password)
        if self.rehash_targets:
            self._rehash(account, request)
        return Outcome(reply, "ok", True, request.name)

    def _rehash(self, account: "object", request: server.LoginRequest) -> None:
        """``rehash_on_login``: a weak stored hash of this password becomes a
        ``hash_scheme`` hash (authkit.rehash).  Never raises: a failed upgrade
        is logged and the login stands."""
        from .rehash import is_weak, rehash_userdb

        stored = account.password_for(request.service)  # type: ignore[attr-defined]
        for target in self.rehash_targets:
            if not stored or not is_weak(stored, target.hash_scheme):
                return
            try:
                if target.record(request.name) is None:
                    continue
                written = rehash_userdb(target, request.name, request.password, request.service)
            except Exception as exc:  # noqa: BLE001 - the login must not fail for it
                if self.log is not None:
                    self.log.event("rehash", user=request.name, result="failed",  # type: ignore[attr-defined]
                                   reason=f"{type(exc).__name__}: {exc}")
                return
            if written:
                if self.cache is not None:
                    self.cache.invalidate(request.name)  # type: ignore[attr-defined]
                if self.log is not None:
                    self.log.event("rehash", user=request.name, service=request.service,  # type: ignore[attr-defined]
                                   result="ok", scheme=target.hash_scheme)
            return

    def _cram(self, request: server.CramRequest) -> Outcome:
        try:
            account = self.source.authenticate_cram(
                request.challenge, request.name, request.response_hex.lower(),
                request.algorithm, request.service)
        except (Rejected, Misuse, NotImplementedError) as exc:
            return Outcome(server.FAIL_REPLY, "fail", True, request.name, type(exc).__name__)
        return Outcome(server.cram_reply(account, default_options=self.default_options),
                       "ok", True, request.name)

    def _passwd(self, request: server.PasswdRequest) -> Outcome:
        try:
            # the source verifies the old password, once; no check_account: Courier's
            # authdaemond puts no uid policy on PASSWD, the client programs apply
            # theirs (AuthdaemonSource checks a PRE answer before it sends PASSWD)
            self.source.change_password(request.name, request.old, request.new, request.service)
        except (Rejected, Misuse, NotImplementedError) as exc:
            return Outcome(server.FAIL_REPLY, "fail", True, request.name, type(exc).__name__)
        return Outcome(server.OK_REPLY, "ok", True, request.name)

    def _enumerate(self) -> Outcome:
        parts: "list[bytes]" = []
        for module, source in self.modules.items():
            try:
                accounts = source.enumerate()
                header = server.enumerate_header(module)
                for account in accounts:
                    if header:
                        parts.append(header)
                        header = b""
                    parts.append(server.enumerate_line(account, default_options=self.default_options))
                if header:
                    parts.append(header)
            except NotImplementedError:
                continue  # Courier skips a module without an enumerate function
            except (TemporaryFailure, OSError) as exc:
                # Courier flushes what it has and ends without the "." line
                return Outcome(b"".join(parts), "tempfail", reason=f"enumeration aborted: {exc}")
        parts.append(server.END_LINE)
        return Outcome(b"".join(parts), "ok")


# ------------------------------------------------------------ failure delay

def penalty_key(ip: str) -> str:
    """The address a penalty is counted for: IPv4 as it is, IPv6 by its /48
    (Dovecot's rule: one site has a /48)."""
    if ":" not in ip:
        return ip
    try:
        packed = socket.inet_pton(socket.AF_INET6, ip.split("%", 1)[0])
    except (OSError, ValueError):
        return ip
    if packed[:12] == b"\0" * 10 + b"\xff\xff":  # IPv4-mapped
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    return packed[:6].hex() + "::/48"


class Penalty:
    """Dovecot's auth penalty: after ``n`` consecutive password failures from
    one address, its next password check waits ``min(base * 2**(n-1), cap)``
    seconds (2, 4, 8, 15 with the defaults); a success resets it.  ``base`` 0
    turns it off.  Requests without ``TCPREMOTEIP`` (local programs) are never
    delayed.  Not thread-safe: the event loop thread owns it."""

    def __init__(self, base: float, cap: float) -> None:
        self.base, self.cap = base, cap
        self._failures: "dict[str, tuple[int, float]]" = {}

    def delay(self, ip: str, now: float) -> float:
        """Seconds the next password check from ``ip`` waits."""
        if not ip or self.base <= 0:
            return 0.0
        entry = self._failures.get(penalty_key(ip))
        if entry is None:
            return 0.0
        count, last = entry
        if now - last > PENALTY_FORGET:
            del self._failures[penalty_key(ip)]
            return 0.0
        return min(self.base * 2 ** min(count - 1, 30), self.cap)

    def failed(self, ip: str, now: float) -> int:
        """Count a failure; return the consecutive count."""
        if not ip or self.base <= 0:
            return 0
        key = penalty_key(ip)
        count = self._failures.pop(key, (0, now))[0] + 1
        self._failures[key] = (count, now)
        while len(self._failures) > PENALTY_TABLE_MAX:
            del self._failures[next(iter(self._failures))]
        return count

    def succeeded(self, ip: str) -> None:
        """Forget the failures of ``ip``."""
        if ip:
            self._failures.pop(penalty_key(ip), None)


# ---------------------------------------------------------------- the loop

class Generation:
    """One configuration in use: its responder, penalty settings and
    ``source_timeout``; ``close`` (the source's) runs once no request of this
    generation is in a worker any more."""

    def __init__(self, responder: Responder, *, source_timeout: float = 25.0,
                 failure_delay: float = 2.0, failure_delay_max: float = 15.0,
                 refusal_floor: float = 0.0,
                 description: str = "", close: "Callable[[], None] | None" = None) -> None:
        self.responder = responder
        self.source_timeout = source_timeout
        self.refusal_floor = refusal_floor
        self.failure_delay = failure_delay
        self.failure_delay_max = failure_delay_max
        self.description = description
        self.close = close
        self.busy = 0
        self.retired = False


# _HOLDING: a refusal's reply waits for the refusal floor (answered, not in flight).
_READING, _DELAYED, _WORKING, _HOLDING, _WRITING, _CLOSED = range(6)


class _Connection:
    __slots__ = ("sock", "parser", "request", "state", "generation", "out", "timer",
                 "started", "dispatched", "outcome")

    def __init__(self, sock: socket.socket, now: float) -> None:
        self.sock = sock
        self.parser = server.RequestParser()
        self.request: "server.Request | None" = None
        self.state = _READING
        self.generation: "Generation | None" = None
        self.out = memoryview(b"")
        self.timer = 0
        self.started = now
        self.dispatched = now
        self.outcome: "Outcome | None" = None


class Daemon:
    """Serves ``listener`` (a bound, listening unix socket) until SIGTERM.

    Arguments:
        listener: the socket; made non-blocking here.
        generation: the configuration to start with.
        log: an object with ``line(text, priority)``, ``event(verb, **fields)``
            and ``debug(text)`` (authkit.cli._log.EventLog).
        reload: called on SIGHUP; returns the new :class:`Generation` or raises
            (the reason is logged, the old one stays).
        workers: threads for source calls.
        max_clients: connections held at once; beyond it accepting pauses (new
            clients wait in the listen backlog).
    """

    def __init__(self, listener: socket.socket, generation: Generation, log: object, *,
                 reload: "Callable[[], Generation] | None" = None, workers: int = 8,
                 max_clients: int = 1024) -> None:
        self.listener = listener
        self.generation = generation
        self.penalty = Penalty(generation.failure_delay, generation.failure_delay_max)
        self.log = log
        self.reload = reload
        self.workers = max(1, workers)
        self.max_clients = max(1, max_clients)
        self.selector = selectors.DefaultSelector()
        self.connections: "dict[int, _Connection]" = {}
        self._timers: "list[tuple[float, int, int, _Connection]]" = []
        self._timer_seq = 0
        self._jobs: "queue.SimpleQueue[tuple[_Connection, server.Request, Generation] | None]" = queue.SimpleQueue()
        self._done: "queue.SimpleQueue[tuple[_Connection, Outcome, Generation]]" = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stopping = False
        self._reload_wanted = False
        self._accepting = False
        self._in_flight = 0

    # -- workers ---------------------------------------------------------------

    def _worker(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            conn, request, generation = job
            outcome = generation.responder.answer(request)
            self._done.put((conn, outcome, generation))
            self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"w")
        except (BlockingIOError, OSError):
            pass  # the pipe is full: a wake-up is pending anyway

    # -- timers ----------------------------------------------------------------

    def _arm(self, conn: _Connection, deadline: float) -> None:
        self._timer_seq += 1
        conn.timer = self._timer_seq
        heapq.heappush(self._timers, (deadline, self._timer_seq, id(conn), conn))

    def _expire(self, now: float) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, seq, _, conn = heapq.heappop(timers)
            if conn.state == _CLOSED or conn.timer != seq:
                continue
            self._timed_out(conn, now)

    def _next_timeout(self, now: float) -> "float | None":
        timers = self._timers
        while timers and (timers[0][3].state == _CLOSED or timers[0][3].timer != timers[0][1]):
            heapq.heappop(timers)
        if not timers:
            return None
        return max(0.0, timers[0][0] - now)

    def _timed_out(self, conn: _Connection, now: float) -> None:
        if conn.state == _READING:
            self.log.debug("request timed out: closed")
            self._close(conn)
        elif conn.state == _DELAYED:
            self._dispatch(conn, now)
        elif conn.state == _HOLDING:
            self._reply(conn, conn.outcome, now)  # type: ignore[arg-type]
        elif conn.state == _WORKING:
            request = conn.request
            self.log.event("tempfail", request=request.kind if request else "",
                           user=getattr(request, "name", ""), ip=getattr(request, "remote_ip", ""),
                           reason="no answer from the source within source_timeout")
            self._close(conn)
        elif conn.state == _WRITING:
            self.log.debug("client did not read its reply: closed")
            self._close(conn)

    # -- connections -----------------------------------------------------------

    def _close(self, conn: _Connection) -> None:
        if conn.state == _CLOSED:
            return
        if conn.state in (_READING, _WRITING):
            try:
                self.selector.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
        if conn.state in (_WORKING, _WRITING):
            self._in_flight -= 1
        conn.state = _CLOSED
        self.connections.pop(id(conn), None)
        try:
            conn.sock.close()
        except OSError:
            pass
        if not self._accepting and not self._stopping and len(self.connections) < self.max_clients:
            self._resume_accepting()

    def _accept(self, now: float) -> None:
        while len(self.connections) < self.max_clients:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: try again on the next event
                self.log.line(f"accept failed: {exc.strerror or exc}", 4)
                return
            sock.setblocking(False)
            conn = _Connection(sock, now)
            self.connections[id(conn)] = conn
            self.selector.register(sock, selectors.EVENT_READ, conn)
            self._arm(conn, now + READ_TIMEOUT)
        self._pause_accepting()

    def _pause_accepting(self) -> None:
        if self._accepting:
            self.selector.unregister(self.listener)
            self._accepting = False

    def _resume_accepting(self) -> None:
        if not self._accepting:
            self.selector.register(self.listener, selectors.EVENT_READ, None)
            self._accepting = True

    def _readable(self, conn: _Connection, now: float) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        request = conn.parser.receive_data(data)
        if request is None:
            self._arm(conn, min(now + READ_TIMEOUT, conn.started + REQUEST_TIMEOUT))
            return
        self.selector.unregister(conn.sock)
        conn.request = request
        if request.kind == "refusal" and not request.reply:  # type: ignore[attr-defined]
            self.log.debug(f"request refused: {request.reason}")  # type: ignore[attr-defined]
            conn.state = _DELAYED  # not registered any more
            self._close(conn)
            return
        delay = 0.0
        if request.kind in ("login", "cram", "passwd"):
            delay = self.penalty.delay(request.remote_ip, now)
        if delay > 0:
            conn.state = _DELAYED
            self._arm(conn, now + delay)
            return
        self._dispatch(conn, now)

    def _dispatch(self, conn: _Connection, now: float) -> None:
        generation = self.generation
        conn.generation = generation
        conn.dispatched = now
        conn.state = _WORKING
        self._in_flight += 1
        generation.busy += 1
        limit = generation.source_timeout
        if conn.request is not None and conn.request.kind == "enumerate":
            limit = max(limit, ENUMERATE_TIMEOUT)
        self._arm(conn, now + limit)
        self._jobs.put((conn, conn.request, generation))  # type: ignore[arg-type]

    def _answered(self, conn: _Connection, outcome: Outcome, generation: Generation, now: float) -> None:
        generation.busy -= 1
        if generation.retired and generation.busy == 0:
            self._close_generation(generation)
        if conn.state != _WORKING:
            return  # timed out meanwhile: the client has had its temporary failure
        request = conn.request
        ip = getattr(request, "remote_ip", "")
        if outcome.guess:
            if outcome.result == "ok":
                self.penalty.succeeded(ip)
            elif outcome.result == "fail":
                count = self.penalty.failed(ip, now)
                wait = self.penalty.delay(ip, now)
                if wait:
                    self.log.event("penalty", ip=ip, failures=count, next_delay=f"{wait:g}s")
        self._log(request, outcome)  # type: ignore[arg-type]
        if outcome.guess and outcome.result == "fail" and outcome.reply:
            due = conn.dispatched + generation.refusal_floor
            if due > now:
                self._in_flight -= 1  # the answer is made; only the timer is left
                conn.state, conn.outcome = _HOLDING, outcome
                self._arm(conn, due)
                return
        self._reply(conn, outcome, now)

    def _reply(self, conn: _Connection, outcome: Outcome, now: float) -> None:
        """Send ``outcome``'s reply (or close with nothing sent)."""
        if not outcome.reply:
            self._close(conn)
            return
        if conn.state == _HOLDING:
            self._in_flight += 1
        conn.state = _WRITING
        conn.out = memoryview(outcome.reply)
        self.selector.register(conn.sock, selectors.EVENT_WRITE, conn)
        self._arm(conn, now + WRITE_TIMEOUT)
        self._writable(conn, now)

    def _writable(self, conn: _Connection, now: float) -> None:
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        conn.out = conn.out[sent:]
        if not conn.out:
            self._close(conn)
        else:
            self._arm(conn, now + WRITE_TIMEOUT)

    def _log(self, request: server.Request, outcome: Outcome) -> None:
        fields = {"user": outcome.user, "ip": request.remote_ip,
                  "service": getattr(request, "service", ""), "result": outcome.result}
        if outcome.result == "ok":
            if getattr(self.log, "verbose", False):
                self.log.event(request.kind, **fields)
            return
        if outcome.result in ("tempfail", "error"):
            fields["reason"] = outcome.reason
        self.log.event(request.kind, **fields)

    # -- configuration -----------------------------------------------------------

    def _close_generation(self, generation: Generation) -> None:
        if generation.close is not None:
            try:
                generation.close()
            except Exception as exc:  # noqa: BLE001 - a close failure only gets logged
                self.log.line(f"closing the old source failed: {exc}", 4)
            generation.close = None

    def _do_reload(self) -> None:
        if self.reload is None:
            return
        try:
            new = self.reload()
        except Exception as exc:  # noqa: BLE001 - any failure keeps the old config
            self.log.line(f"reload failed, keeping the old configuration: {exc}", 3)
            return
        old, self.generation = self.generation, new
        self.penalty.base, self.penalty.cap = new.failure_delay, new.failure_delay_max
        old.retired = True
        if old.busy == 0:
            self._close_generation(old)
        self.log.line(f"configuration reloaded: {new.description}")

    # -- main ------------------------------------------------------------------

    def _signal(self, signum: int, frame: object) -> None:
        if signum == signal.SIGHUP:
            self._reload_wanted = True
        else:
            self._stopping = True

    def _begin_stop(self) -> None:
        self._pause_accepting()
        try:
            self.listener.close()
        except OSError:
            pass
        for conn in list(self.connections.values()):
            if conn.state in (_READING, _DELAYED):
                self._close(conn)
            elif conn.state == _HOLDING:  # its FAIL goes out now
                self._reply(conn, conn.outcome, monotonic())  # type: ignore[arg-type]

    def run(self, ready: "Callable[[], None] | None" = None) -> int:
        """Serve until SIGTERM/SIGINT (or :meth:`stop`), then let in-flight
        answers go out and return 0.  ``ready`` is called once accepting."""
        self.listener.setblocking(False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, self)
        self._resume_accepting()
        threads = [threading.Thread(target=self._worker, name=f"authkitd-worker-{index}",
                                    daemon=True) for index in range(self.workers)]
        for thread in threads:
            thread.start()
        handlers = {}
        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                handlers[sig] = signal.signal(sig, self._signal)
            previous_wakeup = signal.set_wakeup_fd(self._wake_w)
        try:
            if ready is not None:
                ready()
            stopped = False
            while True:
                now = monotonic()
                if self._stopping and not stopped:
                    stopped = True
                    self._begin_stop()
                if stopped and self._in_flight == 0:
                    break
                if self._reload_wanted:
                    self._reload_wanted = False
                    self._do_reload()
                events = self.selector.select(self._next_timeout(now))
                now = monotonic()
                for key, mask in events:
                    data = key.data
                    if data is None:
                        self._accept(now)
                    elif data is self:
                        self._drain(now)
                    elif mask & selectors.EVENT_READ and data.state == _READING:
                        self._readable(data, now)
                    elif mask & selectors.EVENT_WRITE and data.state == _WRITING:
                        self._writable(data, now)
                self._drain(now)
                self._expire(now)
        finally:
            if in_main:
                signal.set_wakeup_fd(previous_wakeup)
                for sig, handler in handlers.items():
                    signal.signal(sig, handler)
            for _ in threads:
                self._jobs.put(None)
            for conn in list(self.connections.values()):
                self._close(conn)
            self.selector.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
        self.log.line("stopped")
        return 0

    def stop(self) -> None:
        """Ask :meth:`run` to stop (from any thread)."""
        self._stopping = True
        self._wake()

    def request_reload(self) -> None:
        """Ask :meth:`run` to reload (from any thread), as SIGHUP does."""
        self._reload_wanted = True
        self._wake()

    def _drain(self, now: float) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while True:
            try:
                conn, outcome, generation = self._done.get_nowait()
            except queue.Empty:
                return
            self._answered(conn, outcome, generation, now)


# ------------------------------------------------------------------ socket

def bind_socket(path: str) -> socket.socket:
    """Courier's ``mksocket``: create the directory (0750) if missing, bind
    ``<path>.tmp``, listen, chmod it 0777, rename it to ``path``.  Raises
    ``OSError``."""
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        os.makedirs(directory, exist_ok=True)
        os.chmod(directory, 0o750)
    temporary = path + ".tmp"
    try:
        os.unlink(temporary)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(temporary)
        sock.listen(BACKLOG)
        os.chmod(temporary, 0o777)
        os.rename(temporary, path)
    except BaseException:
        sock.close()
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    sock.set_inheritable(False)
    return sock


__all__ = ["Daemon", "Generation", "Outcome", "Penalty", "Responder", "bind_socket",
           "penalty_key"]
