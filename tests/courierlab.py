"""CourierLab: a private Courier authlib for one test, in its own mount namespace.

Courier's tools have their paths compiled in (``/etc/courier/userdb``,
``/etc/courier/authdaemonrc``, ``/etc/courier/userdb.dat``,
``/run/courier/authdaemon/socket``; see spec courier-authlib.md section 0).  A lab
gives them a private view of those two directories without touching the machine's:

* ``<root>/etc`` is bind-mounted onto ``/etc/courier``;
* a private tmpfs is mounted on ``/run/courier`` and ``<root>/run`` is bind-mounted
  onto ``/run/courier/authdaemon`` inside it.

The mounts live in a new mount namespace (``unshare -m --propagation private``) held
open by a "holder" shell waiting on its stdin.  Every Courier command runs inside it with
``nsenter -t <holder pid> -m``.  Because ``<root>/run`` is a real directory, the
daemon's socket is reachable from the host at ``<root>/run/socket``.

What it is not: a sandbox.  Processes run as root with the host's users, network
and every other path; only the two Courier directories are private.

``close()`` stops the daemon, kills every process left in the lab's mount namespace
(found by comparing ``/proc/<pid>/ns/mnt`` with the holder's, so only processes the
lab started), then the holder.  Requires root, util-linux ``unshare``/``nsenter``
and the Debian packages courier-authlib, courier-authlib-userdb, courier-authdaemon.

    with CourierLab(tmp_path) as lab:
        lab.add_user("andrew@example.com", "secret", mail="/home/vmail/andrew/Maildir")
        lab.makeuserdb()
        lab.start_daemon()
        assert lab.authtest("-s", "imap", "andrew@example.com", "secret").returncode == 0
        reply = lab.request(b"PRE . imap andrew@example.com\\n")
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

USERDB = "/usr/sbin/userdb"
MAKEUSERDB = "/usr/sbin/makeuserdb"
USERDBPW = "/usr/sbin/userdbpw"
AUTHTEST = "/usr/sbin/authtest"
AUTHENUMERATE = "/usr/sbin/authenumerate"
AUTHDAEMOND = "/usr/lib/courier/courier-authlib/authdaemond"

#: Programs a lab cannot work without; the conftest skips when one is missing.
REQUIRED_PROGRAMS = ("unshare", "nsenter", USERDB, MAKEUSERDB, USERDBPW, AUTHTEST,
                     AUTHENUMERATE, AUTHDAEMOND)

#: The environment of every command run in the lab (plus ``env=`` of the call).
BASE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "LC_ALL": "C"}


def missing_requirements() -> list[str]:
    """Return why a lab cannot run here (empty list when it can): not root,
    a program missing, or no /etc/courier mount point."""
    reasons = []
    if os.geteuid() != 0:
        reasons.append("not running as root")
    for prog in REQUIRED_PROGRAMS:
        if not (os.access(prog, os.X_OK) if prog.startswith("/") else shutil.which(prog)):
            reasons.append(f"{prog} not found")
    if not os.path.isdir("/etc/courier"):
        reasons.append("/etc/courier does not exist (install courier-authlib)")
    return reasons


def _term_when_parent_dies() -> None:
    """preexec_fn: PR_SET_PDEATHSIG(SIGTERM), so authdaemond (which takes its
    children with it) ends if the test process dies without close()."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)


class LabError(RuntimeError):
    """The lab could not be set up or a command inside it failed."""


