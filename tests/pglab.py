"""PgLab: a private PostgreSQL cluster for one test (Debian's postgresql 15).

The cluster lives in a fresh directory under /tmp (pytest's tmp_path is 0700 root
and the server must run as the ``postgres`` user, who could not reach it), made
with ``initdb`` and started with ``pg_ctl start -w`` as ``postgres`` through
``setpriv``.  It listens on no TCP address (``listen_addresses=''``): only on a
unix socket in its own directory, so it never meets the machine's cluster.
Authentication is ``trust`` on that socket (the directory is the boundary).
``close()`` stops it (``pg_ctl stop -m fast``) and removes the directory.

    with PgLab() as pg:
        pg.create_courier_schema("mail")
        conninfo = pg.conninfo("mail")

What it is not: a sandbox, or tuned for speed beyond ``fsync=off``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "postgres"
PORT = 5432  # names the socket file only: nothing listens on TCP

#: Courier's suggested table (README.authmysqlrc, "both MySQL and Postgres use the
#: same suggested layout"), with varchar instead of MySQL's char: PostgreSQL's
#: char(n) pads values with blanks on output.
COURIER_SCHEMA = """
CREATE TABLE passwd (
    id              varchar(128) DEFAULT '' NOT NULL PRIMARY KEY,
    crypt           varchar(128) DEFAULT '' NOT NULL,
    clear           varchar(128) DEFAULT '' NOT NULL,
    name            varchar(128) DEFAULT '' NOT NULL,
    uid             int DEFAULT 65534 NOT NULL,
    gid             int DEFAULT 65534 NOT NULL,
    home            varchar(255) DEFAULT '' NOT NULL,
    maildir         varchar(255) DEFAULT '' NOT NULL,
    defaultdelivery varchar(255) DEFAULT '' NOT NULL,
    quota           varchar(255) DEFAULT '' NOT NULL,
    options         varchar(255) DEFAULT '' NOT NULL,
    server          varchar(64) DEFAULT 'mail1' NOT NULL
)
"""

COLUMNS = ("id", "crypt", "clear", "name", "uid", "gid", "home", "maildir",
           "defaultdelivery", "quota", "options", "server")

#: ``slow_for(login)``: true, after sleeping 60 s for a login starting with
#: "slow" (a WHERE clause ``slow_for(id)`` keeps such a request in flight while a
#: test stops the server under it).  Run it with ``execute(..., dbname=...)``.
SLOW_LOGIN_FUNCTION = """
CREATE FUNCTION slow_for(login text) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_sleep(CASE WHEN login LIKE 'slow%' THEN 60 ELSE 0 END);
    RETURN true;
