"""Build hooks that pyproject.toml cannot express (metadata stays in pyproject.toml).

* The per-login programs are scripts of our own, written from the one table in
  authkit/cli/launcher.py with the final ``#!/usr/bin/python3 -IS`` line, instead of
  pip's console-script wrappers (which start with ``site`` and import ``re``);
  setuptools' own build_scripts would turn that line into ``#!python -IS`` and pip
  would then drop the flags, so these are written after it has run.
* bin/getvuserhome.sh is installed as a script by every route.
* The man pages and contrib/ go into the wheel as data: share/man/manN/ and
  share/doc/authkit/contrib/.
"""

import importlib.util
import os
from glob import glob

from setuptools import setup
from setuptools.dist import Distribution

build_scripts = Distribution().get_command_class("build_scripts")  # setuptools' own distutils copy

HERE = os.path.dirname(os.path.abspath(__file__))


def _launcher_module():
    """authkit/cli/launcher.py loaded by path (no import of the package at build time)."""
    spec = importlib.util.spec_from_file_location(
        "authkit_launcher", os.path.join(HERE, "authkit", "cli", "launcher.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LAUNCHER = _launcher_module()


class build_lean_scripts(build_scripts):
    """build_scripts, then the lean launchers written as they are (no shebang rewrite)."""

    def run(self):
        super().run()
        self.mkpath(self.build_dir)
        LAUNCHER.write_launchers(self.build_dir)


def _data_files():
    files = [(f"share/man/man{section}", sorted(glob(f"docs/*.{section}"))) for section in "158"]
    for directory, _subdirs, names in sorted(os.walk("contrib")):
        paths = sorted(os.path.join(directory, name) for name in names)
        if paths:
            files.append((os.path.join("share/doc/authkit", directory), paths))
    return files


setup(
    scripts=[f"bin/{name}" for name in LAUNCHER.SHELL_SCRIPTS],
    data_files=_data_files(),
    cmdclass={"build_scripts": build_lean_scripts},
)