class CourierLab:
    """One private Courier authlib (userdb + authdaemond) under ``root``.

    ``layout`` is ``"file"`` (``/etc/courier/userdb`` is one file) or ``"dir"`` (a
    directory of files, e.g. ``userdb/example.com``).  ``daemons``,
    ``defaultoptions`` and ``debug_login`` go to authdaemonrc.  With
    ``debug_login`` > 0 the daemon's log is ``log_path`` (its stderr).
    """

    def __init__(self, root: Path, *, layout: str = "file", daemons: int = 3,
                 defaultoptions: str = "", debug_login: int = 0) -> None:
        if layout not in ("file", "dir"):
            raise ValueError(f"layout must be 'file' or 'dir', not {layout!r}")
        self.root = Path(root)
        self.layout = layout
        self.daemons = daemons
        self.defaultoptions = defaultoptions
        self.debug_login = debug_login
        self.etc_dir = self.root / "etc"
        self.run_dir = self.root / "run"
        self.userdb_path = self.etc_dir / "userdb"
        self.dat_path = self.etc_dir / "userdb.dat"
        self.shadow_path = self.etc_dir / "userdbshadow.dat"
        self.socket_path = self.run_dir / "socket"
        self.log_path = self.root / "authdaemond.log"
        self._holder: subprocess.Popen | None = None
        self._daemon: subprocess.Popen | None = None
        self._mntns: str | None = None
        # An open fd of the namespace keeps it (and so its inode number) alive
        # until close() has killed what is in it: a freed namespace's number is
        # reused by the next one made, maybe another test run's lab.
        self._mntns_fd: int | None = None
        self._setup()

    # ------------------------------------------------------------------ set-up

    def _setup(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.etc_dir.mkdir(mode=0o755, exist_ok=True)
        self.run_dir.mkdir(mode=0o750, exist_ok=True)
        os.chmod(self.etc_dir, 0o755)
        os.chmod(self.run_dir, 0o750)
        if self.layout == "dir":
            self.userdb_path.mkdir(mode=0o700, exist_ok=True)
            os.chmod(self.userdb_path, 0o700)
        elif not self.userdb_path.exists():
            self.userdb_path.touch(mode=0o600)
            os.chmod(self.userdb_path, 0o600)
        self.write_authdaemonrc()
        self._start_holder()

    def write_authdaemonrc(self, **extra: str) -> None:
        """(Re)write ``etc/authdaemonrc`` from the lab's settings; ``extra``
        adds ``NAME="value"`` lines.  Takes effect at the next start_daemon()."""
        lines = [
            'authmodulelist="authuserdb"',
            f"daemons={int(self.daemons)}",
            "authdaemonvar=/run/courier/authdaemon",
            f"DEBUG_LOGIN={int(self.debug_login)}",
            f'DEFAULTOPTIONS="{self.defaultoptions}"',
            'LOGGEROPTS=""',
        ]
        lines += [f'{k}="{v}"' for k, v in extra.items()]
        rc = self.etc_dir / "authdaemonrc"
        rc.write_text("\n".join(lines) + "\n")
        os.chmod(rc, 0o640)

    def _start_holder(self) -> None:
        # /run/courier normally exists (courier-authdaemon's tmpfiles.d); if not, a
        # private tmpfs over /run gives a mount point without touching the host.
        run_mount = "/run/courier" if os.path.isdir("/run/courier") else "/run"
        script = (
            "set -e\n"
            'mount --bind "$1" /etc/courier\n'
            'mount -t tmpfs -o mode=0775,size=1m courierlab "$3"\n'
            "mkdir -p /run/courier/authdaemon\n"
            'mount --bind "$2" /run/courier/authdaemon\n'
            "echo ready\n"
            # Hold the namespace until our end of stdin closes (close(), or the
            # test process dying), so a crashed run leaves no holder behind.
            "read _ || true\n"
        )
        self._holder = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "/bin/sh", "-c", script,
             "courierlab-holder", str(self.etc_dir), str(self.run_dir), run_mount],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True,
        )
        line = self._holder.stdout.readline()
        if line != b"ready\n":
            try:
                self._holder.wait(5)
                err = self._holder.stderr.read()
            except subprocess.TimeoutExpired:
                err = b""
            self._kill_holder()
            raise LabError(f"cannot set up the lab namespace: {line!r} {err!r}")
        self._mntns_fd = os.open(f"/proc/{self._holder.pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        self._mntns = os.readlink(f"/proc/{self._holder.pid}/ns/mnt")
        if self._mntns == os.readlink("/proc/self/ns/mnt"):
            self._kill_holder()
            self._release_namespace()
            raise LabError("holder is not in a new mount namespace")

    @property
    def holder_pid(self) -> int:
        """The pid whose mount namespace the lab's commands enter."""
        if self._holder is None or self._holder.poll() is not None:
            raise LabError("the lab is closed")
        return self._holder.pid

    # --------------------------------------------------------------- commands

    def nsenter_argv(self, argv: list[str]) -> list[str]:
        """``argv`` prefixed to run inside the lab's mount namespace."""
        return ["nsenter", "-t", str(self.holder_pid), "-m", "--", *argv]

    def run(self, argv: list[str], input: bytes | None = None, check: bool = True,
            env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run ``argv`` inside the namespace with BASE_ENV (+ ``env``); capture
        stdout/stderr as bytes.  ``check`` raises LabError on a nonzero exit,
        with the command's stderr in the message."""
        full_env = dict(BASE_ENV)
        if env:
            full_env.update(env)
        proc = subprocess.run(
            self.nsenter_argv([str(a) for a in argv]), input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True, env=full_env, timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise LabError(
                f"{argv!r} exited {proc.returncode}: "
                f"{proc.stderr.decode(errors='replace').strip()}"
            )
        return proc

    def userdb(self, name: str, *args: str, input: bytes | None = None,
               check: bool = True) -> subprocess.CompletedProcess:
        """Courier's ``/usr/sbin/userdb NAME ARGS...`` (e.g. ``set uid=5000``,
        ``unset f``, ``del``).  For layout="dir", name is ``file/address``."""
        return self.run([USERDB, name, *args], input=input, check=check)

    def userdbpw(self, password: str | bytes, *flags: str) -> str:
        """Courier's ``userdbpw FLAGS`` fed the password on stdin (no tty: read
        once); returns the hash or HMAC secret it prints."""
        if isinstance(password, str):
            password = password.encode()
        proc = self.run([USERDBPW, *flags], input=password + b"\n")
        return proc.stdout.decode().strip()

    def add_user(self, name: str, password: str | None = None, *,
                 pw_field: str = "systempw", pw_flags: tuple = ("-md5",),
                 file: str | None = None, **fields: str) -> None:
        """Add (or update) a user with Courier's ``userdb NAME set ...``.

        Defaults: uid=5000 gid=5000 home=/home/vmail/<name>.  With ``password``,
        ``userdbpw PW_FLAGS`` hashes it into field ``pw_field``.  ``file`` (layout
        "dir") is the file under userdb/, e.g. "example.com".  Field names with a
        ``-`` can be given through ``**{"pop3-hmac-md5pw": ...}``.
        """
        values = {"uid": "5000", "gid": "5000", "home": f"/home/vmail/{name}"}
        values.update(fields)
        if password is not None:
            values[pw_field] = self.userdbpw(password, *pw_flags)
        if file is None and self.layout == "dir":
            file = name.rpartition("@")[2] or "default"
        target = f"{file}/{name}" if file else name
        self.userdb(target, "set", *(f"{k}={v}" for k, v in values.items()))

    def makeuserdb(self, check: bool = True) -> subprocess.CompletedProcess:
        """Courier's own ``makeuserdb`` (default paths, so ``_`` is right)."""
        return self.run([MAKEUSERDB], check=check)

    # ------------------------------------------------------------------ daemon

    def start_daemon(self, timeout: float = 10) -> None:
        """Start authdaemond inside the namespace the way Debian's wrapper does
        (``set -a; . authdaemonrc``) but without courierlogger: its stderr (the
        DEBUG_LOGIN log) goes to ``log_path``.  Returns once the socket accepts."""
        if self._daemon is not None and self._daemon.poll() is None:
            raise LabError("authdaemond already running")
        with contextlib.suppress(OSError):
            self.socket_path.unlink()
        log = open(self.log_path, "ab")
        try:
            self._daemon = subprocess.Popen(
                self.nsenter_argv(["/bin/sh", "-c",
                                   "set -a; . /etc/courier/authdaemonrc; exec " + AUTHDAEMOND]),
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=dict(BASE_ENV),
                start_new_session=True, preexec_fn=_term_when_parent_dies,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._daemon.poll() is not None:
                raise LabError(f"authdaemond exited {self._daemon.returncode}: {self.daemon_log()}")
            if self.socket_path.exists():
                try:
                    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                        s.connect(str(self.socket_path))
                    return
                except OSError:
                    pass
            time.sleep(0.02)
        self.stop_daemon()
        raise LabError("authdaemond did not create its socket in time")

    def stop_daemon(self, timeout: float = 10) -> None:
        """SIGTERM authdaemond (it kills its children) and wait; then SIGKILL any
        process other than the holder still in the namespace."""
        daemon, self._daemon = self._daemon, None
        if daemon is not None and daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        self._kill_namespace_processes(keep_holder=True)

    def daemon_running(self) -> bool:
        return self._daemon is not None and self._daemon.poll() is None

    def daemon_log(self) -> str:
        """What authdaemond wrote on stderr so far (DEBUG_LOGIN output)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def request(self, data: bytes, timeout: float = 15) -> bytes:
        """Send one raw request to the daemon's socket from the host and return
        everything it writes until it closes (one request per connection)."""
        from stacktools import exchange

        return exchange(self.socket_path, data, timeout)

    def authtest(self, *args: str, env: dict | None = None,
                 timeout: float = 60) -> subprocess.CompletedProcess:
        """Courier's ``authtest ARGS`` inside the lab (never raises on exit code)."""
        return self.run([AUTHTEST, *args], check=False, env=env, timeout=timeout)

    def authenumerate(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        """Courier's ``authenumerate ARGS`` inside the lab (never raises on exit code)."""
        return self.run([AUTHENUMERATE, *args], check=False, env=env)

    # ---------------------------------------------------------------- clean-up

    def namespace_pids(self) -> list[int]:
        """Pids of every process in the lab's mount namespace (holder included)."""
        pids = []
        if self._mntns is None:
            return pids
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{entry}/ns/mnt") == self._mntns:
                    pids.append(int(entry))
            except OSError:
                continue
        return pids

    def _kill_namespace_processes(self, keep_holder: bool) -> None:
        holder = self._holder.pid if self._holder is not None else None
        for _ in range(50):
            pids = [p for p in self.namespace_pids() if not (keep_holder and p == holder)]
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
        raise LabError(f"processes left in the lab namespace: {pids}")

    def _kill_holder(self) -> None:
        holder, self._holder = self._holder, None
        if holder is None:
            return
        if holder.poll() is None:
            holder.kill()
        holder.wait()
        for stream in (holder.stdin, holder.stdout, holder.stderr):
            if stream is not None:
                stream.close()

    def close(self) -> None:
        """Stop the daemon and every process of the namespace, then the holder.
        Idempotent; leaves no process behind (raises LabError if one survives)."""
        if self._holder is None:
            return
        try:
            self.stop_daemon()
            self._kill_namespace_processes(keep_holder=True)
        finally:
            self._kill_holder()
            try:
                self._kill_namespace_processes(keep_holder=False)
            finally:
                self._release_namespace()

    def _release_namespace(self) -> None:
        """Let the namespace go (after the last scan of it): from here on its
        inode number may name another namespace, so stop matching it."""
        fd, self._mntns_fd = self._mntns_fd, None
        self._mntns = None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> CourierLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

