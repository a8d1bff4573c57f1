"""Every program module of authkit.cli runs its ``main`` under ``python -m``
(an ``if __name__ == "__main__": sys.exit(main())`` block): an unknown option is
a usage error, exit 2, not a silent exit 0."""

import subprocess
import sys
from pathlib import Path

import pytest

import authkit.cli

PROGRAMS = sorted(p.stem for p in Path(authkit.cli.__file__).parent.glob("*.py")
                  if not p.name.startswith("_"))


def test_the_program_modules_are_found():
    assert {"courierpasswd", "courierpassd", "courieruserinfo", "admin", "authkitd"} <= set(PROGRAMS)


@pytest.mark.parametrize("module", PROGRAMS)
def test_python_m_runs_main(module):
    proc = subprocess.run([sys.executable, "-m", f"authkit.cli.{module}", "--no-such-option"],
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stderr
    assert proc.stdout == b""
