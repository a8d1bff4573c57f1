"""Shared fixtures: a private Courier authlib per test (see tests/courierlab.py).

``courier_lab`` is a ready :class:`courierlab.CourierLab` (single-file userdb,
3 daemons, daemon not started); ``courier_lab_factory(**options)`` makes labs with
other options (``layout="dir"``, ``defaultoptions=...``, ``debug_login=2``...).
Both skip the test, with the reason, unless running as root with unshare, nsenter
and Courier's userdb/makeuserdb/userdbpw/authtest/authenumerate/authdaemond.
Every lab is closed after the test, leaving no process behind.

Only these fixtures belong here; put others in a conftest.py next to their tests.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from courierlab import CourierLab, missing_requirements  # noqa: E402


def _skip_unless_lab_possible() -> None:
    reasons = missing_requirements()
    if reasons:
        pytest.skip("CourierLab unavailable: " + "; ".join(reasons))


@pytest.fixture
def courier_lab_factory(tmp_path: Path) -> Iterator[Callable[..., CourierLab]]:
    """Return ``make(**options) -> CourierLab``; each lab gets its own directory
    under tmp_path and is closed at teardown."""
    _skip_unless_lab_possible()
    labs: list[CourierLab] = []

    def make(**options: object) -> CourierLab:
        lab = CourierLab(tmp_path / f"lab{len(labs)}", **options)
        labs.append(lab)
        return lab

    yield make
    errors = []
    for lab in labs:
        try:
            lab.close()
        except Exception as exc:  # close every lab, then report
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def courier_lab(courier_lab_factory: Callable[..., CourierLab]) -> CourierLab:
    """A lab with the default options (layout="file", daemons=3)."""
    return courier_lab_factory()
