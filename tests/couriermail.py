"""Courier's IMAP and POP3 servers for a test, inside a CourierLab namespace.

Debian's ``courier-imap`` conflicts with ``dovecot-imapd`` (both "Conflicts:
imap-server"), and the Dovecot tests need the latter installed, so
:func:`courier_imap_tree` does not need ``courier-imap`` installed: when
``/usr/bin/imapd`` is absent it unpacks the package's ``.deb`` (from apt's cache,
else ``apt-get download``) into a private directory with ``dpkg-deb -x``.  Its
programs use only libraries of courier-base (installed with courier-pop).

:class:`MailServer` runs Courier's ``couriertcpd`` on 127.0.0.1 in the lab's
mount namespace, the way Debian's ``/usr/lib/courier/imapd`` and ``pop3d``
start it (``couriertcpd -address=... -nodnslookup -noidentlookup PORT
<login program> <server> Maildir`` under ``env -i`` with the package's
settings file sourced), minus courierlogger and the access file.  Inside the lab
the login program's authdaemond socket is the lab's, so it authenticates through
whatever daemon the lab runs.  The port is a free one found by binding port 0
(retried if couriertcpd loses the race).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

COURIERTCPD = "/usr/sbin/couriertcpd"
POP3LOGIN = "/usr/lib/courier/courier/courierpop3login"
POP3D = "/usr/lib/courier/courier/courierpop3d"
POP3D_SETTINGS = "/etc/courier/pop3d"


def courier_imap_tree(workdir: Path) -> tuple[str, str, str] | str:
    """``(imaplogin, imapd, settings file)`` of an installed or unpacked
    courier-imap, or the reason it is unavailable (a string)."""
    if os.path.exists("/usr/bin/imapd") and os.path.exists("/usr/lib/courier/courier/imaplogin") \
            and os.path.exists("/etc/courier/imapd"):
        settings = workdir / "imapd.settings"
        shutil.copy("/etc/courier/imapd", settings)
        return "/usr/lib/courier/courier/imaplogin", "/usr/bin/imapd", str(settings)
    debs = sorted(glob.glob("/var/cache/apt/archives/courier-imap_*.deb"))
    if not debs and shutil.which("apt-get"):
        download = workdir / "deb"
        download.mkdir(exist_ok=True)
        subprocess.run(["apt-get", "download", "-q", "courier-imap"], cwd=download,
                       capture_output=True, timeout=300)
        debs = sorted(glob.glob(str(download / "courier-imap_*.deb")))
    if not debs:
        return "courier-imap is neither installed nor downloadable (apt-get download courier-imap)"
    tree = workdir / "courier-imap"
    subprocess.run(["dpkg-deb", "-x", debs[-1], str(tree)], check=True, capture_output=True, timeout=120)
    return (str(tree / "usr/lib/courier/courier/imaplogin"), str(tree / "usr/bin/imapd"),
            str(tree / "etc/courier/imapd"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MailServer:
    """couriertcpd serving ``login_argv`` on 127.0.0.1 inside ``lab``'s
    namespace, with ``settings`` (a shell file of KEY=value lines) sourced
    into an empty environment, plus ``extra_env``."""

    def __init__(self, lab, settings: str, login_argv: list[str], extra_env: dict | None = None) -> None:
        self.lab = lab
        self.settings = settings
        self.login_argv = login_argv
        self.extra_env = extra_env or {}
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log_path = Path(lab.root) / f"couriertcpd-{os.path.basename(login_argv[0])}.log"

    def start(self, timeout: float = 20) -> "MailServer":
        for _ in range(5):
            self.port = free_port()
            assignments = " ".join(f"{key}='{value}'" for key, value in self.extra_env.items())
            script = (f"set -a; . '{self.settings}'; {assignments} "
                      f"exec {COURIERTCPD} -address=127.0.0.1 -nodnslookup -noidentlookup "
                      f"-maxprocs=20 -maxperip=20 {self.port} " + " ".join(self.login_argv))
            log = open(self.log_path, "ab")
            try:
                self.proc = subprocess.Popen(
                    self.lab.nsenter_argv(["/usr/bin/env", "-i", "PATH=/usr/bin:/bin:/usr/sbin:/sbin",
                                           "/bin/sh", "-c", script]),
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
            finally:
                log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=2):
                        return self
                except OSError:
                    time.sleep(0.05)
            self.stop()
        raise RuntimeError(f"couriertcpd did not start: {self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        from stacktools import stop_process

        proc, self.proc = self.proc, None
        stop_process(proc)


def make_maildir(home: Path, uid: int, gid: int) -> None:
    """``home/Maildir`` with cur, new, tmp, owned by ``uid:gid``, holding one
    message in new/."""
    maildir = home / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    (maildir / "new" / "1700000000.M1P1.lab").write_bytes(
        b"From: lab@example.com\r\nSubject: hello\r\n\r\nfirst message\r\n")
    for path in [home, *home.rglob("*")]:
        os.chown(path, uid, gid)
    os.chmod(home, 0o755)


__all__ = ["MailServer", "courier_imap_tree", "free_port", "make_maildir"]
