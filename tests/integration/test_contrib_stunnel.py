"""contrib/stunnel in front of courierpassd, with Debian's stunnel4.

Certificates are made with the ``openssl`` command in the test's directory: a CA,
a server certificate for ``localhost``/127.0.0.1 and a client certificate for the
webmail host, all signed by that CA, plus a client certificate from a second,
untrusted CA.  The contrib configurations run with only the values of these keys
changed: cert, key, CAfile, accept, connect, exec, pid, output, foreground, debug,
setuid, setgid, checkHost (every other line byte-identical).

* courierpassd-server.conf: stunnel -> tcpserver -> courierpassd (the contrib
  daemontools run script, variables changed, run by sh) on 127.0.0.1.
* courierpassd-server-inetd.conf: stunnel execs courierpassd per connection.

For both: a Python ssl client with the right certificate changes a password; a
client without a certificate and one with the untrusted CA's are refused in the
TLS handshake: no poppassd byte reaches them, and courierpassd never runs
(tcpserver logs no connection; courierpassd logs no session).

webmail-client.conf is the other end: a plain poppassd client (what Roundcube or
SquirrelMail do) talks to its local accept port and the password changes on the
server through both stunnels.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from stacktools import free_port, password_works, poppassd_dialogue, wait_listening

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CONTRIB = REPO / "contrib"
COURIERPASSD = REPO / "bin" / "courierpassd"
USER, OLD = "andrew@example.com", "Andrew-Imap-1"
ADJUSTABLE = {"cert", "key", "CAfile", "accept", "connect", "exec", "pid", "output", "foreground",
              "debug", "setuid", "setgid", "checkHost"}


def _require() -> str:
    stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
    if not stunnel:
        pytest.skip("stunnel not installed (Debian package stunnel4)")
    for tool in ("openssl", "tcpserver"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed")
    if os.geteuid() != 0:
        pytest.skip("needs root: stunnel drops to the stunnel4 user as configured")
    return stunnel


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(directory: Path) -> dict[str, Path]:
    """CA, server (localhost), client and untrusted client certificates (EC P-256)."""
    directory.mkdir()
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    for ca in ("ca", "rogue-ca"):
        openssl("req", "-x509", *key, "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "2",
                "-subj", f"/CN=authkit test {ca}", cwd=directory)
    (directory / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    (directory / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, ca, cn, ext in (("server", "ca", "localhost", "server.ext"),
                              ("client", "ca", "webmail.example.org", "client.ext"),
                              ("rogue", "rogue-ca", "webmail.example.org", "client.ext")):
        openssl("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}",
                cwd=directory)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", ext, cwd=directory)
    for path in directory.iterdir():
        path.chmod(0o644)  # stunnel reads them before dropping to stunnel4; harmless in a test
    return {p.stem + p.suffix.replace(".", "_"): p for p in directory.iterdir()}


def adjust_config(source: Path, **values: str) -> str:
    """The config's text with the values of ``values``' keys replaced (each key
    must be there exactly once); nothing else changes."""
    assert set(values) <= ADJUSTABLE
    text = source.read_text()
    for key, value in values.items():
        pattern = re.compile(rf"^{key} = .*$", re.MULTILINE)
        assert len(pattern.findall(text)) == 1, f"{source.name}: {key} is not set exactly once"
        text = pattern.sub(lambda _m: f"{key} = {value}", text)
    original, adjusted = source.read_text().splitlines(), text.splitlines()
    for a, b in zip(original, adjusted, strict=True):
        if a != b:
            assert a.split(" = ")[0] in values, f"line changed that was not asked for: {a!r}"
    return text


class Processes:
    """Processes started by the test, each in its own session; all killed at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def tls_client(pki: dict[str, Path], cert: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["ca_crt"]))
    if cert:
        context.load_cert_chain(str(pki[f"{cert}_crt"]), str(pki[f"{cert}_key"]))
    return context


