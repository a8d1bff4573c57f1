#!/usr/bin/env python3
"""authkitd beside Courier's authdaemond, in one run, on the same userdb.

The userdb: 100,000 synthetic accounts (``uNNNNNNN@example.com``, the same
sha512-crypt hash on every line, as bench_userdb_scale.py writes them),
compiled by Courier's own ``makeuserdb`` in a CourierLab (tests/courierlab.py:
private mount namespace, root).  The daemons, one after another on the lab's
socket: Courier's authdaemond with ``daemons=5`` (Debian's default) and
``daemons=3``, then authkitd (``bin/authkitd``, /usr/bin/python3 -IS, default
settings, ``failure_delay = 0``) reading the same compiled pair.

For each daemon:

* logins/s and per-login p50/p99 latency at 1, 8 and 64 concurrent clients
  (client threads in this process, each login a new connection with ``AUTH
  login`` for a random account, as imapd sends it; every reply is checked);
* with 50 idle connections held open (connected, nothing sent): the latency of
  8 logins sent at once, each given up after ``--idle-timeout`` seconds (the
  clients' own 30 s by default is what a user would wait; 25 s keeps the run
  short), reported as p50/p99 and the number that got no answer in time.

Usage: ``python3 bench/bench_authkitd.py [--accounts N] [--json FILE]
[--chart PNG] [--redraw JSON]``.  Needs root and Courier's authlib (CourierLab); the chart needs
matplotlib (the ``bench`` extra).  One run takes a few minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

# The synthetic userdb of bench_userdb_scale.py (the same line shape and hash).
from bench_userdb_scale import HASH, PASSWORD, generate  # noqa: E402
LEVELS = {1: 300, 8: 1200, 64: 1600}  # concurrent clients -> logins measured


def login(path: str, name: str, timeout: float = 30.0) -> tuple[float, bool]:
    """(seconds, answered correctly) of one AUTH login on a new connection."""
    from stacktools import exchange

    from authkit.authdaemon import protocol

    request = protocol.login_request("imap", name, PASSWORD.encode())
    start = time.perf_counter()
    try:
        reply = exchange(path, request, timeout)
    except OSError:
        return time.perf_counter() - start, False
    ok = reply.endswith(b"\n.\n") and f"ADDRESS={name}\n".encode() in reply
    return time.perf_counter() - start, ok


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def load(path: str, accounts: int, clients: int, total: int, timeout: float = 30.0) -> dict:
    """``total`` logins by ``clients`` threads; rate and latency."""
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    counter = iter(range(total))
    start_gate = threading.Barrier(clients + 1)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        start_gate.wait()
        while True:
            with lock:
                if next(counter, None) is None:
                    return
            elapsed, ok = login(path, f"u{rng.randrange(accounts):07d}@example.com", timeout)
            with lock:
                latencies.append(elapsed)
                if not ok:
                    failures[0] += 1

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(clients)]
    for thread in threads:
        thread.start()
    start_gate.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    return {"clients": clients, "logins": total, "failed": failures[0],
            "logins_per_s": round(total / wall, 1),
            "p50_ms": round(1000 * statistics.median(latencies), 2),
            "p99_ms": round(1000 * percentile(latencies, 0.99), 2)}


def with_idle(path: str, accounts: int, idle: int, logins: int, timeout: float) -> dict:
    held = []
    for _ in range(idle):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        held.append(sock)
    try:
        results: list[tuple[float, bool]] = []
        lock = threading.Lock()

        def one(index: int) -> None:
            outcome = login(path, f"u{(index * 7919) % accounts:07d}@example.com", timeout)
            with lock:
                results.append(outcome)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(logins)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for sock in held:
            sock.close()
    times = [t for t, _ in results]
    return {"idle": idle, "logins": logins, "unanswered": sum(1 for _, ok in results if not ok),
            "p50_ms": round(1000 * statistics.median(times), 1),
            "p99_ms": round(1000 * percentile(times, 0.99), 1), "timeout_s": timeout}


def bench_daemon(path: str, accounts: int, idle_timeout: float) -> dict:
    for _ in range(50):  # warm-up (page cache, first imports)
        login(path, f"u{random.randrange(accounts):07d}@example.com")
    row = {"levels": [load(path, accounts, clients, total) for clients, total in LEVELS.items()]}
    row["idle50"] = with_idle(path, accounts, 50, 8, idle_timeout)
    return row


def chart(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["daemons"])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    width = 0.8 / len(names)
    levels = list(LEVELS)
    for index, name in enumerate(names):
        rows = results["daemons"][name]["levels"]
        xs = [i + index * width for i in range(len(levels))]
        axes[0].bar(xs, [r["logins_per_s"] for r in rows], width, label=name)
        axes[1].bar(xs, [r["p99_ms"] for r in rows], width, label=name)
    for ax, title in ((axes[0], "logins/s"), (axes[1], "p99 latency, ms")):
        ax.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(levels))])
        ax.set_xticklabels([f"{c} clients" for c in levels])
        ax.set_title(title)
        ax.legend(fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
    axes[1].set_yscale("log")
    idle = [results["daemons"][name]["idle50"]["p99_ms"] for name in names]
    axes[2].bar([name.replace(", ", "\n").replace(" (", "\n(") for name in names], idle,
                color=["C0", "C1", "C2"][: len(names)])
    axes[2].set_yscale("log")
    axes[2].set_title("p99 of a login while 50 idle connections are held, ms")
    axes[2].grid(True, axis="y", alpha=0.3)
    for tick in axes[2].get_xticklabels():
        tick.set_fontsize(8)
    fig.suptitle(f"authkitd vs Courier authdaemond, {results['accounts']:,}-account userdb, one run")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--idle-timeout", type=float, default=25.0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--chart", type=Path, default=REPO / "bench" / "authkitd.png")
    parser.add_argument("--redraw", type=Path, default=None, metavar="JSON",
                        help="only draw the chart from an earlier run's --json output")
    args = parser.parse_args(argv)
    if args.redraw:
        chart(json.loads(args.redraw.read_text()), args.chart)
        return 0

    from authkitdlab import Authkitd, lab_config
    from courierlab import CourierLab, missing_requirements

    reasons = missing_requirements()
    if reasons:
        print("cannot run: " + "; ".join(reasons), file=sys.stderr)
        return 1
    results: dict = {"accounts": args.accounts, "daemons": {}, "cpus": os.cpu_count(),
                     "load_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="bench-authkitd-") as tmp, CourierLab(Path(tmp) / "lab", daemons=5) as lab:
        generate(lab.userdb_path, args.accounts)
        began = time.perf_counter()
        lab.makeuserdb()
        results["makeuserdb_s"] = round(time.perf_counter() - began, 2)
        path = str(lab.socket_path)
        for daemons in (5, 3):
            lab.daemons = daemons
            lab.write_authdaemonrc()
            lab.start_daemon()
            try:
                results["daemons"][f"Courier authdaemond, daemons={daemons}"] = bench_daemon(
                    path, args.accounts, args.idle_timeout)
            finally:
                lab.stop_daemon()
            print(f"Courier daemons={daemons} done", file=sys.stderr)
        kitd = Authkitd(Path(tmp) / "kitd", lab.socket_path, lab_config(lab, "failure_delay = 0\n"))
        kitd.start()
        try:
            results["daemons"]["authkitd (8 workers)"] = bench_daemon(path, args.accounts, args.idle_timeout)
        finally:
            kitd.stop()
        results["load_after"] = os.getloadavg()[0]
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    try:
        chart(results, args.chart)
        print(f"chart: {args.chart}", file=sys.stderr)
    except ImportError:
        print("matplotlib missing (the bench extra): no chart", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
