"""What every lean program (courierpasswd, courieruserinfo, courierpassd) does at
its edge: read its command line (:func:`getopt`, with :data:`COMMON_OPTIONS`),
write a whole buffer to a descriptor (:func:`write_all`), print a usage error
(:func:`usage_error`), close its account source (:func:`close_quietly`) and
turn an error into its exit status (:func:`exit_status`).

This is the per-login path: no argparse (25 ms to import), nothing imported but
``os``, authkit._io and authkit.errors.
"""

from __future__ import annotations

from .._io import write_all
from ..errors import AuthError, Misuse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping, Sequence


#: The options every lean program has (spelling -> (name, takes a value)).
COMMON_OPTIONS = {
    "--stderr": ("stderr", False), "--config": ("config", True),
    "-h": ("help", False), "--help": ("help", False),
    "-V": ("version", False), "--version": ("version", False),
}


def getopt(argv: "Sequence[str]", options: "Mapping[str, tuple[str, bool]]",
           *, permute: bool = True) -> "tuple[list[tuple[str, object]], list[str]]":
    """Parse ``argv`` (without the program name) the way getopt_long does.

    ``options`` maps each spelling (``"-s"``, ``"--service"``) to ``(name,
    takes_value)``.  Short flags cluster (``-cv``); a short option's value is the
    rest of its word or the next word (``-Csha1``, ``-C sha1``); a long option's
    value follows ``=`` or is the next word; long options are spelled in full.
    ``--`` ends the options.  With ``permute`` (GNU), options may follow
    operands; without it (POSIX ``+``), the first operand ends the options and
    everything from it on is an operand (later ``--`` included).

    Returns ``(found, operands)``: ``found`` lists ``(name, value)`` in command
    line order, ``value`` being True for a flag.  Raises ``Misuse`` for an
    unknown option, a missing value or a value given to a flag."""
    found: list = []
    operands: list = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            operands.extend(args[i:])
            break
        if arg.startswith("--"):
            spelling, eq, value = arg.partition("=")
            spec = options.get(spelling)
            if spec is None:
                raise Misuse(f"unknown option {spelling}")
            name, takes_value = spec
            if not takes_value:
                if eq:
                    raise Misuse(f"option {spelling} takes no value")
                found.append((name, True))
                continue
            if not eq:
                if i >= len(args):
                    raise Misuse(f"option {spelling} needs a value")
                value = args[i]
                i += 1
            found.append((name, value))
            continue
        if arg.startswith("-") and arg != "-":
            for j in range(1, len(arg)):
                spelling = "-" + arg[j]
                spec = options.get(spelling)
                if spec is None:
                    raise Misuse(f"unknown option {spelling}")
                name, takes_value = spec
                if not takes_value:
                    found.append((name, True))
                    continue
                value = arg[j + 1 :]
                if not value:
                    if i >= len(args):
                        raise Misuse(f"option {spelling} needs a value")
                    value = args[i]
                    i += 1
                found.append((name, value))
                break
            continue
        if not permute:
            operands.extend(args[i - 1 :])
            break
        operands.append(arg)
    return found, operands


def usage_error(program: str, message: str, usage: str) -> int:
    """Print ``program: message`` and the usage on stderr; return exit 2."""
    try:
        write_all(2, f"{program}: {message}\n{usage}\n".encode("utf-8", "backslashreplace"))
    except OSError:
        pass
    return Misuse.exit_code


def close_quietly(source: object) -> None:
    """Close ``source`` (an account source, or None) if there is one; an error
    while closing changes no verdict and is ignored."""
    if source is not None:
        try:
            source.close()  # type: ignore[attr-defined]
        except Exception:
            pass


def exit_status(exc: BaseException) -> int:
    """The exit status of a run that ended in ``exc``: its class's
    ``exit_code`` for an authkit error (1 rejected, 2 misuse, 111 temporary),
    111 for anything else."""
    return exc.exit_code if isinstance(exc, AuthError) else AuthError.exit_code


__all__ = ["COMMON_OPTIONS", "getopt", "write_all", "usage_error", "close_quietly", "exit_status"]