def change_over_tls(port: int, context: ssl.SSLContext, new: str) -> list[bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as conn:
            return poppassd_dialogue(conn.makefile("rwb"), USER, OLD, new)


def refused_bytes(port: int, context: ssl.SSLContext) -> bytes:
    """Everything a client without an acceptable certificate receives as
    application data (the handshake fails, or the server alerts right after)."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="localhost") as conn:
                conn.settimeout(10)
                while True:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    received += chunk
        except (ssl.SSLError, ConnectionError):
            pass
    return received


@pytest.fixture
def lab(tmp_path: Path):  # noqa: ANN201
    stunnel = _require()
    pki = make_pki(tmp_path / "pki")
    userdb = tmp_path / "userdb"
    shutil.copyfile(REPO / "examples/userdb", userdb)
    userdb.chmod(0o600)
    config = tmp_path / "authkit.conf"
    config.write_text(f"userdb = {userdb}\nbad_pass_delay = 0\n")
    # stunnel opens its log and pid file after dropping to stunnel4 (Debian keeps
    # them in /var/log/stunnel4 and /run/stunnel4, owned by stunnel4): give it such
    # a directory, reachable through world-traversable parents
    import pwd
    import tempfile

    rundir = Path(tempfile.mkdtemp(prefix="authkit-stunnel-"))
    rundir.chmod(0o755)
    entry = pwd.getpwnam("stunnel4")
    os.chown(rundir, entry.pw_uid, entry.pw_gid)
    procs = Processes()
    try:
        yield stunnel, pki, userdb, config, procs, rundir
    finally:
        procs.stop()
        shutil.rmtree(rundir)


def start_server_side(tmp_path: Path, rundir: Path, stunnel: str, pki: dict[str, Path], config: Path,
                      procs: Processes, mode: str) -> tuple[int, Path]:
    """Start the server-side stunnel (and, for "tcpserver", the daemontools run
    script); return (TLS port, the file where courierpassd/tcpserver log)."""
    port = free_port()
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "AUTHKIT_CONFIG": str(config)}
    backend_log = tmp_path / f"backend-{mode}.log"
    common = dict(pid=str(rundir / f"stunnel-{mode}.pid"), output=str(rundir / f"stunnel-{mode}.log"),
                  foreground="yes", debug="info", accept=f"127.0.0.1:{port}",
                  cert=str(pki["server_crt"]), key=str(pki["server_key"]), CAfile=str(pki["ca_crt"]))
    if mode == "tcpserver":
        inner = free_port()
        run = CONTRIB / "daemontools/courierpassd/run"
        text = run.read_text()
        for name, value in (("TCPSERVER", shutil.which("tcpserver")), ("COURIERPASSD", str(COURIERPASSD)),
                            ("PORT", str(inner))):
            text, count = re.subn(rf"^{name}=.*$", f"{name}={value}", text, flags=re.MULTILINE)
            assert count == 1
        script = tmp_path / "courierpassd-run"
        script.write_text(text)
        backend = procs.start(["sh", str(script)], env, backend_log)
        deadline = time.monotonic() + 15
        while b"tcpserver: status: 0/" not in backend_log.read_bytes():  # listening, no probe
            assert backend.poll() is None, backend_log.read_text()
            assert time.monotonic() < deadline, "tcpserver did not start"
            time.sleep(0.05)
        conf_text = adjust_config(CONTRIB / "stunnel/courierpassd-server.conf",
                                  connect=f"127.0.0.1:{inner}", **common)
    else:
        conf_text = adjust_config(CONTRIB / "stunnel/courierpassd-server-inetd.conf",
                                  exec=str(COURIERPASSD), **common)
    conf = tmp_path / f"stunnel-{mode}.conf"
    conf.write_text(conf_text)
    # in inetd mode courierpassd's --stderr lines arrive on stunnel's stderr
    server = procs.start([stunnel, str(conf)], env, backend_log)
    wait_listening(port, server, "stunnel (server side)")
    return port, backend_log


def session_count(backend_log: Path, mode: str) -> int:
    text = backend_log.read_text(errors="replace")
    if mode == "tcpserver":
        return len(re.findall(r"^tcpserver: ok \d+ ", text, re.MULTILINE))
    return len(re.findall(r"^courierpassd: passwd ", text, re.MULTILINE))


@pytest.mark.parametrize("mode", ["tcpserver", "inetd"])
def test_client_certificate_gets_through_and_others_never_reach_courierpassd(lab, tmp_path: Path,
                                                                              mode: str) -> None:
    stunnel, pki, userdb, config, procs, rundir = lab
    port, backend_log = start_server_side(tmp_path, rundir, stunnel, pki, config, procs, mode)
    baseline = session_count(backend_log, mode)
    assert baseline == 0

    for untrusted in (None, "rogue"):
        assert refused_bytes(port, tls_client(pki, untrusted)) == b""
    time.sleep(0.5)
    assert session_count(backend_log, mode) == baseline, backend_log.read_text()
    stunnel_log = (rundir / f"stunnel-{mode}.log").read_text(errors="replace")
    assert re.search(r"peer did not return a certificate|certificate verify failed|Rejected by CERT",
                     stunnel_log, re.IGNORECASE), stunnel_log

    replies = change_over_tls(port, tls_client(pki, "client"), "Stunnel-Pw-2024")
    assert replies[0].startswith(b"200 courierpassd v")
    assert replies[1:] == [b"200 Your password please\r\n", b"200 Your new password please\r\n",
                           b"200 Password changed\r\n", b"200 Bye\r\n"]
    assert password_works(userdb, USER, "Stunnel-Pw-2024")
    assert not password_works(userdb, USER, OLD)
    deadline = time.monotonic() + 10
    while session_count(backend_log, mode) == baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    assert session_count(backend_log, mode) == baseline + 1
    assert b"Stunnel-Pw-2024" not in backend_log.read_bytes()


def test_webmail_side_stunnel_carries_a_plain_poppassd_client_to_the_server(lab, tmp_path: Path) -> None:
    stunnel, pki, userdb, config, procs, rundir = lab
    server_port, _ = start_server_side(tmp_path, rundir, stunnel, pki, config, procs, "inetd")
    local = free_port()
    conf = tmp_path / "webmail-client.conf"
    conf.write_text(adjust_config(
        CONTRIB / "stunnel/webmail-client.conf",
        pid=str(rundir / "client.pid"), output=str(rundir / "client.log"), foreground="yes",
        debug="info", accept=f"127.0.0.1:{local}", connect=f"127.0.0.1:{server_port}",
        cert=str(pki["client_crt"]), key=str(pki["client_key"]), CAfile=str(pki["ca_crt"]),
        checkHost="localhost",
    ))
    client_side = procs.start([stunnel, str(conf)], {"PATH": "/usr/bin:/bin"}, tmp_path / "client.out")
    wait_listening(local, client_side, "stunnel (webmail side)")
    with socket.create_connection(("127.0.0.1", local), timeout=20) as sock:
        replies = poppassd_dialogue(sock.makefile("rwb"), USER, OLD, "Webmail-Pw-2024")
    assert replies[0].startswith(b"200 courierpassd v"), replies
    assert replies[3] == b"200 Password changed\r\n"
    assert password_works(userdb, USER, "Webmail-Pw-2024")
