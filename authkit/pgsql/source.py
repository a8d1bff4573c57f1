"""PostgreSQL accounts as an :class:`~authkit.source.AccountSource`, the way
Courier's ``authpgsql`` module reads them (authpgsqllib.cpp), over psycopg 3.

* :meth:`PgsqlSource.lookup` is Courier's PRE: the first row of the SELECT; no
  row, or an empty home, is ``UnknownUser``.
* :meth:`PgsqlSource.authenticate` is Courier's ``docheckpw``: a non-empty crypt
  column is checked through the scheme registry and decides alone; else a
  non-empty clear column must equal the password; else (no password) the login
  fails.
* :meth:`PgsqlSource.authenticate_cram` needs the clear column (as Courier: the
  HMAC is computed from the clear password).
* :meth:`PgsqlSource.change_password`: in one transaction, the row (locked by
  ``FOR UPDATE`` under the default query), the old password checked as above,
  the caller's ``check_account`` run on its account, the UPDATE (Courier's
  default or ``pgsql_chpass_clause``) which must touch exactly one row, the
  row read back, COMMIT.  The new hash is ``hash_scheme`` (Courier keeps the old
  hash's scheme where it can; authkit does not downgrade).
* :meth:`PgsqlSource.enumerate`: a server-side cursor, rows without a name or a
  home skipped as Courier does.

``ADDRESS`` is the login column of the row (Courier's ``aa.address``), so with
``pgsql_default_domain`` a login ``alice`` answers as ``alice@example.com``.
NAME is cut at its first comma and OPTIONS merged with ``default_options`` as
authdaemond does.  The clear column is never handed out (Courier's PRE sends it
as PASSWD2).

Connections: a small locked pool shared by the threads of authkitd (each
request takes a connection, gives it back when done; at most ``pool_size``
idle ones are kept).  Every connection has ``statement_timeout`` set.  A lost
connection or a timeout is ``TemporaryFailure`` for the request in flight; the
broken connection is dropped, and a request that found an idle pooled
connection dead (the server restarted meanwhile) retries once on a new one,
unless the COMMIT of a change was already sent.  Client values travel only as
bound parameters (see :mod:`authkit.pgsql.query`).

What it is not: a cache, or a connection-count limiter (authkitd's worker count
bounds the connections in use).
"""

from __future__ import annotations

import hmac
import threading

from .._heavy import import_heavy
from ..errors import ConfigError

psycopg = import_heavy("psycopg", kind="pgsql", what="psycopg 3", debian="python3-psycopg", extra="pgsql")
import psycopg.conninfo
from psycopg.pq import TransactionStatus

from ..account import CRAM_ALGORITHMS, Account, fullname_from_gecos, merge_options
from ..errors import BadPassword, Misuse, PolicyRefused, TemporaryFailure, UnknownUser
from ..source import AccountSource
from .query import PgsqlQueries, Statement, UnsendableValue

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Iterator

#: A sha512-crypt hash of a random password nobody knows, verified for an unknown
#: user or one without a password, so those cost what a wrong password costs.
_DUMMY_HASH = (
    "$6$/XfRdOoB2XQcs.Z4$WzK5NOZnDSS12k.9rBnD2VEOV8bNW1IpC/AzyoaMiwev4LE8/"
    "ub6aoom4sWK6OLYKcXqf3ehwZazaJifjf46E."
)

_IDLE = TransactionStatus.IDLE


def _dummy_verify(password: bytes) -> None:
    from ..schemes import verify_password

    verify_password(password or b"x", _DUMMY_HASH)


