#!/usr/bin/env python3
"""Benchmark: one courierpasswd login, whole process, beside Courier's C authtest.

Not a test: run it by hand (as root, Courier authlib installed) and copy the
table it prints into bench/README.md, section "courierpasswd".

What it does:

1. builds a 100,000-account userdb in a CourierLab (tests/courierlab.py): the
   text file is written here (every account shares one sha512-crypt hash made by
   ``mkpasswd -m sha512crypt``, so that building takes seconds), then compiled by
   Courier's own ``makeuserdb`` into ``userdb.dat``/``userdbshadow.dat``;
2. starts Courier's authdaemond on it (in the lab's mount namespace);
3. runs, interleaved in a shuffled order each round, each as a fresh process
   spawned the same way (subprocess, fd 3 a pipe holding the credentials):

   * ``courierpasswd``: ``/usr/bin/python3 -IS bin/courierpasswd -s imap -- /bin/true``
     with ``AUTHKIT_USERDB`` naming the lab's userdb (it reads the compiled pair);
   * ``authtest``: ``nsenter -t <lab> -m -- authtest -s imap USER PASSWORD``
     (Courier's C client asking its running authdaemond, which does the crypt);
   * ``nsenter-floor``: ``nsenter -t <lab> -m -- /bin/true`` (what nsenter adds);
   * ``python-bare``: ``/usr/bin/python3 -I -S -c pass``;
   * ``true-floor``: ``/bin/true``;

4. measures the sha512-crypt verify of the account's hash in-process (what the
   login path calls), and prints medians, p10/p90 and the ratios:

   * courierpasswd / authtest (raw: authtest pays nsenter too);
   * courierpasswd / authtest with nsenter's own cost taken out
     (``authtest - nsenter-floor + true-floor``);
   * courierpasswd / (python-bare + hash).

Targets (issue 3): within 3.5x of authtest and within 1.4x of the bare
interpreter plus the hash.

Usage: ``python3 bench/bench_courierpasswd.py [--rounds N] [--users N]``
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from _common import check_commands, hash_cost, pct, shuffled_rounds, spawn  # noqa: E402

PYTHON = "/usr/bin/python3"
USER = "user049999@example.com"
PASSWORD = "bench-secret-pw"


def build_lab(root: Path, users: int):
    from courierlab import CourierLab, missing_requirements

    reasons = missing_requirements()
    if reasons:
        sys.exit("cannot run: " + "; ".join(reasons))
    lab = CourierLab(root)
    hashed = subprocess.run(["mkpasswd", "-m", "sha512crypt", PASSWORD], capture_output=True,
                            text=True, check=True).stdout.strip()
    start = time.perf_counter()
    with open(lab.userdb_path, "w") as out:
        for i in range(users):
            out.write(f"user{i:06d}@example.com\tuid=5000|gid=5000|home=/tmp|systempw={hashed}\n")
    os.chmod(lab.userdb_path, 0o600)
    lab.makeuserdb()
    print(f"userdb: {users} accounts compiled by makeuserdb in {time.perf_counter() - start:.1f} s",
          file=sys.stderr)
    lab.start_daemon()
    return lab, hashed


def main(argv: list[str]) -> int:
    rounds, users = 60, 100_000
    args = list(argv)
    while args:
        flag = args.pop(0)
        if flag == "--rounds":
            rounds = int(args.pop(0))
        elif flag == "--users":
            users = int(args.pop(0))
        else:
            sys.exit(__doc__)
    root = Path(tempfile.mkdtemp(prefix="bench-cpw-"))
    lab, hashed = build_lab(root, users)
    try:
        creds = f"{USER}\0{PASSWORD}\0\0".encode()
        base_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}
        cpw_env = dict(base_env, AUTHKIT_USERDB=str(lab.userdb_path))
        nsenter = lab.nsenter_argv
        commands = {
            "courierpasswd": ([PYTHON, "-IS", str(REPO / "bin" / "courierpasswd"), "-s", "imap",
                               "--", "/bin/true"], cpw_env, creds),
            "authtest": (nsenter(["/usr/sbin/authtest", "-s", "imap", USER, PASSWORD]), base_env, None),
            "nsenter-floor": (nsenter(["/bin/true"]), base_env, None),
            "python-bare": ([PYTHON, "-I", "-S", "-c", "pass"], base_env, None),
            "true-floor": (["/bin/true"], base_env, None),
        }
        check_commands(commands)  # correctness first, and warm caches
        _, code = spawn(commands["courierpasswd"][0], cpw_env, f"{USER}\0wrong\0\0".encode())
        assert code == 1, "courierpasswd accepted a wrong password"

        times, per_round = shuffled_rounds(commands, rounds)
        pair_ratios = [r["courierpasswd"] / r["authtest"] for r in per_round]
        hash_ms = hash_cost(PASSWORD.encode(), hashed)
    finally:
        lab.close()
        subprocess.run(["rm", "-rf", str(root)], check=False)

    med = {name: statistics.median(values) for name, values in times.items()}
    print(f"{users} accounts, sha512-crypt, {rounds} interleaved rounds, Debian {PYTHON}")
    print(f"{'command':<16} {'median':>8} {'p10':>8} {'p90':>8}  (ms, whole process)")
    for name, values in times.items():
        print(f"{name:<16} {med[name]:8.2f} {pct(values, 0.1):8.2f} {pct(values, 0.9):8.2f}")
    print(f"{'sha512 verify':<16} {hash_ms:8.2f}  (in-process median)")
    authtest_net = med["authtest"] - med["nsenter-floor"] + med["true-floor"]
    print()
    print(f"courierpasswd / authtest (raw, authtest via nsenter): {med['courierpasswd'] / med['authtest']:.2f}"
          f"  (per-round pairs: median {statistics.median(pair_ratios):.2f})")
    print(f"courierpasswd / authtest without nsenter's cost ({authtest_net:.2f} ms): "
          f"{med['courierpasswd'] / authtest_net:.2f}   target <= 3.5")
    print(f"courierpasswd / (python -I -S -c pass + hash) ({med['python-bare'] + hash_ms:.2f} ms): "
          f"{med['courierpasswd'] / (med['python-bare'] + hash_ms):.2f}   target <= 1.4")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
