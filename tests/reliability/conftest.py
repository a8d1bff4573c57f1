"""Puts tests/reliability on sys.path so that its tests can import ``_rel``."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
