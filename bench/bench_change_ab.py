#!/usr/bin/env python3
"""One password change at scale, two checkouts interleaved: did a change of the
write path make it slower?

Generates the synthetic userdb of bench_userdb_scale.py (``--accounts``, default
1,000,000), compiles it with this checkout's ``authkit makeuserdb``, then runs
``bin/authkit --userdb FILE test NAME OLD NEW`` (the compiled pair kept current)
alternately from ``--old`` (another checkout, e.g. ``git worktree add /tmp/old
REV``) and from this checkout, in ABBA order, each round changing the password
the other one set.  Prints the medians and their ratio.

Usage: ``python3 bench/bench_change_ab.py --old /tmp/old [--accounts N]
[--rounds 8]`` (Debian's /usr/bin/python3 runs the bin/ launchers).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_userdb_scale import ENV, PASSWORD, generate, user  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, type=Path, help="the other checkout")
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-change-ab-", dir="/var/tmp"))
    try:
        db = work / "userdb"
        generate(db, args.accounts)
        subprocess.run([str(REPO / "bin/authkit"), "makeuserdb", "--userdb", str(db), "--quiet"], check=True)
        name, password = user(args.accounts // 2), PASSWORD
        trees = {"old": args.old, "new": REPO}
        times: dict[str, list[float]] = {"old": [], "new": []}
        for round_ in range(args.rounds):
            order = ("old", "new") if round_ % 2 == 0 else ("new", "old")
            for tag in order:
                new = f"Pw-round-{round_}-{tag}"
                start = time.monotonic()
                proc = subprocess.run([str(trees[tag] / "bin/authkit"), "--userdb", str(db), "test",
                                       name, password, new], env=ENV, capture_output=True)
                times[tag].append(time.monotonic() - start)
                if proc.returncode != 0:
                    raise SystemExit(f"{tag}: exit {proc.returncode}: {proc.stderr.decode(errors='replace')}")
                password = new
        for tag, values in times.items():
            print(f"{tag}: median {statistics.median(values):.3f} s  "
                  f"({' '.join(f'{v:.2f}' for v in values)})")
        print(f"new / old: {statistics.median(times['new']) / statistics.median(times['old']):.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
