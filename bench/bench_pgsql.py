#!/usr/bin/env python3
"""Benchmark: logins per second and latency through authkitd on PostgreSQL, beside
Courier's authdaemond with authpgsql, on the same database, in one run.

Not a test: run it by hand (as root; Courier authlib, courier-authlib-postgresql
and PostgreSQL 15 installed) and copy the table it prints into bench/README.md,
section "PostgreSQL source".

What it does:

1. starts a private PostgreSQL cluster (tests/pglab.py) with Courier's table and
   ``--users`` accounts, each with its own sha512-crypt hash (authkit's default
   scheme; Courier verifies it through crypt(3) too);
2. starts Courier's authdaemond (``authmodulelist="authpgsql"``,
   ``daemons=--daemons``, Courier's default 5) in a CourierLab, and authkitd
   (``bin/authkitd``, ``source = pgsql``, ``workers=--workers``) on its own
   socket, both reading that database;
3. for each daemon in turn, ``--rounds`` times in alternation: ``--clients``
   threads each send ``AUTH`` login requests for random accounts (one request per
   connection, as imapd does, through authkit's authdaemond client) until
   ``--requests`` requests are done; every reply must be the right account;
4. prints logins/s (requests / wall time of the round) and p50/p99 of the
   per-request latency, the median round of each daemon, and the ratios.

The client threads run in this Python process and share the machine's cores
with the daemons; both daemons pay the same client.

Usage: ``python3 bench/bench_pgsql.py [--users N] [--requests N] [--clients N]
[--rounds N] [--daemons N] [--workers N]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))

from _common import beside_courier, common_daemon_options, print_daemon_table  # noqa: E402

from authkit.schemes import make_password_hash  # noqa: E402


def load(pg, users: int) -> list[tuple[str, str]]:
    pg.create_courier_schema("mail")
    accounts = [(f"user{i}@example.com", f"pw-{i}-secret") for i in range(users)]
    rows = [(login, make_password_hash(pw.encode()), 5000, 5000, f"/home/vmail/{login}")
            for login, pw in accounts]
    with pg.connect("mail") as conn:
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO passwd (id, crypt, uid, gid, home) VALUES (%s, %s, %s, %s, %s)", rows)
    return accounts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_daemon_options(parser, users=2000)
    parser.add_argument("--pool", type=int, default=0,
                        help="authkitd's pgsql_pool_size (default: authkit's own default)")
    args = parser.parse_args()

    from courierlab import CourierLab
    from pglab import PgLab, authkit_conf_text, write_authpgsqlrc

    root = Path(tempfile.mkdtemp(prefix="bench-pgsql-"))
    with PgLab() as pg, CourierLab(root / "lab", daemons=args.daemons) as lab:
        accounts = load(pg, args.users)
        keys = {"PGSQL_CONNECTION": pg.conninfo("mail"), "PGSQL_USER_TABLE": "passwd",
                "PGSQL_CRYPT_PWFIELD": "crypt"}
        write_authpgsqlrc(lab.etc_dir, keys)
        lab.write_authdaemonrc(authmodulelist="authpgsql")
        conf = authkit_conf_text(keys, workers=args.workers, failure_delay=0,
                                 **({"pgsql_pool_size": args.pool} if args.pool else {}))
        results, ours, theirs = beside_courier(lab, root, conf, accounts, args,
                                               kind="pgsql", module="authpgsql")
    print_daemon_table(results, ours, theirs, args, f"pool={args.pool or 'default'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
