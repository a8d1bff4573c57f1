"""courierpassd the program (authkit.cli.courierpassd, bin/courierpassd): on
stdin/stdout pipes as under tcpserver, and standalone with --listen on 127.0.0.1
port 0 (plain and TLS).  Sections named are those of docs/courierpassd.8.

Fixture userdbs are written here with hashes made by ``mkpasswd -m sha-512``
(Debian whois) when available, else by authkit.schemes (same libxcrypt).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from authkit.errors import BadPassword
from authkit.userdb.source import UserdbSource

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "bin" / "courierpassd"
OLD = "Old-Passw0rd-1"
NEW = "New-Passw0rd-2"


def sha512(password: str) -> str:
    if shutil.which("mkpasswd"):
        return subprocess.run(["mkpasswd", "-m", "sha-512", password], check=True,
                              capture_output=True, text=True).stdout.strip()
    from authkit.schemes import make_password_hash

    return make_password_hash(password.encode(), "sha512-crypt")


def write_userdb(directory: Path, users: dict[str, tuple[int, str]], **settings: object) -> Path:
    """A text userdb (``name -> (uid, password)``) and a config naming it; returns
    the config path."""
    lines = ["# courierpassd test userdb\n"]
    for name, (uid, password) in users.items():
        lines.append(f"{name}\tuid={uid}|gid={uid}|home=/home/{name}|systempw={sha512(password)}\n")
    userdb = directory / "userdb"
    userdb.write_text("".join(lines))
    userdb.chmod(0o600)
    config = directory / "authkit.conf"
    body = {"userdb": str(userdb), "bad_pass_delay": 0, **settings}
    config.write_text("".join(f"{k} = {v}\n" for k, v in body.items()))
    return config


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    return write_userdb(tmp_path, {"andrew@example.com": (5000, OLD), "root@example.com": (0, OLD)})


def run(config: Path, script: bytes, *args: str, env: dict | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BIN), "--config", str(config), "--stderr", *args],
                          input=script, capture_output=True, timeout=timeout,
                          env={"PATH": os.environ["PATH"], **(env or {})})


def works(config: Path, name: str, password: str) -> bool:
    source = UserdbSource(str(config.parent / "userdb"))
    try:
        source.authenticate(name, password.encode(), "login")
        return True
    except BadPassword:
        return False


SUCCESS = (b"200 courierpassd v0.1.0 hello, who are you?\r\n200 Your password please\r\n"
           b"200 Your new password please\r\n200 Password changed\r\n200 Bye\r\n")


def test_stdio_change_succeeds_and_new_password_works(conf: Path) -> None:
    proc = run(conf, f"user andrew@example.com\r\npass {OLD}\r\nnewpass {NEW}\r\nquit\r\n".encode(),
               env={"TCPREMOTEIP": "192.0.2.7"})
    assert proc.stdout == SUCCESS
    assert proc.returncode == 0
    assert works(conf, "andrew@example.com", NEW) and not works(conf, "andrew@example.com", OLD)
    log = proc.stderr.decode()
    assert "user=andrew@example.com" in log and "ip=192.0.2.7" in log and "result=changed" in log
    assert OLD not in log and NEW not in log
    assert (conf.parent / "userdb").read_text().startswith("# courierpassd test userdb\n")


def test_stdio_password_with_a_leading_blank_is_stored_as_typed(conf: Path) -> None:
    """Issue 17 item 4: ``newpass  Lead-space-pw1`` stored ``Lead-space-pw1``."""
    proc = run(conf, f"user andrew@example.com\r\npass {OLD}\r\nnewpass  Lead-space-pw1\r\nquit\r\n".encode())
    assert proc.stdout == SUCCESS and proc.returncode == 0
    assert works(conf, "andrew@example.com", " Lead-space-pw1")
    assert not works(conf, "andrew@example.com", "Lead-space-pw1")
    proc = run(conf, b"user andrew@example.com\r\npass  Lead-space-pw1\r\nnewpass " + NEW.encode() + b"\r\n")
    assert proc.stdout.endswith(b"200 Password changed\r\n") and works(conf, "andrew@example.com", NEW)


def test_stdio_upper_case_bare_lf_like_poppass_cgi(conf: Path) -> None:
    proc = run(conf, f"USER andrew@example.com\nPASS {OLD}\nNEWPASS {NEW}\nQUIT\n".encode())
    assert proc.stdout == SUCCESS and proc.returncode == 0


def test_stdio_change_is_committed_without_quit_like_roundcube(conf: Path) -> None:
    proc = run(conf, f"user andrew@example.com\r\npass {OLD}\r\nnewpass {NEW}\r\n".encode())
    assert proc.stdout.endswith(b"200 Password changed\r\n") and proc.returncode == 0
    assert works(conf, "andrew@example.com", NEW)


@pytest.mark.parametrize("user,password,result", [
    ("andrew@example.com", "wrong-password", "bad-password"),
    ("nosuch@example.com", OLD, "unknown-user"),
    ("root@example.com", OLD, "low-uid"),
])
def test_stdio_refusals_look_alike_on_the_wire_but_not_in_the_log(conf: Path, user: str, password: str, result: str) -> None:
    proc = run(conf, f"user {user}\r\npass {password}\r\nnewpass {NEW}\r\n".encode())
    assert proc.stdout.endswith(b"200 Your password please\r\n500 Old password is incorrect\r\n")
    assert proc.returncode == 1
    assert f"result={result}" in proc.stderr.decode()
    assert password not in proc.stderr.decode()
    assert works(conf, "andrew@example.com", OLD)


def test_failure_delay_is_the_same_for_every_refusal(tmp_path: Path) -> None:
    config = write_userdb(tmp_path, {"andrew@example.com": (5000, OLD), "root@example.com": (0, OLD)},
                          bad_pass_delay=0.6)
    times = []
    for user, password in [("andrew@example.com", "wrong-one"), ("nosuch@x", OLD), ("root@example.com", OLD)]:
        start = time.monotonic()
        proc = run(config, f"user {user}\npass {password}\n".encode())
        times.append(time.monotonic() - start)
        assert proc.stdout.endswith(b"500 Old password is incorrect\r\n")
    assert min(times) >= 0.6
    assert max(times) - min(times) < 0.4


def test_policy_refusal_has_its_own_text(conf: Path) -> None:
    proc = run(conf, f"user andrew@example.com\npass {OLD}\nnewpass short\n".encode())
    assert proc.stdout.endswith(b"500 New password too short (min 8)\r\n") and proc.returncode == 1
    assert "result=policy" in proc.stderr.decode() and works(conf, "andrew@example.com", OLD)


def test_service_option_changes_the_service_field(tmp_path: Path) -> None:
    userdb = tmp_path / "userdb"
    userdb.write_text(f"a@x\tuid=5000|gid=5000|home=/h|imappw={sha512('imap-old-1')}|systempw={sha512(OLD)}\n")
    userdb.chmod(0o600)
    config = tmp_path / "c.conf"
    config.write_text(f"userdb = {userdb}\nbad_pass_delay = 0\n")
    proc = run(config, f"user a@x\npass imap-old-1\nnewpass {NEW}\n".encode(), "-s", "imap")
    assert proc.returncode == 0
    source = UserdbSource(str(userdb))
    source.authenticate("a@x", NEW.encode(), "imap")
    source.authenticate("a@x", OLD.encode(), "login")  # systempw untouched


def test_source_down_is_server_error_and_exit_111(tmp_path: Path) -> None:
    config = tmp_path / "c.conf"
    config.write_text(f"authdaemon_socket = {tmp_path}/no-such-socket\nbad_pass_delay = 0\n")
    proc = run(config, b"user a@x\npass whatever-1\n")
    assert proc.stdout.endswith(b"500 Server error, password not changed\r\n")
    assert proc.returncode == 111
    assert "result=tempfail" in proc.stderr.decode()


def test_idle_timeout_closes_with_500(tmp_path: Path) -> None:
    config = write_userdb(tmp_path, {"a@x": (5000, OLD)}, idle_timeout=0.5)
    proc = subprocess.Popen([sys.executable, str(BIN), "--config", str(config), "--stderr"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        start = time.monotonic()
        proc.stdin.write(b"user a@x\n")
        proc.stdin.flush()
        out = proc.stdout.read()
        assert time.monotonic() - start < 5
    finally:
        proc.kill()
        err = proc.stderr.read()
        proc.wait()
    assert out.endswith(b"200 Your password please\r\n500 Timeout, closing connection\r\n")
    assert b"result=timeout" in err


def test_config_error_exits_111_without_a_greeting(tmp_path: Path) -> None:
    config = tmp_path / "bad.conf"
    config.write_text("no_such_key = 1\n")
    proc = run(config, b"")
    assert proc.returncode == 111 and proc.stdout == b""
    assert b"unknown setting" in proc.stderr


@pytest.mark.parametrize("line", ["hash_scheme = sha1024-crypt", "idle_timeout = inf", "bad_pass_delay = nan"])
def test_a_bad_value_is_refused_at_start_naming_file_and_line(tmp_path: Path, line: str) -> None:
    """Issue 17 item 11: a bad hash_scheme answered "Server error" only after a
    right old password; inf/nan turned off the idle timeout or the delay."""
    config = write_userdb(tmp_path, {"andrew@example.com": (5000, OLD)})
    config.write_text(config.read_text() + line + "\n")
    proc = run(config, f"user andrew@example.com\r\npass {OLD}\r\nnewpass {NEW}\r\n".encode())
    assert proc.returncode == 111 and proc.stdout == b""
    assert f"{config}:3: {line.split()[0]} must be".encode() in proc.stderr
    assert works(config, "andrew@example.com", OLD)


def test_help_version_and_usage_errors() -> None:
    help_ = subprocess.run([sys.executable, str(BIN), "--help"], capture_output=True, text=True)
    assert help_.returncode == 0 and "--listen ADDR:PORT" in help_.stdout and "-s SERVICE" in help_.stdout
    version = subprocess.run([sys.executable, str(BIN), "-V"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.strip() == "courierpassd 0.1.0"
    for bad in (["--bogus"], ["--listen", "nonsense"], ["--tls-cert", "x"]):
        proc = subprocess.run([sys.executable, str(BIN), *bad], capture_output=True, text=True)
        assert proc.returncode == 2, bad


# -- --listen ---------------------------------------------------------------------


class Listener:
    """bin/courierpassd --listen 127.0.0.1:0; ``port`` read from its log line."""

    def __init__(self, config: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(BIN), "--config", str(config), "--stderr", "--listen", "127.0.0.1:0", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = self.proc.stderr.readline().decode()
        match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert match, line
        self.port = int(match.group(1))

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(15)
        finally:
            self.proc.kill()
        return rc, self.proc.stderr.read().decode()


def dialogue(port: int, lines: list[str], wrap=None) -> bytes:  # noqa: ANN001
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    if wrap is not None:
        sock = wrap(sock)
    reader = sock.makefile("rb")
    out = [reader.readline()]
    for line in lines:
        sock.sendall(line.encode() + b"\r\n")
        reply = reader.readline()
        out.append(reply)
        if not reply.startswith(b"200"):
            break
    sock.close()
    return b"".join(out)


def test_listen_serves_many_clients_at_once_and_stops_on_sigterm(tmp_path: Path) -> None:
    users = {f"u{i}@example.com": (5000 + i, OLD) for i in range(8)}
    config = write_userdb(tmp_path, users, bad_pass_delay=1)
    server = Listener(config)
    try:
        results: dict[str, bytes] = {}

        def client(name: str, password: str) -> None:
            results[name] = dialogue(server.port, [f"user {name}", f"pass {password}", f"newpass {NEW}", "quit"])

        # 4 wrong passwords (1 s delay each) must not serialise the 4 good changes
        threads = [threading.Thread(target=client, args=(name, OLD if i % 2 else "wrong-pass"))
                   for i, name in enumerate(users)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        elapsed = time.monotonic() - start
    finally:
        rc, log = server.stop()
    assert elapsed < 3.5
    for i, name in enumerate(users):
        if i % 2:
            assert results[name] == SUCCESS, name
            assert works(config, name, NEW)
        else:
            assert results[name].endswith(b"500 Old password is incorrect\r\n")
            assert works(config, name, OLD)
    assert rc == 0 and "stopped" in log
    assert log.count("result=changed") == 4 and "ip=127.0.0.1" in log


def served_dialogue(port: int, lines: list[str]) -> bytes | None:
    """``dialogue`` if the server greets with 200; None when it answers busy (then
    nothing is sent)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    try:
        reader = sock.makefile("rb")
        greeting = reader.readline()
        if greeting == b"500 Server busy - try again later\r\n":
            assert reader.read() == b""  # the reply, then end of file (not a reset)
            return None
        out = [greeting]
        for line in lines:
            sock.sendall(line.encode() + b"\r\n")
            out.append(reader.readline())
            if not out[-1].startswith(b"200"):
                break
        return b"".join(out)
    finally:
        sock.close()


