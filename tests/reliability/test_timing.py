"""Timing and text: an unknown user, a wrong password and a refused low uid look
the same to the client, for ``courierpasswd -c`` (exit status, output) and for
courierpassd (reply lines, and time to the 500).

The text is asserted.  Times are measured and recorded, never asserted (a
loaded CI machine would make any bound flaky): medians per case and the largest
difference between case medians go to $AUTHKIT_RELIABILITY_REPORT and
docs/reliability.md.  Default: 10 tries per case; AUTHKIT_LONG=1: 200.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest

from _rel import Client, Listener, count, courierpasswd, make_userdb, record, write_config

ACCOUNTS = {"alice": ("alice-password", 1000), "daemon2": ("daemon-password", 50)}
CASES = {
    "unknown_user": (b"nobody", b"alice-password"),
    "wrong_password": (b"alice", b"not-the-password"),
    "low_uid": (b"daemon2", b"daemon-password"),
}


@pytest.fixture
def userdb(tmp_path: Path) -> Path:
    return make_userdb(tmp_path / "userdb", ACCOUNTS)  # sha512-crypt, the default scheme


def _summary(times: dict[str, list[float]]) -> dict[str, float]:
    medians = {case: statistics.median(values) * 1000 for case, values in times.items()}
    out = {f"median_ms_{case}": round(value, 2) for case, value in medians.items()}
    out["max_median_difference_ms"] = round(max(medians.values()) - min(medians.values()), 2)
    return out


def test_courierpasswd_change_refusals_are_alike(userdb: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "authkit.conf", userdb)
    tries = count(10, 200)
    times: dict[str, list[float]] = {case: [] for case in CASES}
    seen: dict[str, set] = {case: set() for case in CASES}
    for _ in range(tries):
        for case, (user, old) in CASES.items():  # interleaved, so drift hits every case alike
            started = time.perf_counter()
            proc = courierpasswd(user + b"\0" + old + b"\0brand-new-password\0", config, "-c")
            times[case].append(time.perf_counter() - started)
            seen[case].add((proc.returncode, proc.stdout))
    assert all(outcome == {(1, b"")} for outcome in seen.values()), seen
    record("timing-courierpasswd-c", tries_per_case=tries, **_summary(times))


@pytest.mark.parametrize("delay", [0, 0.25])
def test_courierpassd_refusals_are_alike(userdb: Path, tmp_path: Path, delay: float) -> None:
    config = write_config(tmp_path / "authkit.conf", userdb, bad_pass_delay=delay, idle_timeout=10)
    server = Listener(config, tmp_path / "courierpassd.log")
    tries = count(10, 200)
    times: dict[str, list[float]] = {case: [] for case in CASES}
    texts: dict[str, set] = {case: set() for case in CASES}
    try:
        for _ in range(tries):
            for case, (user, old) in CASES.items():
                client = Client(server.port)
                try:
                    lines = [client.line()]
                    client.send(b"user " + user + b"\r\n")
                    lines.append(client.line())
                    client.send(b"pass " + old + b"\r\n")
                    started = time.perf_counter()
                    lines.append(client.line())
                    times[case].append(time.perf_counter() - started)
                    texts[case].add(tuple(lines))
                finally:
                    client.close()
    finally:
        server.close()
    expected = {(lines[0], b"200 Your password please", b"500 Old password is incorrect")
                for lines in texts["wrong_password"]}
    assert len(expected) == 1
    assert all(text == expected for text in texts.values()), texts
    if delay:
        assert min(min(v) for v in times.values()) >= delay * 0.95
    record(f"timing-courierpassd-delay-{delay}", tries_per_case=tries, bad_pass_delay=delay, **_summary(times))
