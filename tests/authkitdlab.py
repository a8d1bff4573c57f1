"""authkitd as a test peer: started on a private socket, stopped, killed.

:class:`Authkitd` runs ``bin/authkitd`` (the real launcher, ``/usr/bin/python3
-IS``) on the host with a private authkit.conf and ``--socket PATH``; it returns
from :meth:`Authkitd.start` once the socket accepts.  Its log (``--stderr -v``)
is :attr:`Authkitd.log_path`.

:func:`use_authkitd` makes a :class:`courierlab.CourierLab` serve through
authkitd instead of Courier's authdaemond: ``start_daemon``/``stop_daemon``/
``daemon_running`` of that lab then manage an authkitd reading the lab's userdb
(its ``<root>/etc/userdb``, the compiled pair beside it) on the lab's socket
``<root>/run/socket``, which inside the lab is Courier's compiled-in
``/run/courier/authdaemon/socket``: Courier's authtest, authenumerate, imapd and
pop3d then talk to authkitd.  DEFAULTOPTIONS is taken from the lab's
authdaemonrc, as Courier's daemon takes it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / "bin" / "authkitd"


def _term_when_parent_dies() -> None:
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)


def connectable(path: Path | str) -> bool:
    """True when a unix socket at ``path`` accepts a connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


class Authkitd:
    """One authkitd process.  ``config`` is the text of its authkit.conf
    (written to ``<root>/authkit.conf``); ``socket_path`` its socket."""

    def __init__(self, root: Path, socket_path: Path | str, config: str,
                 env: dict | None = None, prefix: list[str] | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_path = Path(socket_path)
        self.config_path = self.root / "authkit.conf"
        self.config_path.write_text(config)
        self.log_path = self.root / "authkitd.log"
        self.env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        self.env.update(env or {})
        self.prefix = list(prefix or [])
        self.proc: subprocess.Popen | None = None

    def argv(self) -> list[str]:
        return [*self.prefix, str(BIN), "--config", str(self.config_path), "--socket", str(self.socket_path),
                "--stderr", "-v"]

    def start(self, timeout: float = 20) -> "Authkitd":
        """Start it; return once the socket accepts (raises RuntimeError with the
        log when it exits or does not come up within ``timeout`` s)."""
        if self.running():
            raise RuntimeError("authkitd already running")
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, env=self.env, start_new_session=True,
                                         preexec_fn=_term_when_parent_dies)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"authkitd exited {self.proc.returncode}: {self.log()}")
            if self.socket_path.exists() and connectable(self.socket_path) and "listening on" in self.log():
                return self
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"authkitd did not come up: {self.log()}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not end.  The exit status."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL (a crash) and reap."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, text: str, timeout: float = 20) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return True
            time.sleep(0.02)
        return False


def _lab_defaultoptions(lab) -> str:
    """DEFAULTOPTIONS of the lab's authdaemonrc (the last one written)."""
    value = ""
    for line in (lab.etc_dir / "authdaemonrc").read_text().splitlines():
        key, sep, rest = line.partition("=")
        if sep and key.strip() == "DEFAULTOPTIONS":
            value = rest.strip().strip('"')
    return value


def lab_config(lab, extra: str = "") -> str:
    """An authkit.conf serving the lab's userdb."""
    return (f"source = userdb\nuserdb = {lab.userdb_path}\n"
            f"default_options = {_lab_defaultoptions(lab)}\n" + extra)


def use_authkitd(lab, extra_config: str = "", env: dict | None = None) -> None:
    """Make ``lab``'s start_daemon/stop_daemon/daemon_running run authkitd on
    the lab's socket instead of Courier's authdaemond.  ``lab.authkitd`` is the
    :class:`Authkitd` of the last start."""
    courier_stop = lab.stop_daemon
    lab.authkitd = None

    def start_daemon(timeout: float = 20) -> None:
        if lab.authkitd is not None and lab.authkitd.running():
            raise RuntimeError("authkitd already running")
        with contextlib.suppress(OSError):
            lab.socket_path.unlink()
        lab.authkitd = Authkitd(lab.root / "authkitd", lab.socket_path,
                                lab_config(lab, extra_config), env)
        lab.authkitd.start(timeout)

    def stop_daemon(timeout: float = 30) -> None:
        if lab.authkitd is not None:
            lab.authkitd.stop(timeout)
        courier_stop()

    def daemon_running() -> bool:
        return lab.authkitd is not None and lab.authkitd.running()

    lab.start_daemon = start_daemon
    lab.stop_daemon = stop_daemon
    lab.daemon_running = daemon_running
    lab.daemon_kind = "authkitd"


def courier_or_authkitd(request, lab) -> str:
    """For a fixture parametrized ``["courier", "authkitd"]``: switch ``lab`` to
    authkitd for the second; the name of the daemon."""
    if request.param == "authkitd":
        use_authkitd(lab)
    else:
        lab.daemon_kind = "courier"
    return request.param


__all__ = ["Authkitd", "connectable", "courier_or_authkitd", "lab_config", "use_authkitd"]
