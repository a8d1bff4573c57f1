#!/usr/bin/env python3
"""Benchmark: logins per second and latency through authkitd on LDAP, beside
Courier's authdaemond with authldap, on the same directory, in one run.

Not a test: run it by hand (as root; Courier authlib, courier-authlib-ldap, slapd
and ldap-utils installed) and copy the table it prints into bench/README.md,
section "LDAP source".

What it does:

1. starts a private slapd (tests/slapdlab.py) with Courier's authldap schema and
   ``--users`` CourierMailAccount entries, each with its own ``{CRYPT}``
   sha512-crypt userPassword (authkit's default scheme; Courier verifies it
   through crypt(3) too);
2. starts Courier's authdaemond (``authmodulelist="authldap"``,
   ``daemons=--daemons``, Courier's default 5) in a CourierLab, and authkitd
   (``bin/authkitd``, ``source = ldap``, ``workers=--workers``) on its own
   socket, both with the same authldaprc settings (bound as the root DN,
   LDAP_AUTHBIND off: the daemon checks the hash);
3. for each daemon in turn, ``--rounds`` times in alternation: ``--clients``
   threads each send ``AUTH`` login requests for random accounts (one request per
   connection, as imapd does, through authkit's authdaemond client) until
   ``--requests`` requests are done; every reply must be the right account;
4. prints logins/s (requests / wall time of the round) and p50/p99 of the
   per-request latency, the median round of each daemon, and the ratios.

The client threads run in this Python process and share the machine's cores
with the daemons and slapd; both daemons pay the same client.

Usage: ``python3 bench/bench_ldap.py [--users N] [--requests N] [--clients N]
[--rounds N] [--daemons N] [--workers N] [--authbind]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))

from _common import beside_courier, common_daemon_options, print_daemon_table  # noqa: E402

from authkit.schemes import make_password_hash  # noqa: E402


def load(slapd, users: int) -> list[tuple[str, str]]:
    from slapdlab import Person

    accounts = [(f"user{i}@example.com", f"pw-{i}-secret") for i in range(users)]
    people = [Person(f"user{i}", login, f"/home/vmail/user{i}", uidNumber="5000", gidNumber="5000",
                     userPassword="{CRYPT}" + make_password_hash(pw.encode()))
              for i, (login, pw) in enumerate(accounts)]
    slapd.populate(people)
    return accounts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_daemon_options(parser, users=1000)
    parser.add_argument("--authbind", action="store_true", help="LDAP_AUTHBIND=1 on both sides")
    args = parser.parse_args()

    import ldapdirectory as d
    from courierlab import CourierLab
    from slapdlab import SUFFIX, SlapdLab

    root = Path(tempfile.mkdtemp(prefix="bench-ldap-"))
    with SlapdLab(root / "slapd") as slapd, CourierLab(root / "lab", daemons=args.daemons) as lab:
        slapd.start()
        accounts = load(slapd, args.users)
        values = d.settings([slapd.uri], authbind=args.authbind, LDAP_BASEDN=SUFFIX)
        rc = lab.etc_dir / "authldaprc"
        rc.write_text(d.authldaprc(values))
        os.chmod(rc, 0o640)
        lab.write_authdaemonrc(authmodulelist="authldap")
        conf = d.authkit_conf(values, workers=str(args.workers), failure_delay="0")
        results, ours, theirs = beside_courier(lab, root, conf, accounts, args,
                                               kind="ldap", module="authldap")
    print_daemon_table(results, ours, theirs, args, f"authbind={int(args.authbind)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
