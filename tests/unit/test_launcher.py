"""authkit/cli/launcher.py: the one table of programs, and the launchers written from it."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from authkit.cli import launcher

REPO = Path(__file__).resolve().parents[2]


def test_every_program_of_the_table_has_a_main_a_man_page_and_a_bin_launcher() -> None:
    for name, module in {**launcher.LEAN_PROGRAMS, **launcher.ADMIN_PROGRAMS}.items():
        assert callable(importlib.import_module(module).main), module
        assert list((REPO / "docs").glob(f"{name}.[18]")), f"docs/{name}.8 (or .1) missing"
        text = (REPO / "bin" / name).read_text()
        assert text.splitlines()[0] == launcher.SHEBANG, name
        assert f"from {module} import main" in text, name
    for name in launcher.SHELL_SCRIPTS:
        assert os.access(REPO / "bin" / name, os.X_OK), name
        assert (REPO / "docs" / f"{name}.8").is_file(), name


def test_only_the_admin_commands_are_console_script_entry_points() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {name: f"{module}:main" for name, module in launcher.ADMIN_PROGRAMS.items()}


def test_launcher_text_is_python_with_the_final_first_line() -> None:
    for name in launcher.LEAN_PROGRAMS:
        text = launcher.launcher_text(name)
        assert text.startswith(launcher.SHEBANG + "\n")
        compile(text, name, "exec")
        assert f"from {launcher.LEAN_PROGRAMS[name]} import main" in text
        assert "import re" not in text and "import site" not in text.split("if found:")[0]


def test_write_launchers_makes_executables(tmp_path: Path) -> None:
    written = launcher.write_launchers(str(tmp_path))
    assert sorted(Path(p).name for p in written) == sorted(launcher.LEAN_PROGRAMS)
    for path in written:
        assert os.stat(path).st_mode & 0o777 == 0o755


@pytest.mark.skipif(not os.access("/usr/bin/python3", os.X_OK), reason="needs /usr/bin/python3")
def test_a_launcher_without_its_library_exits_111_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "sbin").mkdir()
    launcher.write_launchers(str(tmp_path / "sbin"))
    proc = subprocess.run([str(tmp_path / "sbin" / "courierpasswd"), "-V"], capture_output=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}, timeout=60)
    assert (proc.returncode, proc.stdout) == (111, b"")
    assert b"courierpasswd: cannot find authkit's library beside" in proc.stderr


@pytest.mark.skipif(not os.access("/usr/bin/python3", os.X_OK), reason="needs /usr/bin/python3")
def test_a_launcher_finds_a_library_in_lib_python3_dist_packages(tmp_path: Path) -> None:
    library = tmp_path / "lib" / "python3" / "dist-packages"
    library.mkdir(parents=True)
    (library / "authkit").symlink_to(REPO / "authkit")
    (tmp_path / "sbin").mkdir()
    launcher.write_launchers(str(tmp_path / "sbin"))
    proc = subprocess.run([str(tmp_path / "sbin" / "courieruserinfo"), "-V"], capture_output=True,
                          env={"PATH": "/usr/bin:/bin"}, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith(b"courieruserinfo (authkit) "), proc.stderr


def test_cli_usage_and_admin_flag(tmp_path: Path) -> None:
    assert launcher.main([]) == 2
    assert launcher.main(["--admin", str(tmp_path)]) == 0
    assert sorted(os.listdir(tmp_path)) == sorted(launcher.ADMIN_PROGRAMS)
    proc = subprocess.run([sys.executable, "-m", "authkit.cli.launcher", "-x"], capture_output=True, cwd=REPO)
    assert proc.returncode == 2 and b"usage:" in proc.stderr
