"""One log line per event, to syslog or to stderr: the logging of the programs.

The C originals log "to syslog by default or to stderr if the --stderr switch is
used".  :class:`EventLog` does exactly that with the ``syslog`` C module (0.1 ms to
import; the ``logging`` package costs 20 ms and is kept off the per-login path).

Lines are ``key=value`` pairs after a short verb, e.g.
``courierpasswd: auth user=andrew@example.com service=imap result=ok ip=127.0.0.1``.
Callers pass only names, services, outcomes and addresses: never a password, a
hash or an HMAC state.  :func:`safe` makes a user-supplied name printable (through
authkit.printable: controls, line separators, bidi controls and non-UTF-8 are
escaped, length capped) so that a name cannot forge or disguise a log line.
"""

from __future__ import annotations

from ..printable import printable
from ._edge import write_all


def safe(text: str | bytes, limit: int = 128) -> str:
    """A printable, single-line rendering of untrusted ``text`` for a
    ``key=value`` field: :func:`authkit.printable.printable` with spaces and
    backslashes escaped too, at most ``limit`` characters."""
    return printable(text, limit, escape=" \\")


class EventLog:
    """Writes one line per call to syslog (ident = program name, facility auth) or,
    with ``to_stderr``, to file descriptor 2 as ``<program>: <line>``.

    ``verbose`` lines (``debug``) are written only when ``verbose`` is true, and
    always to stderr (the original's -v)."""

    def __init__(self, program: str, to_stderr: bool = False, verbose: bool = False) -> None:
        self.program = program
        self.to_stderr = to_stderr
        self.verbose = verbose
        self._syslog = None

    def _write_stderr(self, line: str) -> None:
        try:
            write_all(2, f"{self.program}: {line}\n".encode("utf-8", "backslashreplace"))
        except OSError:
            pass

    def event(self, verb: str, **fields: object) -> None:
        """Log ``verb key=value ...`` (values passed through :func:`safe`)."""
        parts = [verb]
        for key, value in fields.items():
            if value is None or value == "":
                continue
            parts.append(f"{key}={safe(value if isinstance(value, (str, bytes)) else str(value))}")
        self.line(" ".join(parts))

    def line(self, line: str, priority: int = 6) -> None:
        """Log a ready-made line (priority: syslog level, 6 = info, 4 = warning,
        3 = err)."""
        if self.to_stderr:
            self._write_stderr(line)
            return
        try:
            if self._syslog is None:
                import syslog

                syslog.openlog(self.program, syslog.LOG_PID, syslog.LOG_AUTH)
                self._syslog = syslog
            self._syslog.syslog(priority, line)
        except Exception:  # syslog unavailable: fall back to stderr, never stdout
            self._write_stderr(line)

    def debug(self, line: str) -> None:
        """A verbose trace line, stderr only, when verbose."""
        if self.verbose:
            self._write_stderr("debug: " + line)


__all__ = ["EventLog", "safe"]
