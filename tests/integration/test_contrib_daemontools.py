"""contrib/daemontools under Debian's real daemontools and ucspi-tcp.

The run scripts are copied into a temporary service directory with only their
variable lines changed (COURIERPASSD -> bin/courierpassd, PORT -> a free port,
LOGDIR -> a temporary directory); every other line must stay byte-identical.
``svscan`` starts ``supervise`` for courierpassd and its log, exactly as on a
system with /service or /etc/service.  courierpassd finds the account source
through ``AUTHKIT_CONFIG`` in svscan's environment (inherited by supervise,
tcpserver and courierpassd), naming a copy of examples/userdb.

Then: a raw poppassd dialogue changes a password; multilog's ``current`` gets
tcpserver's lines and courierpassd's ``result=changed`` line (timestamped by
``multilog t``, no password anywhere); ``svc -d`` stops tcpserver and the port
closes.  Every process (svscan, supervise, tcpserver, multilog) runs in one
session started here and is killed by that session's process group at the end.

Also: contrib/qmail/smtprc and contrib/daemontools/tofmipd/run parse (sh -n) and
keep the seed installation's command lines; smtprc's memory limit lets
courierpasswd run under the real softlimit.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from stacktools import free_port, password_works, poppassd_dialogue

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CONTRIB = REPO / "contrib"
EXAMPLE_USERDB = REPO / "examples" / "userdb"
TOOLS = ("svscan", "supervise", "svc", "svstat", "multilog", "tcpserver", "softlimit")

USER, OLD, NEW = "andrew@example.com", "Andrew-Imap-1", "Daemontools-Pw-9"


def _require_tools(*tools: str) -> None:
    for tool in tools:
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed (Debian packages daemontools, ucspi-tcp)")


def set_variables(text: str, **values: str) -> str:
    """``text`` with each ``NAME=...`` line (at the start of a line) replaced by
    ``NAME=value``; every NAME must be there exactly once."""
    for name, value in values.items():
        pattern = re.compile(rf"^{name}=.*$", re.MULTILINE)
        assert len(pattern.findall(text)) == 1, f"{name}= is not a variable line of the script"
        text = pattern.sub(lambda _m: f"{name}={value}", text)
    return text


def changed_lines(original: str, adjusted: str) -> set[str]:
    """The variable names whose lines differ; fails if any other line differs."""
    old, new = original.splitlines(), adjusted.splitlines()
    assert len(old) == len(new)
    names = set()
    for a, b in zip(old, new):
        if a != b:
            match = re.match(r"^([A-Z_]+)=", a)
            assert match and b.startswith(match.group(1) + "="), f"non-variable line changed: {a!r}"
            names.add(match.group(1))
    return names


def install_script(source: Path, target: Path, **values: str) -> None:
    original = source.read_text()
    adjusted = set_variables(original, **values)
    assert changed_lines(original, adjusted) <= set(values)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(adjusted)
    target.chmod(0o755)


def poppassd_change(port: int, user: str, old: str, new: str) -> list[bytes]:
    """The server's replies to user/pass/newpass/quit, raw (CRLF kept)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        return poppassd_dialogue(sock.makefile("rwb"), user, old, new)


