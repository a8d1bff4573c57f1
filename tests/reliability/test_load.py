"""Load: many concurrent poppassd connections, half of them idle (slow clients
that send nothing, or a "user" line and then nothing), against the standalone
listener (``courierpassd --listen``) and against tcpserver.

Held: every active client completes its change (retrying after a ``500 Server
busy``); every idle client is dropped with ``500 Timeout`` at the idle timeout
(or turned away busy); no completed change is lost (each active account then
authenticates with its new password, each idle one with its old).  Measured:
changes per second, the 95th-percentile latency of a change dialogue, busy
replies.  Default 40 connections to the listener and 20 to tcpserver;
AUTHKIT_LONG=1: 200 and 50.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from _rel import (BIN, Client, Listener, authenticates, count, env, make_userdb, percentile, record,
                  write_config)

IDLE_TIMEOUT = 3.0


def _run_load(port: int, userdb: Path, total: int) -> dict:
    active = [f"act{i}" for i in range(total // 2)]
    idle = [f"idle{i}" for i in range(total - total // 2)]
    jobs = [("active", name) for name in active] + [("idle", name) for name in idle]
    random.Random(106).shuffle(jobs)
    barrier = threading.Barrier(len(jobs))
    latencies: list[float] = []
    results: dict[str, str] = {}
    busy = {"n": 0}
    finished: list[float] = []
    lock = threading.Lock()

    def active_client(name: str) -> None:
        barrier.wait()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                client = Client(port, timeout=60)
            except OSError:
                time.sleep(0.1)
                continue
            try:
                first = client.line()
                if first.startswith(b"500"):
                    with lock:
                        busy["n"] += 1
                    time.sleep(0.1)
                    continue
                lines = [first]
                for command in (b"user " + name.encode(), b"pass old-" + name.encode(),
                                b"newpass new-" + name.encode(), b"quit"):
                    client.send(command + b"\r\n")
                    lines.append(client.line())
                elapsed = time.perf_counter() - started
                with lock:
                    results[name] = lines[3].decode()
                    latencies.append(elapsed)
                    finished.append(time.perf_counter())
                return
            except (OSError, EOFError) as exc:
                with lock:
                    results[name] = f"error {exc!r}"
                return
            finally:
                client.close()
        results[name] = "gave up"

    def idle_client(name: str) -> None:
        barrier.wait()
        try:
            client = Client(port, timeout=IDLE_TIMEOUT + 30)
        except OSError as exc:
            results[name] = f"connect failed {exc!r}"
            return
        try:
            first = client.line()
            if first.startswith(b"500"):
                results[name] = "busy"
                return
            if name.endswith(("1", "3", "5", "7", "9")):
                client.send(b"user " + name.encode() + b"\r\n")
                client.line()
            started = time.monotonic()
            line = client.line()
            waited = time.monotonic() - started
            results[name] = f"{line.decode()} after {waited:.1f}s"
            assert client.sock.recv(1) == b""
        except (OSError, EOFError, AssertionError) as exc:
            results[name] = f"error {exc!r}"
        finally:
            client.close()

    threads = [threading.Thread(target=active_client if kind == "active" else idle_client, args=(name,))
               for kind, name in jobs]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(200)
    wall = time.perf_counter() - started
    changed = [n for n in active if results.get(n) == "200 Password changed"]
    dropped = [n for n in idle if results.get(n, "").startswith("500 Timeout")]
    turned_away = [n for n in idle if results.get(n) == "busy"]
    problems = {n: r for n, r in results.items()
                if n in active and n not in changed or n in idle and n not in dropped + turned_away}
    assert not problems, problems
    for name in active:
        assert authenticates(userdb, name, f"new-{name}"), name
    for name in idle:
        assert authenticates(userdb, name, f"old-{name}"), name
    waits = [float(results[n].rsplit(" ", 1)[1].rstrip("s")) for n in dropped]
    assert all(IDLE_TIMEOUT - 0.5 <= w <= IDLE_TIMEOUT + 5 for w in waits), waits
    return {"connections": total, "active": len(active), "idle": len(idle), "changes": len(changed),
            "wall_s": round(wall, 2), "changes_per_s": round(len(changed) / (max(finished) - started), 1),
            "p95_change_latency_ms": round(percentile(latencies, 95) * 1000, 1),
            "median_change_latency_ms": round(percentile(latencies, 50) * 1000, 1),
            "busy_replies_to_active": busy["n"], "idle_dropped_at_timeout": len(dropped),
            "idle_turned_away_busy": len(turned_away), "lost_changes": 0}


def _userdb(tmp_path: Path, total: int) -> Path:
    accounts = {f"act{i}": (f"old-act{i}", 1000 + i) for i in range(total // 2)}
    accounts.update({f"idle{i}": (f"old-idle{i}", 3000 + i) for i in range(total - total // 2)})
    return make_userdb(tmp_path / "userdb", accounts)


def test_standalone_listener_under_load_loses_no_change(tmp_path: Path) -> None:
    total = count(40, 200)
    userdb = _userdb(tmp_path, total)
    config = write_config(tmp_path / "authkit.conf", userdb, bad_pass_delay=0, idle_timeout=IDLE_TIMEOUT)
    server = Listener(config, tmp_path / "courierpassd.log")
    try:
        figures = _run_load(server.port, userdb, total)
    finally:
        server.close()
    assert server.proc.returncode == 0
    record("load-listener", **figures)


def test_tcpserver_under_load_loses_no_change(tmp_path: Path) -> None:
    if not shutil.which("tcpserver"):
        pytest.skip("tcpserver (ucspi-tcp) not installed")
    total = count(20, 50)
    userdb = _userdb(tmp_path, total)
    config = write_config(tmp_path / "authkit.conf", userdb, bad_pass_delay=0, idle_timeout=IDLE_TIMEOUT)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        ["tcpserver", "-q", "-c", str(total + 10), "-H", "-R", "127.0.0.1", str(port),
         sys.executable, "-S", str(BIN / "courierpassd"), "--stderr", "--config", str(config)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.05)
        figures = _run_load(port, userdb, total)
    finally:
        server.terminate()
        server.wait(10)
    record("load-tcpserver", **figures)
