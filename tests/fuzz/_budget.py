"""The fuzzing budget, shared by every test in tests/fuzz.

Each fuzz target is a hypothesis ``@given`` function handed to :func:`run_fuzz`,
which runs it under one of two budgets:

* default (``make test``): ``AUTHKIT_FUZZ_EXAMPLES`` examples per target (400
  unless set), one hypothesis run, so that the whole directory stays well under
  a minute;
* ``AUTHKIT_FUZZ_SECONDS=N`` (``make fuzz`` sets 600): the N seconds are shared
  out evenly between the targets collected, and each target re-runs hypothesis
  (fresh random seeds, no example database) until its share is spent.

Every target counts its examples; with ``AUTHKIT_FUZZ_REPORT=FILE`` the counts
are appended to FILE as JSON lines (``bench/reliability_figures.py`` reads them
for docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable

from hypothesis import HealthCheck, settings

_TARGETS = {"count": 1}


def _examples() -> int:
    return max(int(os.environ.get("AUTHKIT_FUZZ_EXAMPLES", "400")), 1)


def _seconds_per_target() -> float | None:
    total = os.environ.get("AUTHKIT_FUZZ_SECONDS")
    if not total:
        return None
    return max(float(total), 0.0) / _TARGETS["count"]


class Counter:
    """How many examples a target ran."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> None:
        self.n += 1


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


def run_fuzz(name: str, target: Callable[[], None], counter: Counter, scale: float = 1.0) -> int:
    """Run the ``@given`` function ``target`` within the budget and return the
    number of examples run.  ``scale`` shrinks the default example count for
    expensive targets (those that start a program per example)."""
    seconds = _seconds_per_target()
    started = time.monotonic()
    if seconds is None:
        fuzz_settings(max(int(_examples() * scale), 5))(target)()
    else:
        per_round = max(int(1000 * scale), 5)
        wrapped = fuzz_settings(per_round)(target)
        while True:
            wrapped()
            if time.monotonic() - started >= seconds:
                break
    elapsed = time.monotonic() - started
    report = os.environ.get("AUTHKIT_FUZZ_REPORT")
    if report:
        with open(report, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"target": name, "examples": counter.n,
                                     "seconds": round(elapsed, 2)}) + "\n")
    assert counter.n > 0, f"fuzz target {name} ran no example"
    return counter.n