def wait_for(predicate, timeout: float = 15.0, what: str = "condition") -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def session_pids(sid: int) -> list[int]:
    """Processes whose session id is ``sid`` (everything svscan started)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getsid(int(entry)) == sid:
                pids.append(int(entry))
        except OSError:
            continue
    return pids


def stop_svscan(svscan: subprocess.Popen, service: Path, names: "tuple[str, ...]") -> None:
    """Take the services ``names`` under ``service`` down (``svc -dx``), then
    svscan's whole session: SIGTERM to svscan, SIGKILL if it does not exit, and
    SIGKILL to what is left of its session for up to 10 s."""
    for name in names:
        subprocess.run(["svc", "-dx", str(service / name)], capture_output=True, timeout=10)
    try:
        os.killpg(svscan.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        svscan.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(svscan.pid, signal.SIGKILL)
        svscan.wait(10)
    deadline = time.monotonic() + 10
    while session_pids(svscan.pid) and time.monotonic() < deadline:
        for pid in session_pids(svscan.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def userdb_copy(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "userdb"
    shutil.copyfile(EXAMPLE_USERDB, target)
    target.chmod(0o600)
    return target


def nobody_dir() -> Path:
    """A fresh directory under /tmp that nobody can enter (0755), owned by nobody
    when running as root; the caller removes it."""
    import pwd
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="authkit-contrib-"))
    path.chmod(0o755)
    if os.geteuid() == 0:
        entry = pwd.getpwnam("nobody")
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def as_nobody(argv: list[str]) -> list[str]:
    """``argv`` run as nobody with no supplementary groups when we are root (the
    way tcpserver -u/-g runs qmail-smtpd), unchanged otherwise."""
    if os.geteuid() != 0:
        return argv
    import pwd

    entry = pwd.getpwnam("nobody")
    return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups", *argv]


@pytest.fixture
def service_tree(tmp_path: Path):  # noqa: ANN201
    """(service dir, log dir, userdb copy, port) with the contrib scripts installed."""
    _require_tools(*TOOLS)
    if os.geteuid() != 0:
        pytest.skip("needs root: courierpassd under tcpserver rewrites a root-owned userdb like the seed's")
    port = free_port()
    userdb = userdb_copy(tmp_path / "etc")
    config = tmp_path / "etc" / "authkit.conf"
    config.write_text(f"userdb = {userdb}\nbad_pass_delay = 0\n")
    service = tmp_path / "service"
    logdir = tmp_path / "log" / "courierpassd"
    logdir.mkdir(parents=True)
    install_script(CONTRIB / "daemontools/courierpassd/run", service / "courierpassd/run",
                   TCPSERVER=shutil.which("tcpserver"), COURIERPASSD=str(REPO / "bin/courierpassd"),
                   PORT=str(port))
    install_script(CONTRIB / "daemontools/courierpassd/log/run", service / "courierpassd/log/run",
                   MULTILOG=shutil.which("multilog"), LOGDIR=str(logdir))
    return service, logdir, userdb, config, port


def test_courierpassd_run_scripts_under_svscan_change_a_password_and_log_to_multilog(service_tree) -> None:  # noqa: ANN001
    service, logdir, userdb, config, port = service_tree
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "AUTHKIT_CONFIG": str(config)}
    svscan = subprocess.Popen(["svscan", str(service)], env=env, start_new_session=True,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: accepts(port), what="courierpassd's port under supervise")
        replies = poppassd_change(port, USER, OLD, NEW)
        assert replies[0].startswith(b"200 courierpassd v") and replies[0].endswith(b"\r\n")
        assert [r[:3] for r in replies] == [b"200"] * 5, replies
        assert replies[3] == b"200 Password changed\r\n"

        current = logdir / "current"
        wait_for(lambda: current.exists() and b"result=changed" in current.read_bytes(),
                 what="courierpassd's 'changed' line in multilog's current")
        # the readiness probe's own connection ends too (status 256: it sent nothing),
        # possibly after the change's: wait for the change's end line itself
        wait_for(lambda: re.search(rb"tcpserver: end \d+ status 0", current.read_bytes()),
                 what="tcpserver's end line of the change")
        log = current.read_bytes()
        changed = [line for line in log.splitlines() if b"result=changed" in line]
        assert len(changed) == 1
        # multilog t: "@" + 24 hex digits (TAI64N) before each line
        assert re.match(rb"^@[0-9a-f]{24} courierpassd: passwd user=andrew@example\.com .*service=imap", changed[0])
        assert re.search(rb"^@[0-9a-f]{24} tcpserver: ok \d+ ", log, re.MULTILINE)
        assert re.search(rb"tcpserver: end \d+ status 0", log)
        for secret in (OLD, NEW):
            assert secret.encode() not in log

        assert password_works(userdb, USER, NEW)
        assert not password_works(userdb, USER, OLD)

        subprocess.run(["svc", "-d", str(service / "courierpassd")], check=True, timeout=10)
        wait_for(lambda: not accepts(port), what="the port to close after svc -d")
        wait_for(lambda: b"down" in subprocess.run(["svstat", str(service / "courierpassd")],
                                                   capture_output=True, timeout=10).stdout,
                 what="svstat to report down")
    finally:
        stop_svscan(svscan, service, ("courierpassd", "courierpassd/log"))
    assert session_pids(svscan.pid) == [], "a daemontools process outlived the test"


def test_run_scripts_change_only_variable_lines_and_keep_the_seed_command() -> None:
    run = (CONTRIB / "daemontools/courierpassd/run").read_text()
    assert "exec $TCPSERVER -v -R -l $LOCALNAME \\\n$IP $PORT $COURIERPASSD -s $SERVICE --stderr 2>&1" in run
    assert re.search(r"^IP=127\.0\.0\.1$", run, re.MULTILINE)
    assert re.search(r"^PORT=pop3pw$", run, re.MULTILINE)
    log_run = (CONTRIB / "daemontools/courierpassd/log/run").read_text()
    assert "exec $MULTILOG t $LOGDIR" in log_run
    tofmipd = (CONTRIB / "daemontools/tofmipd/run").read_text()
    assert "-A \\\"$COURIERPASSWD -s $SERVICE -- $TRUE\\\"" in tofmipd
    assert "-S $GETVUSERHOME" in tofmipd and "-f -p $LISTEN" in tofmipd
    for script in ("daemontools/courierpassd/run", "daemontools/courierpassd/log/run",
                   "daemontools/tofmipd/run", "qmail/smtprc"):
        path = CONTRIB / script
        assert path.read_text().startswith("#!/bin/sh\n")
        assert os.access(path, os.X_OK), f"{script} is not executable"
        subprocess.run(["sh", "-n", str(path)], check=True)


def test_tofmipd_run_expands_to_the_seed_command_line(tmp_path: Path) -> None:
    """With su replaced by a stub that prints its arguments, the run script hands
    su exactly the seed's command (variables substituted)."""
    stub = tmp_path / "su"
    stub.write_text('#!/bin/sh\nfor a in "$@"; do printf "[%s]\\n" "$a"; done\n')
    stub.chmod(0o755)
    script = tmp_path / "run"
    install_script(CONTRIB / "daemontools/tofmipd/run", script, SU=str(stub))
    out = subprocess.run(["sh", str(script)], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [
        "[-]", "[vmail]", "[-c]",
        '[exec /usr/local/bin/tmda-ofmipd -f -p localhost:8025 '
        '-A "/usr/local/sbin/courierpasswd -s imap -- /usr/bin/true" '
        "-S /home/vmail/getvuserhome.sh]",
    ]


def test_smtprc_memory_limit_lets_courierpasswd_run_under_softlimit() -> None:
    """smtprc's ``softlimit -m $MEMLIMIT`` is inherited by qmail-smtpd and then by
    courierpasswd: the Python program must authenticate inside it, as an
    unprivileged uid with no supplementary groups (tcpserver -u/-g), with the
    data on fd 3.  The old 2000000 does not even start /bin/true."""
    _require_tools("softlimit")
    text = (CONTRIB / "qmail/smtprc").read_text()
    memlimit = re.search(r"^MEMLIMIT=(\d+)$", text, re.MULTILINE).group(1)
    assert "exec $SOFTLIMIT -m $MEMLIMIT" in text
    assert "$QMAILSMTPD $COURIERPASSWD -s $SERVICE -- $TRUE 2>&1" in text
    assert "$RBLSMTPD -r $RBL" in text and "-x $RULES" in text
    directory = nobody_dir()
    try:
        userdb = userdb_copy(directory)
        if os.geteuid() == 0:
            os.chown(userdb, os.stat(directory).st_uid, os.stat(directory).st_gid)
        for password, expected in (("Andrew-Imap-1", 0), ("wrong-password", 1)):
            proc = subprocess.run(
                as_nobody(["softlimit", "-m", memlimit, "sh", "-c", 'exec "$@" 3<&0', "sh",
                           str(REPO / "bin/courierpasswd"), "--stderr", "-s", "imap", "--", "/usr/bin/true"]),
                input=f"{USER}\0{password}\0".encode(), capture_output=True, timeout=60,
                env={"PATH": "/usr/bin:/bin", "AUTHKIT_USERDB": str(userdb)},
            )
            assert proc.returncode == expected, proc.stderr
        tight = subprocess.run(["softlimit", "-m", "2000000", "/usr/bin/true"], capture_output=True)
        assert tight.returncode != 0
    finally:
        shutil.rmtree(directory)