def test_listen_turns_away_connections_beyond_max_connections(tmp_path: Path) -> None:
    config = write_userdb(tmp_path, {"andrew@example.com": (5000, OLD)}, max_connections=2)
    server = Listener(config)
    held = []
    try:
        for _ in range(2):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            assert sock.makefile("rb").readline().startswith(b"200 courierpassd")
            held.append(sock)
        third = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        assert third.makefile("rb").readline() == b"500 Server busy - try again later\r\n"
        third.close()
        held.pop().close()  # a slot frees up once the server has seen this EOF
        # until then a client may still be turned away (and is told so, cleanly)
        deadline = time.monotonic() + 30
        while True:
            reply = served_dialogue(server.port, ["user andrew@example.com", f"pass {OLD}",
                                                  f"newpass {NEW}", "quit"])
            if reply is not None or time.monotonic() > deadline:
                break
        assert reply == SUCCESS
    finally:
        for sock in held:
            sock.close()
        rc, log = server.stop()
    assert "result=busy" in log


def test_listen_busy_reply_reaches_a_client_that_already_sent_its_lines(tmp_path: Path) -> None:
    """Issue 16: a turned-away client that writes before reading must read the busy
    reply and end of file, not ECONNRESET (the server used to close with the
    client's lines unread)."""
    config = write_userdb(tmp_path, {"andrew@example.com": (5000, OLD)}, max_connections=1)
    server = Listener(config)
    held = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        assert held.makefile("rb").readline().startswith(b"200 courierpassd")
        lines = f"user andrew@example.com\r\npass {OLD}\r\nnewpass {NEW}\r\nquit\r\n".encode()
        for attempt in range(20):
            busy = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            try:
                if attempt % 2:  # pipelined: everything before reading anything
                    busy.sendall(lines)
                    received = busy.makefile("rb").read()
                else:  # reads the reply first, then writes, then reads on
                    reader = busy.makefile("rb")
                    first = reader.readline()
                    busy.sendall(lines)
                    received = first + reader.read()
            finally:
                busy.close()
            assert received == b"500 Server busy - try again later\r\n", attempt
    finally:
        held.close()
        rc, log = server.stop()
    assert rc == 0 and log.count("result=busy") == 20
    assert works(config, "andrew@example.com", OLD)


