"""PgsqlSource when the server goes away: requests in flight get TemporaryFailure
(111), so do requests while it is down, and the next ones after it is back
succeed (pooled connections found dead are replaced).  Also the statement
timeout, and many threads sharing one source (authkitd's workers)."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pglab import SLOW_LOGIN_FUNCTION, PgLab, missing_requirements  # noqa: E402

from authkit.errors import BadPassword, TemporaryFailure  # noqa: E402
from authkit.schemes import make_password_hash  # noqa: E402

pytestmark = pytest.mark.integration

APP = "authkit-restart-test"


@pytest.fixture
def pg():
    reasons = missing_requirements()
    if reasons:
        pytest.skip("PgLab unavailable: " + "; ".join(reasons))
    with PgLab() as lab:
        lab.create_courier_schema("mail")
        lab.execute(SLOW_LOGIN_FUNCTION, dbname="mail")
        for login, password in (("alice@example.com", "alice-pw"), ("slow@example.com", "slow-pw"),
                                ("bob@example.com", "bob-pw")):
            lab.add_account("mail", id=login, crypt=make_password_hash(password.encode()),
                            uid=5000, gid=5000, home=f"/home/{login}")
        yield lab


def _source(pg: PgLab, **options):
    from authkit.pgsql.query import PgsqlQueries
    from authkit.pgsql.source import PgsqlSource

    queries = PgsqlQueries(where_clause="slow_for(id)", default_domain="example.com")
    options.setdefault("statement_timeout", 120)
    return PgsqlSource(pg.conninfo("mail") + f" application_name={APP}", queries, **options)


def _active(pg: PgLab, condition: str) -> int:
    rows = pg.execute(f"SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND {condition}",
                      (APP,), dbname="mail")
    return rows[0][0]


class Outcome(threading.Thread):
    def __init__(self, call) -> None:
        super().__init__(daemon=True)
        self.call, self.result, self.error = call, None, None

    def run(self) -> None:
        try:
            self.result = self.call()
        except BaseException as exc:  # recorded for the test to inspect
            self.error = exc


def test_requests_in_flight_get_temporary_failure_and_the_next_ones_succeed(pg: PgLab) -> None:
    source = _source(pg, pool_size=4)
    try:
        # fill the pool with connections that the restart will kill
        warm = [Outcome(lambda: source.authenticate("alice", b"alice-pw")) for _ in range(4)]
        for t in warm:
            t.start()
        for t in warm:
            t.join(30)
            assert t.error is None, t.error

        # a password change waits on a row lock held by another session
        holder = pg.connect("mail")
        holder.autocommit = False
        holder.execute("SELECT * FROM passwd WHERE id = 'bob@example.com' FOR UPDATE")
        lookup = Outcome(lambda: source.lookup("slow"))
        change = Outcome(lambda: source.change_password("bob", b"bob-pw", b"changed-pw"))
        lookup.start()
        change.start()
        pg.wait_for(lambda: _active(pg, "state = 'active' AND wait_event = 'PgSleep'") == 1
                    and _active(pg, "wait_event_type = 'Lock'") == 1, what="two requests in flight")

        pg.stop("fast")
        for t in (lookup, change):
            t.join(60)
            assert not t.is_alive()
            assert isinstance(t.error, TemporaryFailure), t.error
        with pytest.raises(TemporaryFailure, match="cannot connect"):
            source.authenticate("alice", b"alice-pw")
        with pytest.raises(TemporaryFailure):
            source.lookup("alice")

        pg.start()
        holder.close()
        # pooled connections are all dead now: each request replaces one
        for _ in range(8):
            assert source.authenticate("alice", b"alice-pw").address == "alice@example.com"
        # the change in flight never committed
        assert source.authenticate("bob", b"bob-pw").address == "bob@example.com"
        with pytest.raises(BadPassword):
            source.authenticate("bob", b"changed-pw")
        assert source.change_password("bob", b"bob-pw", b"changed-pw").address == "bob@example.com"
        assert source.authenticate("bob", b"changed-pw")
    finally:
        source.close()


def test_statement_timeout_is_a_temporary_failure_and_the_source_goes_on(pg: PgLab) -> None:
    source = _source(pg, statement_timeout=0.5)
    try:
        started = time.monotonic()
        with pytest.raises(TemporaryFailure, match="statement timeout"):
            source.lookup("slow")
        assert time.monotonic() - started < 30
        assert source.authenticate("alice", b"alice-pw").uid == 5000
    finally:
        source.close()


def test_threads_share_one_source_and_its_small_pool(pg: PgLab) -> None:
    source = _source(pg, pool_size=3)
    errors: list = []

    def worker(n: int) -> None:
        try:
            for i in range(30):
                if (n + i) % 3 == 0:
                    try:
                        source.authenticate("alice", b"wrong")
                        errors.append("wrong password accepted")
                    except BadPassword:
                        pass
                else:
                    account = source.authenticate("bob" if i % 2 else "alice",
                                                  b"bob-pw" if i % 2 else b"alice-pw")
                    if account.address != ("bob@example.com" if i % 2 else "alice@example.com"):
                        errors.append(account.address)
        except BaseException as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors[:3]
        assert _active(pg, "true") <= 3  # only the idle pool stays connected
    finally:
        source.close()
    pg.wait_for(lambda: _active(pg, "true") == 0, what="connections closed")


def test_courier_authpgsql_rejects_logins_while_down_and_after_a_restart(pg: PgLab, courier_lab_factory) -> None:
    """What docs/pgsql.md says of Courier, shown on Courier's own daemon (one
    worker, so one connection): the first login after a server restart fails
    with FAIL on its stale connection (a rejection, as for a wrong password) and
    the next one reconnects; while PostgreSQL is down a login gets FAIL and PRE
    no reply.  PgsqlSource's first request after the restart already works, and
    while down every request is a temporary failure."""
    from authkit.authdaemon.source import AuthdaemonSource
    from pglab import write_authpgsqlrc

    lab = courier_lab_factory(daemons=1)
    write_authpgsqlrc(lab.etc_dir, {"PGSQL_CONNECTION": pg.conninfo("mail"), "PGSQL_USER_TABLE": "passwd",
                                    "PGSQL_CRYPT_PWFIELD": "crypt", "DEFAULT_DOMAIN": "example.com"})
    lab.write_authdaemonrc(authmodulelist="authpgsql")
    lab.start_daemon()
    courier = AuthdaemonSource(str(lab.socket_path), remote_ip="")
    ours = _source(pg)
    try:
        assert courier.authenticate("alice", b"alice-pw").address == "alice@example.com"
        assert ours.authenticate("alice", b"alice-pw").address == "alice@example.com"
        pg.restart()
        with pytest.raises(BadPassword):
            courier.authenticate("alice", b"alice-pw")      # FAIL on the stale connection
        assert ours.authenticate("alice", b"alice-pw").address == "alice@example.com"
        assert courier.authenticate("alice", b"alice-pw").address == "alice@example.com"

        pg.stop("fast")
        with pytest.raises(BadPassword):
            courier.authenticate("alice", b"alice-pw")      # FAIL: looks like a wrong password
        with pytest.raises(TemporaryFailure):
            courier.lookup("alice")
        with pytest.raises(TemporaryFailure):
            ours.authenticate("alice", b"alice-pw")
        with pytest.raises(TemporaryFailure):
            ours.lookup("alice")
        pg.start()
        assert ours.authenticate("alice", b"alice-pw").address == "alice@example.com"
        assert courier.authenticate("alice", b"alice-pw").address == "alice@example.com"
    finally:
        ours.close()


@pytest.mark.parametrize("clause, message", [
    ("SELECT id, crypt, '' FROM passwd WHERE id = '$(local_part)@$(domain)'", "3 columns"),
    ("SELECT id, crypt, '', 'abc', gid, home FROM passwd WHERE id = '$(local_part)@$(domain)'",
     "not a decimal number"),
    ("SELECT id, crypt, '', uid, gid, home FROM nosuchtable WHERE id = '$(local_part)'", "nosuchtable"),
])
def test_a_select_clause_the_source_cannot_read_is_a_temporary_failure(pg: PgLab, clause: str,
                                                                      message: str) -> None:
    from authkit.pgsql.query import PgsqlQueries
    from authkit.pgsql.source import PgsqlSource

    source = PgsqlSource(pg.conninfo("mail"), PgsqlQueries(select_clause=clause, default_domain="example.com"))
    try:
        with pytest.raises(TemporaryFailure, match=message):
            source.authenticate("alice", b"alice-pw")
        with pytest.raises(TemporaryFailure, match=message):
            source.lookup("alice")
    finally:
        source.close()
