"""Regenerate the figures of docs/reliability.md.

    python bench/reliability_figures.py [--long] [--fuzz-seconds N]

Runs tests/reliability (AUTHKIT_LONG=1 with --long) and tests/fuzz (with
AUTHKIT_FUZZ_SECONDS=N when given) with report files, then prints the figures
they recorded as a Markdown table per suite.  Needs root for the tmpfs, symlink
and CourierLab tests (they skip otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(suite: str, env: dict[str, str]) -> int:
    return subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", suite],
                           cwd=ROOT, env={**os.environ, **env})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", action="store_true", help="AUTHKIT_LONG=1: 200 repetitions/connections")
    parser.add_argument("--fuzz-seconds", type=float, help="fuzz budget for the whole fuzz directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rel, fuzz = Path(tmp, "rel.jsonl"), Path(tmp, "fuzz.jsonl")
        env = {"AUTHKIT_RELIABILITY_REPORT": str(rel)}
        if args.long:
            env["AUTHKIT_LONG"] = "1"
        status = run("tests/reliability", env)
        fenv = {"AUTHKIT_FUZZ_REPORT": str(fuzz)}
        if args.fuzz_seconds:
            fenv["AUTHKIT_FUZZ_SECONDS"] = str(args.fuzz_seconds)
        status |= run("tests/fuzz", fenv)
        print("\n| fuzz target | examples | seconds |\n|---|---:|---:|")
        for line in fuzz.read_text().splitlines() if fuzz.exists() else []:
            row = json.loads(line)
            print(f"| {row['target']} | {row['examples']} | {row['seconds']} |")
        print("\n| test | figures |\n|---|---|")
        for line in rel.read_text().splitlines() if rel.exists() else []:
            row = json.loads(line)
            name = row.pop("test")
            print(f"| {name} | " + ", ".join(f"{k}={v}" for k, v in row.items()) + " |")
    return status


if __name__ == "__main__":
    sys.exit(main())