def _text(value: object) -> str:
    """A column as Courier sees it (PQgetvalue): NULL is "", booleans t/f."""
    if value is None:
        return ""
    if value is True or value is False:
        return "t" if value else "f"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _number(value: object) -> "int | None":
    """uid/gid: decimal, at most 10 digits (Courier would read garbage as 0,
    i.e. root); None when it is not."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 0 <= value <= 0xFFFFFFFF else None
    text = _text(value).strip()
    if not text.isdigit() or not text.isascii() or len(text) > 10:
        return None
    number = int(text)
    return number if number <= 0xFFFFFFFF else None


class _Ambiguous(Exception):
    """The connection broke after COMMIT was sent: the outcome is unknown."""


class _Pool:
    """Idle connections behind a lock.  ``take()`` gives (connection, reused)."""

    def __init__(self, connect: "Callable[[], psycopg.Connection]", size: int) -> None:
        self._connect = connect
        self._size = size
        self._idle: list = []
        self._lock = threading.Lock()
        self._closed = False

    def take(self) -> "tuple[psycopg.Connection, bool]":
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn, True
        return self._connect(), False

    def give(self, conn: "psycopg.Connection") -> None:
        """Keep ``conn`` if it is healthy, idle and there is room; else close it."""
        keep = (not conn.closed and not conn.broken
                and conn.info.transaction_status == _IDLE)
        if keep:
            with self._lock:
                if not self._closed and len(self._idle) < self._size:
                    self._idle.append(conn)
                    return
        self.discard(conn)

    @staticmethod
    def discard(conn: "psycopg.Connection") -> None:
        try:
            conn.close()
        except Exception:
            pass

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            self.discard(conn)


def _reason(exc: BaseException) -> str:
    """What went wrong, without the DETAIL or the statement (either may quote a
    value, even a password)."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    text = primary or str(exc).split("\n", 1)[0]
    return text.strip() or exc.__class__.__name__


