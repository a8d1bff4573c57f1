"""contrib/daemontools/authkitd under Debian's real svscan/supervise/multilog,
and contrib/systemd's authkitd units checked by ``systemd-analyze verify``.

The run scripts are installed with only their variable lines changed (AUTHKITD
-> bin/authkitd, CONFIG -> a private authkit.conf, SOCKET -> a private socket,
LOGDIR -> a private directory), as test_contrib_daemontools does for
courierpassd.  Under svscan authkitd must serve a login, log to multilog's
``current``, re-read its configuration on ``svc -h`` and stop on ``svc -d``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from authkitdlab import connectable
from stacktools import systemd_verify
from test_contrib_daemontools import install_script, session_pids, stop_svscan, wait_for

from authkit.authdaemon.source import AuthdaemonSource
from authkit.schemes import make_password_hash

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CONTRIB = REPO / "contrib"
AUTHKITD = REPO / "bin" / "authkitd"
INSTALLED = "/usr/local/sbin/authkitd"


def test_authkitd_run_scripts_under_svscan(tmp_path: Path) -> None:
    for tool in ("svscan", "supervise", "svc", "svstat", "multilog"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed (Debian package daemontools)")
    userdb = tmp_path / "etc" / "userdb"
    userdb.parent.mkdir()
    userdb.write_text("andrew@example.com\tuid=5000|gid=5000|home=/home/andrew|systempw="
                      + make_password_hash(b"andrew-secret", "sha256-crypt") + "\n")
    userdb.chmod(0o600)
    config = tmp_path / "etc" / "authkit.conf"
    config.write_text(f"userdb = {userdb}\n")
    sock = tmp_path / "run" / "socket"
    service = tmp_path / "service"
    logdir = tmp_path / "log"
    logdir.mkdir()
    install_script(CONTRIB / "daemontools/authkitd/run", service / "authkitd/run",
                   AUTHKITD=str(AUTHKITD), CONFIG=str(config), SOCKET=str(sock))
    install_script(CONTRIB / "daemontools/authkitd/log/run", service / "authkitd/log/run",
                   MULTILOG=shutil.which("multilog"), LOGDIR=str(logdir))
    current = logdir / "current"
    svscan = subprocess.Popen(["svscan", str(service)], env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
                              start_new_session=True, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: sock.exists() and connectable(sock), timeout=30, what="authkitd's socket")
        assert oct(sock.stat().st_mode & 0o777) == "0o777"
        assert oct(sock.parent.stat().st_mode & 0o777) == "0o750"
        account = AuthdaemonSource(str(sock)).authenticate("andrew@example.com", b"andrew-secret", "imap")
        assert account.uid == 5000
        wait_for(lambda: current.exists() and b"listening on" in current.read_bytes(),
                 what="authkitd's start line in multilog's current")
        config.write_text(f"userdb = {userdb}\ndefault_options = wbnodsn=1\n")
        subprocess.run(["svc", "-h", str(service / "authkitd")], check=True, timeout=10)
        wait_for(lambda: b"configuration reloaded" in current.read_bytes(), what="the reload line")
        assert AuthdaemonSource(str(sock)).lookup("andrew@example.com").options == "wbnodsn=1"
        subprocess.run(["svc", "-d", str(service / "authkitd")], check=True, timeout=10)
        wait_for(lambda: b"authkitd: stopped" in current.read_bytes(), what="the stop line")
        wait_for(lambda: not connectable(sock), what="the socket to stop answering")
        log = current.read_bytes()
        assert b"andrew-secret" not in log
        assert log.startswith(b"@")  # multilog t: TAI64N stamps
    finally:
        stop_svscan(svscan, service, ("authkitd", "authkitd/log"))
    assert session_pids(svscan.pid) == [], "a daemontools process outlived the test"


def test_run_scripts_parse_and_exec_authkitd() -> None:
    run = (CONTRIB / "daemontools/authkitd/run").read_text()
    assert "exec $AUTHKITD --config $CONFIG --socket $SOCKET --stderr 2>&1" in run
    assert "SOCKET=/run/courier/authdaemon/socket\n" in run
    for script in ("daemontools/authkitd/run", "daemontools/authkitd/log/run"):
        path = CONTRIB / script
        assert os.access(path, os.X_OK), script
        subprocess.run(["sh", "-n", str(path)], check=True)


def test_systemd_analyze_verify_accepts_the_unit_and_the_drop_in(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if not tool:
        pytest.skip("systemd-analyze not installed")
    unit = (CONTRIB / "systemd/authkitd.service").read_text()
    assert f"ExecStart={INSTALLED} --stderr" in unit
    (tmp_path / "authkitd.service").write_text(unit.replace(INSTALLED, str(AUTHKITD)))
    proc = subprocess.run([tool, "verify", "--man=no", str(tmp_path / "authkitd.service")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "authkitd.service" not in proc.stderr, proc.stderr
    # the drop-in over Debian's courier-authdaemon.service (a copy of it when
    # installed, else its Debian 12 text), read through SYSTEMD_UNIT_PATH
    debian = Path("/lib/systemd/system/courier-authdaemon.service")
    text = debian.read_text() if debian.exists() else (
        "[Unit]\nDescription=Courier Authentification Daemon\n\n[Service]\nType=forking\n"
        "ExecStart=/usr/sbin/authdaemond start\nExecStop=/usr/sbin/authdaemond stop\n"
        "PIDFile=/run/courier/authdaemon/pid\n\n[Install]\nWantedBy=multi-user.target\n")
    units = tmp_path / "units"
    (units / "courier-authdaemon.service.d").mkdir(parents=True)
    (units / "courier-authdaemon.service").write_text(text)
    drop_in = (CONTRIB / "systemd/courier-authdaemon.service.d/authkitd.conf").read_text()
    assert f"ExecStart={INSTALLED} --stderr" in drop_in
    (units / "courier-authdaemon.service.d/authkitd.conf").write_text(drop_in.replace(INSTALLED, str(AUTHKITD)))
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{units}:"}
    proc = subprocess.run([tool, "verify", "--man=no", str(units / "courier-authdaemon.service")],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "courier-authdaemon.service" not in proc.stderr, proc.stderr
    # and the drop-in is read: a broken ExecStart in it is reported
    (units / "courier-authdaemon.service.d/authkitd.conf").write_text(
        drop_in.replace(INSTALLED, str(tmp_path / "missing")))
    broken = subprocess.run([tool, "verify", "--man=no", str(units / "courier-authdaemon.service")],
                            capture_output=True, text=True, timeout=60, env=env)
    assert broken.returncode != 0


def test_socket_activation_with_systemd_s_own_activator(tmp_path: Path) -> None:
    """systemd-socket-activate (systemd's sd_listen_fds code path) holds the
    socket and starts authkitd at the first connection; authkitd serves on the
    passed descriptor and does not bind its own."""
    tool = shutil.which("systemd-socket-activate")
    if not tool:
        pytest.skip("systemd-socket-activate not installed (Debian package systemd)")
    userdb = tmp_path / "userdb"
    userdb.write_text("andrew@example.com\tuid=5000|gid=5000|home=/home/andrew|systempw="
                      + make_password_hash(b"andrew-secret", "sha256-crypt") + "\n")
    userdb.chmod(0o600)
    config = tmp_path / "authkit.conf"
    config.write_text(f"userdb = {userdb}\n")
    sock = tmp_path / "socket"
    log = open(tmp_path / "log", "wb")
    activator = subprocess.Popen([tool, "--listen", str(sock), str(AUTHKITD), "--config", str(config),
                                  "--socket", str(tmp_path / "unused" / "socket"), "--stderr"],
                                 env={"PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL,
                                 stdout=log, stderr=log, start_new_session=True)
    log.close()
    try:
        wait_for(lambda: sock.exists(), what="the activator's socket")
        account = AuthdaemonSource(str(sock)).authenticate("andrew@example.com", b"andrew-secret", "imap")
        assert account.uid == 5000
        text = (tmp_path / "log").read_text()
        assert "(from systemd)" in text, text
        assert not (tmp_path / "unused").exists()  # nothing bound of its own
    finally:
        os.killpg(activator.pid, signal.SIGTERM)
        activator.wait(30)
    assert "authkitd: stopped" in (tmp_path / "log").read_text()


def test_systemd_analyze_verify_accepts_the_socket_unit(tmp_path: Path) -> None:
    units = [CONTRIB / "systemd" / name for name in ("authkitd.socket", "authkitd.service")]
    stderr = systemd_verify(units, tmp_path, INSTALLED, AUTHKITD)
    assert "authkitd" not in stderr, stderr
