"""The programs authkit installs, and the lean launcher written for each per-login one.

This is the one table of programs.  setup.py (the wheel's scripts), debian/rules
(/usr/sbin of the .deb) and the tests read it; adding a program is one line in
:data:`LEAN_PROGRAMS` (per-login, lean launcher) or :data:`ADMIN_PROGRAMS`
(ordinary console script, listed in pyproject.toml's ``[project.scripts]`` too).

Why a launcher of our own instead of pip's console-script wrapper: pip writes
``#!<its interpreter>`` with no flags, so the wrapper starts with ``site`` (user
site, ``.pth`` files, PYTHON* variables) and imports ``re``; and pip rewrites a
script's first line only when it is ``#!python``, dropping any flags after it.
So the launcher's first line is written here, already final:
``#!/usr/bin/python3 -IS`` (what bin/ and the .deb use), and the script finds the
library installed next to it from its own location:

* ``PREFIX/lib/python3/dist-packages`` (the .deb's /usr, or a ``dpkg-deb -x`` root);
* ``PREFIX/lib/pythonX.Y/site-packages`` or ``dist-packages`` (pip: a virtualenv,
  ``--user``, /usr/local), for the X.Y of the interpreter that runs it;

where PREFIX is the parent of the directory the script really lives in (symlinks
resolved).  The library directory is appended to ``sys.path`` as ``site`` would,
after the standard library.  Rare installs have fall-backs that cost more but work:
a library directory without ``authkit/`` in it (``pip install -e``) is added with
``site.addsitedir`` so that its ``.pth`` import hook runs; a virtualenv of another
Python version re-executes the virtualenv's own ``python3 -IS``.

Not imported at run time by the programs (the launchers are plain text); it
imports nothing beyond ``os`` and ``sys``.  ``python3 -m authkit.cli.launcher DIR``
writes the launchers into DIR (debian/rules does this).
"""

import os
import sys

#: per-login programs: name -> module whose ``main()`` the lean launcher runs.
LEAN_PROGRAMS = {
    "courierpasswd": "authkit.cli.courierpasswd",
    "courieruserinfo": "authkit.cli.courieruserinfo",
    "courierpassd": "authkit.cli.courierpassd",
    "authkitd": "authkit.cli.authkitd",
}

#: administrator's commands: ordinary console scripts (pyproject.toml [project.scripts]).
ADMIN_PROGRAMS = {
    "authkit": "authkit.cli.admin",
}

#: shell scripts installed as they are from bin/ by every route.
SHELL_SCRIPTS = ("getvuserhome.sh",)

#: the interpreter line of every lean launcher.
SHEBANG = "#!/usr/bin/python3 -IS"

_TEMPLATE = '''{shebang}
"""{name}: authkit's lean launcher (written by authkit/cli/launcher.py).

Runs {module}.main() with no site, no user site and no PYTHON* variables,
from the library installed beside this script (see authkit/cli/launcher.py).
"""
import os
import sys


def _add_library() -> None:
    here = os.path.dirname(os.path.realpath(__file__))
    prefix = os.path.dirname(here)
    versioned = os.path.join(prefix, "lib", "python%d.%d" % sys.version_info[:2])
    found = [os.path.join(prefix, "lib", "python3", "dist-packages"),
             os.path.join(versioned, "site-packages"), os.path.join(versioned, "dist-packages")]
    found = [path for path in found if os.path.isdir(path)]
    for path in found:
        if os.path.isdir(os.path.join(path, "authkit")):
            sys.path.append(path)
            return
    if found:  # e.g. pip install -e: a .pth hook in the library directory finds authkit
        import site

        site.addsitedir(found[0])
        return
    venv_python = os.path.join(here, "python3")
    if os.path.exists(venv_python) and os.path.realpath(venv_python) != os.path.realpath(sys.executable):
        os.execv(venv_python, [venv_python, "-IS", __file__] + sys.argv[1:])
    os.write(2, b"{name}: cannot find authkit's library beside " + os.fsencode(here) + b"\\n")
    raise SystemExit(111)


_add_library()
from {module} import main  # noqa: E402

sys.exit(main())
'''


def launcher_text(name: str, programs: "dict | None" = None) -> str:
    """The text of the lean launcher for program ``name`` (of ``programs``, default
    :data:`LEAN_PROGRAMS`)."""
    module = (LEAN_PROGRAMS if programs is None else programs)[name]
    return _TEMPLATE.format(shebang=SHEBANG, name=name, module=module)


def write_launchers(directory: str, programs: "dict | None" = None) -> list:
    """Write a lean launcher for each of ``programs`` (default :data:`LEAN_PROGRAMS`)
    into ``directory``, mode 0755; return their paths."""
    programs = LEAN_PROGRAMS if programs is None else programs
    written = []
    for name in programs:
        path = os.path.join(directory, name)
        with open(path, "w", encoding="utf-8") as out:
            out.write(launcher_text(name, programs))
        os.chmod(path, 0o755)
        written.append(path)
    return written


def main(argv: "list | None" = None) -> int:
    """``[--admin] DIRECTORY``: write the per-login launchers (or, with --admin, the
    administrator's commands as launchers of the same kind, as the .deb installs
    them) into DIRECTORY and print their paths."""
    args = sys.argv[1:] if argv is None else list(argv)
    programs = LEAN_PROGRAMS
    if args[:1] == ["--admin"]:
        programs = ADMIN_PROGRAMS
        args = args[1:]
    if len(args) != 1 or args[0].startswith("-"):
        os.write(2, b"usage: python3 -m authkit.cli.launcher [--admin] DIRECTORY\n")
        return 2
    os.makedirs(args[0], exist_ok=True)
    for path in write_launchers(args[0], programs):
        os.write(1, (path + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
