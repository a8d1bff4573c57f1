"""What the benchmarks share (not a benchmark itself).

* :func:`spawn`, :func:`shuffled_rounds`, :func:`check_commands`: whole-process
  timings of programs given their credentials on fd 3, interleaved in a shuffled
  order each round (bench_courierpasswd.py, bench_install.py);
* :func:`hash_cost`: the in-process cost of one password verify;
* :func:`pct`: a percentile of a list;
* :func:`common_daemon_options`, :func:`beside_courier`, :func:`login_round`,
  :func:`daemon_rounds`, :func:`print_daemon_table`: logins per second and
  latency through authdaemond's socket, Courier's daemon beside authkitd, and
  the table and ratios printed (bench_ldap.py, bench_pgsql.py).

The scripts put the checkout and tests/ on ``sys.path`` before importing this.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import threading
import time


def pct(values: "list[float]", q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank from below."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def spawn(argv: "list[str]", env: dict, creds: "bytes | None") -> "tuple[float, int]":
    """Wall time (ms) and exit status of one fork+exec+wait of ``argv`` with
    ``creds`` on fd 3 (a pipe).  A descriptor this process already holds as fd 3
    (a CourierLab's namespace handle) is put back afterwards."""
    try:
        saved = os.dup(3)
    except OSError:
        saved = None
    r, w = os.pipe()
    if creds:
        os.write(w, creds)
    os.close(w)
    if r != 3:
        os.dup2(r, 3)
        os.close(r)
    try:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, pass_fds=(3,), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        code = proc.wait()
        elapsed = (time.perf_counter() - start) * 1000
    finally:
        if saved is None:
            os.close(3)
        else:
            os.dup2(saved, 3, inheritable=False)
            os.close(saved)
    return elapsed, code


def check_commands(commands: "dict[str, tuple[list[str], dict, bytes | None]]") -> None:
    """Run each ``name -> (argv, env, creds)`` three times (warm caches); exit
    the benchmark if the last run of one does not exit 0."""
    for name, (cmd, env, data) in commands.items():
        for _ in range(3):
            _, code = spawn(cmd, env, data)
        if code != 0:
            raise SystemExit(f"{name} exited {code}: {cmd}")


def shuffled_rounds(commands: "dict[str, tuple[list[str], dict, bytes | None]]",
                    rounds: int) -> "tuple[dict[str, list[float]], list[dict[str, float]]]":
    """``rounds`` rounds, each running every command once in a new random order.
    Returns the times (ms) of each command, and each round's ``name -> ms``."""
    times: "dict[str, list[float]]" = {name: [] for name in commands}
    per_round = []
    for _ in range(rounds):
        order = list(commands)
        random.shuffle(order)
        this_round = {}
        for name in order:
            cmd, env, data = commands[name]
            this_round[name], _ = spawn(cmd, env, data)
            times[name].append(this_round[name])
        per_round.append(this_round)
    return times, per_round


def hash_cost(password: bytes, hashed: str, n: int = 50) -> float:
    """Median ms of verifying ``password`` against ``hashed`` in this process
    (asserting that it matches)."""
    from authkit.schemes import verify_password

    assert verify_password(password, hashed)
    times = []
    for _ in range(n):
        start = time.perf_counter()
        verify_password(password, hashed)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def login_round(socket_path: str, accounts: list, requests: int, clients: int) -> dict:
    """``clients`` threads send ``requests`` AUTH logins in all (random accounts
    of ``accounts``, ``(login, password)`` pairs; one connection a request)
    to the authdaemond socket ``socket_path``.  Every reply must be the right
    account, else the benchmark exits.  Returns ``rate`` (logins/s) and the
    ``p50``/``p99`` latency in ms."""
    from authkit.authdaemon.source import AuthdaemonSource

    source = AuthdaemonSource(socket_path, remote_ip="")
    latencies: "list[float]" = []
    errors: "list[str]" = []
    lock = threading.Lock()
    left = [requests]

    def client(seed: int) -> None:
        rng = random.Random(seed)
        mine = []
        while True:
            with lock:
                if left[0] <= 0:
                    break
                left[0] -= 1
            login, password = accounts[rng.randrange(len(accounts))]
            started = time.perf_counter()
            try:
                account = source.authenticate(login, password.encode(), "imap")
                if account.address != login:
                    errors.append(f"wrong account {account.address} for {login}")
            except Exception as exc:  # recorded: a benchmark with errors is void
                errors.append(repr(exc))
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if errors:
        raise SystemExit(f"{socket_path}: {len(errors)} errors, e.g. {errors[:3]}")
    latencies.sort()
    return {"rate": requests / wall, "p50": latencies[len(latencies) // 2] * 1000,
            "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000}


def daemon_rounds(sockets: "dict[str, str]", accounts: list, *, rounds: int, requests: int,
                  clients: int) -> "dict[str, list[dict]]":
    """A warming round of 100 requests on each socket (``name -> path``), then
    ``rounds`` rounds of :func:`login_round` on each in turn."""
    for path in sockets.values():  # warm: connections made, pages cached
        login_round(path, accounts, 100, clients)
    results: "dict[str, list]" = {name: [] for name in sockets}
    for _ in range(rounds):
        for name, path in sockets.items():
            results[name].append(login_round(path, accounts, requests, clients))
    return results


def print_daemon_table(results: "dict[str, list[dict]]", ours: str, theirs: str, args: object,
                       setting: str) -> None:
    """Print the run's settings (the :func:`common_daemon_options` of ``args``
    and ``setting``), the median round of each daemon as a Markdown table, the
    ratios ``ours``/``theirs`` (logins/s and p99), and every round."""
    a = args
    print(f"users={a.users} requests/round={a.requests} clients={a.clients} "  # type: ignore[attr-defined]
          f"rounds={a.rounds} courier daemons={a.daemons} authkitd workers={a.workers} "  # type: ignore[attr-defined]
          f"{setting}")
    print("| daemon | logins/s | p50 ms | p99 ms |")
    print("|---|---|---|---|")
    medians = {}
    for name, rounds in results.items():
        best = sorted(rounds, key=lambda r: r["rate"])[len(rounds) // 2]
        medians[name] = best
        print(f"| {name} | {best['rate']:.0f} | {best['p50']:.2f} | {best['p99']:.2f} |")
    mine, other = medians[ours], medians[theirs]
    print(f"\nratio authkitd/courier: logins/s {mine['rate'] / other['rate']:.2f}, "
          f"p99 {mine['p99'] / other['p99']:.2f}")
    print("all rounds:", {name: [f"{r['rate']:.0f}/s p99 {r['p99']:.1f}" for r in rounds]
                          for name, rounds in results.items()})


def common_daemon_options(parser: object, *, users: int) -> None:
    """The argparse options bench_ldap and bench_pgsql share."""
    add = parser.add_argument  # type: ignore[attr-defined]
    add("--users", type=int, default=users)
    add("--requests", type=int, default=1500)
    add("--clients", type=int, default=8)
    add("--rounds", type=int, default=3)
    add("--daemons", type=int, default=5, help="Courier authdaemond children")
    add("--workers", type=int, default=8, help="authkitd worker threads")


def beside_courier(lab: object, root: "os.PathLike", conf_text: str, accounts: list, args: object,
                   *, kind: str, module: str) -> "tuple[dict[str, list[dict]], str, str]":
    """Start the CourierLab ``lab``'s authdaemond (its authdaemonrc already
    written, with ``module``) and an authkitd (``conf_text``) under ``root``,
    run :func:`daemon_rounds` on both, stop authkitd.  Returns the results and
    the two daemons' names (authkitd's, Courier's)."""
    from pathlib import Path

    from authkitdlab import Authkitd

    root = Path(root)
    lab.start_daemon()  # type: ignore[attr-defined]
    authkitd = Authkitd(root / "authkitd", root / "authkitd.sock", conf_text)
    authkitd.start()
    ours, theirs = f"authkitd {kind}", f"courier authdaemond+{module}"
    try:
        sockets = {theirs: str(lab.socket_path), ours: str(authkitd.socket_path)}  # type: ignore[attr-defined]
        results = daemon_rounds(sockets, accounts, rounds=args.rounds,  # type: ignore[attr-defined]
                                requests=args.requests, clients=args.clients)  # type: ignore[attr-defined]
    finally:
        authkitd.stop()
    return results, ours, theirs