def test_sigterm_ends_idle_connections_with_500(conf: Path) -> None:
    server = Listener(conf)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    reader = sock.makefile("rb")
    assert reader.readline().startswith(b"200 courierpassd")
    start = time.monotonic()
    rc, log = server.stop()
    assert reader.readline() == b"500 Server shutting down\r\n"
    assert rc == 0 and time.monotonic() - start < 5
    sock.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server cert for 127.0.0.1 and a client cert, made by openssl(1)."""
    if not shutil.which("openssl"):
        pytest.skip("openssl not installed")
    d = tmp_path_factory.mktemp("pki")

    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
         "-days", "2", "-subj", "/CN=test CA")
    for name, extra in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={name}")
        (d / f"{name}.ext").write_text(extra + "\n")
        ossl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")
    return d


def test_listen_tls_with_client_certificate_check(conf: Path, pki: Path) -> None:
    server = Listener(conf, "--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"),
                      "--tls-ca", str(pki / "ca.pem"))
    try:
        ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        ctx.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
        out = dialogue(server.port, ["user andrew@example.com", f"pass {OLD}", f"newpass {NEW}", "quit"],
                       lambda s: ctx.wrap_socket(s, server_hostname="127.0.0.1"))
        assert out == SUCCESS
        anonymous = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            dialogue(server.port, ["user andrew@example.com", f"pass {NEW}"],
                     lambda s: anonymous.wrap_socket(s, server_hostname="127.0.0.1"))
    finally:
        rc, log = server.stop()
    assert rc == 0 and "result=tls-error" in log
    assert works(conf, "andrew@example.com", NEW)


@pytest.mark.skipif(not os.path.exists("/usr/bin/python3"), reason="Debian python3 missing")
def test_a_stdio_session_imports_none_of_the_heavy_modules(conf: Path) -> None:
    """courierpassd runs once per connection under tcpserver/xinetd: no argparse
    (issue 16: it parsed its options with argparse), no dataclasses/re/inspect
    (the dialogue's values), no logging."""
    proc = subprocess.run(["/usr/bin/python3", "-I", "-S", "-X", "importtime", str(BIN), "--config", str(conf),
                           "--stderr"], input=b"user andrew@example.com\npass wrong-one\n",
                          capture_output=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert proc.stdout.endswith(b"500 Old password is incorrect\r\n")
    imported = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.decode().splitlines()
                if line.startswith("import time:") and "|" in line}
    assert "authkit.poppassd" in imported and "authkit.userdb.source" in imported
    heavy = {"argparse", "logging", "dataclasses", "typing", "re", "inspect", "hashlib", "base64",
             "passlib", "ldap3", "psycopg", "asyncio"}
    assert not imported & heavy, sorted(imported & heavy)