END
$$
"""


class PgLabError(RuntimeError):
    pass


def missing_requirements() -> list[str]:
    """Why a PgLab cannot run here ([] when it can)."""
    reasons = []
    if os.geteuid() != 0:
        reasons.append("not root (the server runs as user postgres through setpriv)")
    for name in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / name).exists():
            reasons.append(f"{PG_BIN / name} missing (Debian package postgresql-15)")
    if not shutil.which("setpriv"):
        reasons.append("setpriv missing (util-linux)")
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        reasons.append(f"no system user {PG_USER}")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        reasons.append("psycopg not installed (test extra)")
    return reasons


class PgLab:
    """One private cluster; see the module docstring."""

    def __init__(self) -> None:
        entry = pwd.getpwnam(PG_USER)
        self._uid, self._gid = entry.pw_uid, entry.pw_gid
        self.root = Path(tempfile.mkdtemp(prefix="pglab-", dir="/tmp"))
        os.chmod(self.root, 0o755)
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log_path = self.root / "server.log"
        self.socket_dir.mkdir(mode=0o755)
        for path in (self.root, self.socket_dir):
            os.chown(path, self._uid, self._gid)
        self.running = False
        try:
            self._as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data_dir), "-U", PG_USER,
                               "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])
            self.start()
        except BaseException:
            self.close()
            raise

    def _as_postgres(self, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            ["setpriv", f"--reuid={self._uid}", f"--regid={self._gid}", "--clear-groups", "--", *argv],
            capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout, cwd=self.root,
            env={"PATH": "/usr/bin:/bin", "LANG": "C", "LC_ALL": "C", "HOME": str(self.root)},
        )
        if proc.returncode != 0:
            raise PgLabError(f"{argv[0]} exited {proc.returncode}: "
                             f"{proc.stderr.decode(errors='replace').strip()} {self.server_log()[-2000:]}")
        return proc

    def server_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # ---------------------------------------------------------------- server

    def start(self) -> None:
        """``pg_ctl start -w``: returns once the server accepts connections."""
        options = (f"-k {self.socket_dir} -p {PORT} -c listen_addresses='' -c fsync=off "
                   "-c full_page_writes=off -c synchronous_commit=off -c max_connections=60")
        self._as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_path),
                           "-o", options, "-w", "-t", "120", "start"])
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m MODE -w`` (fast: sessions are terminated)."""
        self._as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-m", mode,
                           "-w", "-t", "120", "stop"])
        self.running = False

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server if it runs and remove the directory.  Safe twice."""
        try:
            if self.running:
                self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "PgLab":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --------------------------------------------------------------- clients

    def conninfo(self, dbname: str = "postgres") -> str:
        """A libpq conninfo string for ``dbname`` on the lab's socket."""
        return f"host={self.socket_dir} port={PORT} dbname={dbname} user={PG_USER}"

    def connect(self, dbname: str = "postgres"):
        import psycopg

        return psycopg.connect(self.conninfo(dbname), autocommit=True, connect_timeout=30)

    def execute(self, sql: str, params: "tuple | list | None" = None, dbname: str = "postgres") -> list:
        """Run one statement (autocommit); the rows it returns, if any."""
        with self.connect(dbname) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def create_database(self, dbname: str) -> None:
        self.execute(f'CREATE DATABASE "{dbname}"')

    def create_courier_schema(self, dbname: str = "mail") -> None:
        """Database ``dbname`` with Courier's ``passwd`` table (COURIER_SCHEMA)."""
        self.create_database(dbname)
        self.execute(COURIER_SCHEMA, dbname=dbname)

    def add_account(self, dbname: str = "mail", **values: object) -> None:
        """INSERT one row into ``passwd`` (columns of COLUMNS; defaults for the rest)."""
        unknown = set(values) - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown columns {sorted(unknown)}")
        names = ", ".join(values)
        marks = ", ".join(["%s"] * len(values))
        self.execute(f"INSERT INTO passwd ({names}) VALUES ({marks})", list(values.values()), dbname)

    def wait_for(self, condition, timeout: float = 30, what: str = "condition") -> None:
        """Poll ``condition()`` until true, at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.02)
        raise PgLabError(f"timed out waiting for {what}")


# ------------------------------------------------------------ Courier's side

def write_authpgsqlrc(etc_dir: Path, keys: "dict[str, str]") -> Path:
    """``<etc_dir>/authpgsqlrc`` (in a CourierLab: /etc/courier/authpgsqlrc) with
    ``KEY value`` lines and the MARKER section authpgsql insists on."""
    lines = []
    for key, value in keys.items():
        if "\n" in value:
            raise ValueError("one line per value")
        lines.append(f"{key}\t{value}")
    lines.append("##NAME: MARKER:0")
    path = Path(etc_dir) / "authpgsqlrc"
    path.write_text("\n".join(lines) + "\n")
    os.chmod(path, 0o600)
    return path


def authkit_settings(keys: "dict[str, str]", **extra: object):
    """authkit Settings for the same configuration as authpgsqlrc ``keys``:
    each key lower-cased (DEFAULT_DOMAIN is pgsql_default_domain)."""
    from authkit.config import Settings

    values: dict[str, object] = {}
    for key, value in keys.items():
        name = "pgsql_default_domain" if key == "DEFAULT_DOMAIN" else key.lower()
        values[name] = value
    values.update(extra)
    values.setdefault("source", "pgsql")
    return Settings(**values)


def authkit_conf_text(keys: "dict[str, str]", **extra: object) -> str:
    """An authkit.conf for the same configuration (``source = pgsql``)."""
    lines = ["source = pgsql"]
    for key, value in keys.items():
        name = "pgsql_default_domain" if key == "DEFAULT_DOMAIN" else key.lower()
        lines.append(f"{name} = {value}")
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"