class PgsqlSource(AccountSource):
    """Accounts from PostgreSQL with Courier authpgsql's semantics.

    Arguments:
        conninfo: a libpq connection string (Courier's PGSQL_CONNECTION).
        queries: the statements (:class:`~authkit.pgsql.query.PgsqlQueries`).
        connect_kwargs: more libpq parameters (host, port, user, password,
            dbname), overriding those of ``conninfo``.
        connect_timeout: seconds for a connection to be made.
        statement_timeout: seconds a statement may run (0: no limit).
        client_encoding: the client character set (Courier's
            PGSQL_CHARACTER_SET); "" keeps libpq's.
        default_options: Courier's DEFAULTOPTIONS, merged into OPTIONS.
        hash_scheme: the scheme of the crypt column written by a change.
        pool_size: idle connections kept for reuse.

    Raises ``ConfigError`` for a malformed conninfo or a bad number.  Nothing
    connects until the first request.
    """

    def __init__(self, conninfo: str, queries: PgsqlQueries, *,
                 connect_kwargs: "dict[str, str] | None" = None, connect_timeout: float = 10.0,
                 statement_timeout: float = 10.0, client_encoding: str = "UTF8",
                 default_options: str = "", hash_scheme: str = "sha512-crypt",
                 pool_size: int = 8) -> None:
        kwargs = {k: v for k, v in (connect_kwargs or {}).items() if v}
        try:
            params = psycopg.conninfo.conninfo_to_dict(conninfo, **kwargs)
        except psycopg.ProgrammingError as exc:
            raise ConfigError(f"pgsql_connection: {_reason(exc)}") from None
        if not connect_timeout > 0:
            raise ConfigError("pgsql_connect_timeout must be more than 0 seconds")
        if statement_timeout < 0:
            raise ConfigError("pgsql_statement_timeout must not be negative")
        if pool_size < 0:
            raise ConfigError("pgsql_pool_size must not be negative")
        self.queries = queries
        self.default_options = default_options
        self.hash_scheme = hash_scheme
        self.statement_timeout = statement_timeout
        self._conninfo = conninfo
        self._kwargs = dict(kwargs)
        self._kwargs["connect_timeout"] = str(max(1, int(round(connect_timeout))))
        if client_encoding:
            self._kwargs["client_encoding"] = client_encoding
        self._pool = _Pool(self._connect, pool_size)
        database = params.get("dbname") or params.get("user") or "(default database)"
        self.description = f"pgsql {database} on {params.get('host') or '(default host)'}"

    @classmethod
    def from_settings(cls, settings: object) -> "PgsqlSource":
        """The source that an authkit.conf with ``source = pgsql`` describes (the
        ``pgsql_*`` keys; see authkit.conf(5)).  Raises ``ConfigError``."""
        get = lambda key: getattr(settings, key)  # noqa: E731
        queries = PgsqlQueries(
            user_table=get("pgsql_user_table"), login_field=get("pgsql_login_field"),
            crypt_field=get("pgsql_crypt_pwfield"), clear_field=get("pgsql_clear_pwfield"),
            uid_field=get("pgsql_uid_field"), gid_field=get("pgsql_gid_field"),
            home_field=get("pgsql_home_field"), maildir_field=get("pgsql_maildir_field"),
            defaultdelivery_field=get("pgsql_defaultdelivery"),
            name_field=get("pgsql_name_field"), quota_field=get("pgsql_quota_field"),
            options_field=get("pgsql_auxoptions_field"), where_clause=get("pgsql_where_clause"),
            default_domain=get("pgsql_default_domain"),
            select_clause=get("pgsql_select_clause"), chpass_clause=get("pgsql_chpass_clause"),
            enumerate_clause=get("pgsql_enumerate_clause"))
        return cls(
            get("pgsql_connection"), queries,
            connect_kwargs={"host": get("pgsql_host"), "port": get("pgsql_port"),
                            "user": get("pgsql_user"), "password": get("pgsql_password"),
                            "dbname": get("pgsql_database")},
            connect_timeout=get("pgsql_connect_timeout"),
            statement_timeout=get("pgsql_statement_timeout"),
            client_encoding=get("pgsql_character_set"),
            default_options=get("default_options"), hash_scheme=get("hash_scheme"),
            pool_size=get("pgsql_pool_size"))

    # -- connections -----------------------------------------------------------

    def _connect(self) -> "psycopg.Connection":
        try:
            conn = psycopg.connect(self._conninfo, autocommit=True, **self._kwargs)
        except psycopg.Error as exc:
            raise TemporaryFailure(f"{self.description}: cannot connect: {_reason(exc)}") from None
        try:
            conn.execute("SELECT set_config('statement_timeout', %s, false)",
                         (str(int(self.statement_timeout * 1000)),))
        except psycopg.Error as exc:
            _Pool.discard(conn)
            raise TemporaryFailure(f"{self.description}: {_reason(exc)}") from None
        return conn

    def _run(self, work: "Callable[[psycopg.Connection], object]") -> object:
        """``work(connection)`` on a pooled connection; once more on a new one if
        the pooled one turns out dead.  psycopg errors become TemporaryFailure."""
        conn, reused = self._pool.take()
        try:
            try:
                result = work(conn)
            except psycopg.Error:
                if not (reused and conn.broken):
                    raise
                _Pool.discard(conn)
                conn = self._connect()
                result = work(conn)
        except _Ambiguous as exc:
            _Pool.discard(conn)
            raise TemporaryFailure(
                f"{self.description}: connection lost during COMMIT ({exc}); "
                "the change may or may not be stored") from None
        except psycopg.Error as exc:
            _Pool.discard(conn)
            raise TemporaryFailure(f"{self.description}: {_reason(exc)}") from None
        except Exception:  # a verdict (BadPassword...) raised by work: keep the connection
            self._pool.give(conn)
            raise
        except BaseException:
            _Pool.discard(conn)
            raise
        self._pool.give(conn)
        return result

    # -- rows ------------------------------------------------------------------

    def _fetch_row(self, conn: "psycopg.Connection", statement: Statement) -> "tuple | None":
        cur = conn.execute(statement.sql, statement.params)
        # pgresult.nfields, not len(cur.description): that builds a Column per
        # column on every call (a third of a lookup's client time)
        result = cur.pgresult
        columns = result.nfields if result is not None else 0
        if columns < 6:
            raise TemporaryFailure(
                f"{self.description}: the SELECT returns {columns} columns, "
                "Courier's order needs at least 6")
        row = cur.fetchone()
        cur.close()
        return row

    def _account(self, row: "tuple | None", name: str) -> "tuple[Account, str, str]":
        """(Account, crypt, clear) of a row; ``UnknownUser`` without one or
        without a home (Courier's "user not found")."""
        if row is None:
            raise UnknownUser(f"no account {name!r}")
        values = list(row) + [None] * (10 - len(row))
        home = _text(values[5])
        if not home:
            raise UnknownUser(f"no account {name!r} (no home)")
        uid, gid = _number(values[3]), _number(values[4])
        if uid is None or gid is None:
            raise TemporaryFailure(f"{self.description}: account {name!r} has a uid or gid "
                                   "that is not a decimal number")
        crypt, clear = _text(values[1]), _text(values[2])
        account = Account(
            address=_text(values[0]), uid=uid, gid=gid, home=home,
            maildir=_text(values[6]), quota=_text(values[7]),
            fullname=fullname_from_gecos(_text(values[8])),
            options=merge_options(_text(values[9]), self.default_options),
            encrypted_password=crypt)
        return account, crypt, clear

    def _select(self, name: str, service: str) -> "tuple[Account, str, str]":
        try:
            statement = self.queries.select(name, service)
        except UnsendableValue:
            raise UnknownUser(f"no account {name!r}") from None
        row = self._run(lambda conn: self._fetch_row(conn, statement))
        return self._account(row, name)  # type: ignore[arg-type]

    @staticmethod
    def _check(password: bytes, crypt: str, clear: str) -> None:
        """Courier's docheckpw: crypt column, else clear column, else refuse."""
        if crypt:
            from ..schemes import verify_password

            if not verify_password(password, crypt):
                raise BadPassword("password mismatch")
        elif clear:
            if not hmac.compare_digest(password, clear.encode("utf-8")):
                raise BadPassword("password mismatch")
        else:
            _dummy_verify(password)
            raise BadPassword("the account has no password")

    # -- AccountSource ---------------------------------------------------------

    def lookup(self, name: str, service: str = "login") -> Account:
        """Courier's PRE: the account of ``name`` (``@DEFAULT_DOMAIN`` added to a
        name without ``@`` by the default query).  Raises ``UnknownUser`` or
        ``TemporaryFailure``."""
        return self._select(name, service)[0]

    def authenticate(self, name: str, password: bytes, service: str = "login") -> Account:
        """The account, if ``password`` matches (crypt column, else clear
        column).  Raises ``UnknownUser`` (after a dummy verify), ``BadPassword``
        (also for an empty password or none stored) or ``TemporaryFailure``."""
        if not password:
            raise BadPassword("empty password")
        try:
            account, crypt, clear = self._select(name, service)
        except UnknownUser:
            _dummy_verify(password)
            raise
        self._check(password, crypt, clear)
        return account

    def authenticate_cram(self, challenge: bytes, name: str, response_hex: str,
                          algorithm: str, service: str = "login") -> Account:
        """The account, if ``response_hex`` is HMAC-<algorithm>(clear column,
        challenge).  Raises ``Misuse`` (unknown algorithm), ``UnknownUser``,
        ``BadPassword`` (mismatch, or no clear password) or ``TemporaryFailure``."""
        if algorithm not in CRAM_ALGORITHMS:
            raise Misuse(f"unknown CRAM algorithm {algorithm!r} (md5, sha1, sha256)")
        account, _crypt, clear = self._select(name, service)
        if not clear:
            raise BadPassword("CRAM needs a clear password, and the account has none")
        expected = hmac.new(clear.encode("utf-8"), challenge, algorithm).hexdigest()
        if not hmac.compare_digest(expected, response_hex.strip().lower()):
            raise BadPassword("CRAM response mismatch")
        return account

    def change_password(self, name: str, old: bytes, new: bytes, service: str = "login",
                        *, check_account: "Callable[[Account], None] | None" = None) -> Account:
        """Check ``old`` and store ``new`` in one transaction (see the module
        docstring); ``check_account(account)``, if given, is called inside it on
        the locked row's account after ``old`` checked out, before the UPDATE
        (a refusal rolls back).  Raises ``UnknownUser``, ``BadPassword``, ``PolicyRefused``
        (a new password that is empty, holds a NUL or is not UTF-8 where a clear
        column keeps it), ``TemporaryFailure`` (no answer; the UPDATE touched
        other than one row; no way to change, see ``chpass_problem``)."""
        if self.queries.chpass_problem:
            raise TemporaryFailure(f"{self.description}: {self.queries.chpass_problem}")
        if not new or b"\0" in new:
            raise PolicyRefused("the new password is empty or holds a NUL byte")
        try:
            new_text = new.decode("utf-8")
        except UnicodeDecodeError:
            raise PolicyRefused("the new password is not UTF-8 text") from None
        try:
            select = self.queries.select(name, service, lock=True)
        except UnsendableValue:
            _dummy_verify(old)
            raise UnknownUser(f"no account {name!r}") from None
        new_crypt = ""
        if self.queries.chpass_needs_crypt:
            from ..schemes import make_password_hash

            try:
                new_crypt = make_password_hash(new, self.hash_scheme)
            except ValueError as exc:
                raise ConfigError(f"hash_scheme: {exc}") from None
        try:
            update = self.queries.chpass(name, new_text, new_crypt)
        except UnsendableValue:
            raise PolicyRefused("a value holds a NUL character") from None

        def work(conn: "psycopg.Connection") -> Account:
            account, crypt, clear = self._account(self._fetch_row(conn, select), name)
            self._check(old, crypt, clear)
            if check_account is not None:
                check_account(account)
            cur = conn.execute(update.sql, update.params)
            if cur.rowcount != 1:
                raise TemporaryFailure(
                    f"{self.description}: the password UPDATE touched {cur.rowcount} rows, "
                    "not 1; nothing changed")
            return self._account(self._fetch_row(conn, self.queries.select(name, service)), name)[0]

        try:
            return self._run(lambda conn: self._in_transaction(conn, work))  # type: ignore[return-value]
        except UnknownUser:
            _dummy_verify(old)
            raise

    @staticmethod
    def _in_transaction(conn: "psycopg.Connection",
                        work: "Callable[[psycopg.Connection], object]") -> object:
        """``work(conn)`` between BEGIN and COMMIT (ROLLBACK on any error).  A
        connection break while COMMIT is in flight raises ``_Ambiguous``."""
        conn.autocommit = False
        try:
            try:
                result = work(conn)
            except BaseException:
                if not conn.broken and not conn.closed:
                    conn.rollback()
                raise
            try:
                conn.commit()
            except psycopg.OperationalError as exc:
                raise _Ambiguous(_reason(exc)) from None
            return result
        finally:
            if not conn.broken and not conn.closed:
                conn.autocommit = True

    def enumerate(self) -> "Iterator[Account]":
        """Every account row (name, uid, gid, home, maildir, options) as it
        arrives from a server-side cursor; rows with no name or home, or with a
        uid/gid that is not a number, are skipped.  Raises ``TemporaryFailure``
        (after yielding what came before) if the listing breaks off."""
        statement = self.queries.enumerate()
        conn, reused = self._pool.take()
        yielded = False
        try:
            while True:
                try:
                    with conn.transaction():
                        with conn.cursor(name="authkit_enumerate") as cur:
                            cur.itersize = 500
                            cur.execute(statement.sql, statement.params)
                            for row in cur:
                                account = self._enumerated(row)
                                if account is not None:
                                    yielded = True
                                    yield account
                    break
                except psycopg.Error:
                    if yielded or not (reused and conn.broken):
                        raise
                    _Pool.discard(conn)
                    conn, reused = self._connect(), False
        except psycopg.Error as exc:
            _Pool.discard(conn)
            raise TemporaryFailure(f"{self.description}: enumerate: {_reason(exc)}") from None
        except BaseException:
            _Pool.discard(conn)
            raise
        self._pool.give(conn)

    def _enumerated(self, row: tuple) -> "Account | None":
        values = list(row) + [None] * (6 - len(row))
        name, home = _text(values[0]), _text(values[3])
        uid, gid = _number(values[1]), _number(values[2])
        if not name or not home or uid is None or gid is None:
            return None
        return Account(address=name, uid=uid, gid=gid, home=home, maildir=_text(values[4]),
                       options=_text(values[5]))

    def close(self) -> None:
        """Close every idle connection.  Safe to call twice."""
        self._pool.close()

    def __repr__(self) -> str:
        return f"PgsqlSource({self.description!r})"


__all__ = ["PgsqlSource"]
