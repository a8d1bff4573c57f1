#!/usr/bin/env python3
"""Import cost of authkit's per-login modules, measured in fresh interpreters.

Runs each import in a new ``python -I -S`` process (the way the bin/ launchers start)
and takes the in-process ``perf_counter`` time around the import, median of N
fresh processes, round-robin so that machine noise hits every row alike.  The
baseline row imports nothing.  Also lists any heavy module that slipped onto the
login path (argparse, logging, dataclasses, typing, re, hashlib, base64, passlib).

Usage: bench/bench_import.py [--runs N] [--python /usr/bin/python3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("argparse", "logging", "dataclasses", "typing", "re", "hashlib", "base64", "passlib", "ctypes")

ROWS = {
    "(nothing)": "pass",
    "authkit": "import authkit",
    "authkit.errors + account": "import authkit.errors, authkit.account",
    "config + UserdbSource": "import authkit.config, authkit.userdb.source",
    "login path (config, userdb source, schemes, gdbm)": (
        "import authkit.config, authkit.userdb.source, authkit.schemes, authkit.schemes.unixcrypt, authkit.userdb.gdbm"
    ),
}

PROBE = """
import sys, time
sys.path.insert(0, {root!r})
t = time.perf_counter()
{stmt}
dt = time.perf_counter() - t
heavy = [m for m in {heavy!r} if m in sys.modules]
print(repr((dt, heavy)))
"""


def measure(python: str, stmt: str) -> tuple[float, list]:
    code = PROBE.format(root=str(ROOT), stmt=stmt, heavy=HEAVY)
    out = subprocess.run([python, "-I", "-S", "-c", code], capture_output=True, text=True, check=True).stdout
    dt, heavy = eval(out)  # our own probe's repr
    return dt, heavy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=25)
    parser.add_argument("--python", default="/usr/bin/python3")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    samples: dict[str, list[float]] = {name: [] for name in ROWS}
    heavy_seen: dict[str, set] = {name: set() for name in ROWS}
    for _ in range(args.runs):
        for name, stmt in ROWS.items():
            dt, heavy = measure(args.python, stmt)
            samples[name].append(dt * 1000)
            heavy_seen[name].update(heavy)
    result = {
        name: {"median_ms": round(statistics.median(v), 3), "p90_ms": round(sorted(v)[int(len(v) * 0.9) - 1], 3),
               "heavy": sorted(heavy_seen[name])}
        for name, v in samples.items()
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"python: {args.python}, {args.runs} fresh processes per row (-I -S)\n")
    print("| import | median ms | p90 ms | heavy modules pulled in |")
    print("|---|---|---|---|")
    for name, row in result.items():
        print(f"| {name} | {row['median_ms']:.2f} | {row['p90_ms']:.2f} | {', '.join(row['heavy']) or 'none'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
