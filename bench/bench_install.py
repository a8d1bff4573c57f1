#!/usr/bin/env python3
"""Benchmark: courierpasswd as pip installs it, beside bin/courierpasswd, in pairs.

Not a test: run it by hand and copy the table it prints into bench/README.md,
section "Installed programs".

What it does:

1. builds the wheel (``python -m build --no-isolation``, this interpreter's build
   and setuptools) and installs it with ``pip install --no-index`` into a fresh
   virtualenv of Debian's ``/usr/bin/python3``;
2. writes a small text userdb (10 accounts, sha512-crypt) and runs one login, each
   as a fresh process with the credentials on fd 3, in a shuffled order each round:

   * ``installed``: the venv's ``bin/courierpasswd`` (the wheel's lean launcher);
   * ``bin``: the checkout's ``bin/courierpasswd``;
   * ``wrapper``: a console-script wrapper of the kind pip generates (the venv's
     interpreter without flags, so ``site``; ``import re``; then ``main()``), which
     is what ``pip install`` gave before the lean launchers;
   * ``deb`` (with ``--deb FILE``): the ``/usr/sbin/courierpasswd`` of a .deb
     unpacked with ``dpkg-deb -x`` into a scratch root;
   * ``python-bare``: ``/usr/bin/python3 -I -S -c pass``;

3. prints medians, p10/p90, the per-round ratios installed/bin (target: within 5%)
   and wrapper/bin, and installed / (python-bare + one sha512-crypt verify, measured
   in-process).

Usage: ``python3 bench/bench_install.py [--rounds N] [--deb FILE]``
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _common import check_commands, hash_cost, pct, shuffled_rounds, spawn  # noqa: E402

PYTHON = "/usr/bin/python3"
USER = "user0007@example.com"
PASSWORD = "bench-secret-pw"


def install_wheel(work: Path) -> Path:
    """Build the wheel and pip-install it into a fresh venv; return the venv."""
    out = work / "dist"
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", str(out), str(REPO)],
                   check=True, capture_output=True)
    venv = work / "venv"
    subprocess.run([PYTHON, "-m", "venv", str(venv)], check=True)
    wheel = next(out.glob("*.whl"))
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-index", "--no-deps", str(wheel)], check=True)
    return venv


def write_wrapper(venv: Path) -> Path:
    """A console-script wrapper as pip writes one: its interpreter, no flags, re."""
    path = venv / "bin" / "courierpasswd-wrapper"
    path.write_text(f"#!{venv / 'bin' / 'python3'}\n"
                    "import re\nimport sys\nfrom authkit.cli.courierpasswd import main\n"
                    "if __name__ == '__main__':\n"
                    "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
                    "    sys.exit(main())\n")
    path.chmod(0o755)
    return path


def unpack_deb(deb: Path, work: Path) -> Path:
    root = work / "debroot"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root / "usr" / "sbin" / "courierpasswd"


def main(argv: list[str]) -> int:
    rounds, deb = 200, None
    args = list(argv)
    while args:
        flag = args.pop(0)
        if flag == "--rounds":
            rounds = int(args.pop(0))
        elif flag == "--deb":
            deb = Path(args.pop(0)).resolve()
        else:
            sys.exit(__doc__)
    from authkit.schemes import make_password_hash

    work = Path(tempfile.mkdtemp(prefix="bench-install-"))
    try:
        venv = install_wheel(work)
        hashed = make_password_hash(PASSWORD.encode(), "sha512-crypt")
        userdb = work / "userdb"
        userdb.write_text("".join(f"user{i:04d}@example.com\tuid=5000|gid=5000|home=/tmp|systempw={hashed}\n"
                                  for i in range(10)))
        userdb.chmod(0o600)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "AUTHKIT_USERDB": str(userdb)}
        login = ["-s", "imap", "--", "/bin/true"]
        commands = {
            "installed": [str(venv / "bin" / "courierpasswd"), *login],
            "bin": [str(REPO / "bin" / "courierpasswd"), *login],
            "wrapper": [str(write_wrapper(venv)), *login],
            "python-bare": [PYTHON, "-I", "-S", "-c", "pass"],
        }
        if deb:
            commands["deb"] = [str(unpack_deb(deb, work)), *login]
        creds = f"{USER}\0{PASSWORD}\0\0".encode()
        runs = {name: (cmd, env, creds) for name, cmd in commands.items()}
        check_commands(runs)  # correctness first, and warm caches
        _, code = spawn(commands["installed"], env, f"{USER}\0wrong\0\0".encode())
        assert code == 1, "the installed courierpasswd accepted a wrong password"

        times, per_round = shuffled_rounds(runs, rounds)
        ratios = {name: [r[name] / r["bin"] for r in per_round]
                  for name in commands if name not in ("bin", "python-bare")}
        hash_ms = hash_cost(PASSWORD.encode(), hashed)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {name: statistics.median(values) for name, values in times.items()}
    print(f"courierpasswd login, 10-account text userdb, sha512-crypt, {rounds} shuffled rounds, {PYTHON}")
    print(f"{'command':<12} {'median':>8} {'p10':>8} {'p90':>8}  (ms, whole process)")
    for name, values in times.items():
        print(f"{name:<12} {med[name]:8.2f} {pct(values, 0.1):8.2f} {pct(values, 0.9):8.2f}")
    print(f"{'sha512':<12} {hash_ms:8.2f}  (one verify, in-process median)")
    print()
    for name, values in ratios.items():
        print(f"{name} / bin, per-round pairs: median {statistics.median(values):.3f} "
              f"(p10 {pct(values, 0.1):.3f}, p90 {pct(values, 0.9):.3f})"
              + ("   target <= 1.05" if name == "installed" else ""))
    floor = med["python-bare"] + hash_ms
    print(f"installed / (python -I -S -c pass + one sha512-crypt) ({floor:.2f} ms): {med['installed'] / floor:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
