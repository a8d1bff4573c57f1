"""Counts the fuzz targets so that _budget can share AUTHKIT_FUZZ_SECONDS out
(see tests/fuzz/_budget.py for the budgets)."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _budget  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Count the fuzz targets collected, to share AUTHKIT_FUZZ_SECONDS out."""
    here = os.path.dirname(os.path.abspath(__file__))
    count = sum(1 for item in items if str(item.fspath).startswith(here))
    _budget._TARGETS["count"] = max(count, 1)
