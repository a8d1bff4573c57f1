"""authkit.authdaemon.client and AuthdaemonSource against small in-process test
servers on a unix socket in a temporary directory.

The faults of the issue: daemon stopped, socket path missing, a daemon that
accepts and never answers, a reply cut in the middle, a reply larger than 8192
bytes.  Each must give a TemporaryFailure (exit 111) within the configured
timeout: never a crash, never a rejection.  The servers' replies are copies of
the real daemon's (spec courier-authlib.md section 4).
"""

from __future__ import annotations

import binascii
import os
import shutil
import socket
import tempfile
import threading
import time
from typing import Callable, Iterator

import pytest

from authkit.authdaemon import client, protocol
from authkit.authdaemon.source import AuthdaemonSource
from authkit.errors import (
    BadPassword,
    ConfigError,
    Misuse,
    PolicyRefused,
    Rejected,
    TemporaryFailure,
    UnknownUser,
)

PRE_ANDREW = (
    b"UID=5000\nGID=5000\nHOME=/home/vmail/example.com/andrew\nADDRESS=andrew@example.com\n"
    b"NAME=Andrew Example\nMAILDIR=/home/vmail/example.com/andrew/Maildir\nQUOTA=10000000S\n"
    b"PASSWD=$1$XvgBrLvh$k/Fs0X9fbiRCpmvIvfRos1\nOPTIONS=disableshared=1\n.\n"
)
#: Short timeouts for the fault tests; the assertions allow this much slack.
T = 0.4
SLACK = 1.5


def read_request(conn: socket.socket) -> bytes:
    """Read one whole request the way authdaemond frames it: metadata lines,
    then the command line, then for AUTH the counted body."""
    data = b""
    while True:
        lines = data.split(b"\n")
        offset = 0
        for line in lines[:-1]:
            offset += len(line) + 1
            space, equals = line.find(b" "), line.find(b"=")
            if equals >= 0 and (space < 0 or equals < space):
                continue  # metadata
            if line.startswith(b"AUTH "):
                need = int(line[5:])
                if len(data) - offset >= need:
                    return data[:offset + need]
                break
            return data[:offset]
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk


class FakeDaemon:
    """A unix-socket server in a thread: connection ``i`` is handled by
    ``handlers[i]`` (the last one repeats), called with the socket and the
    request it read.  ``requests`` records every request."""

    def __init__(self, path: str, handlers: list[Callable[[socket.socket, bytes], None]],
                 read: bool = True) -> None:
        self.path = path
        self.handlers = handlers
        self.read = read
        self.requests: list[bytes] = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(8)
        self.stopping = False
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        count = 0
        while not self.stopping:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            handler = self.handlers[min(count, len(self.handlers) - 1)]
            count += 1
            try:
                request = read_request(conn) if self.read else b""
                self.requests.append(request)
                handler(conn, request)
            except OSError:
                pass

    def close(self) -> None:
        self.stopping = True
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for conn in self.conns:
            conn.close()
        self.thread.join(5)


def reply(data: bytes) -> Callable[[socket.socket, bytes], None]:
    def handler(conn: socket.socket, request: bytes) -> None:
        conn.sendall(data)
        conn.close()
    return handler


#: Set when a test ends: handlers that hold a connection open wait on it.
HOLD = threading.Event()


def never_answer(conn: socket.socket, request: bytes) -> None:
    """Accept, (read the request,) keep the connection open, say nothing."""
    HOLD.wait(10)
    conn.close()


@pytest.fixture
def sockdir() -> Iterator[str]:
    # a short path: pytest's tmp_path can exceed sun_path's 108 bytes
    path = tempfile.mkdtemp(prefix="ad-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemon(sockdir: str) -> Iterator[Callable[..., FakeDaemon]]:
    made: list[FakeDaemon] = []
    HOLD.clear()

    def make(*handlers: Callable[[socket.socket, bytes], None], read: bool = True) -> FakeDaemon:
        fake = FakeDaemon(os.path.join(sockdir, f"socket{len(made)}"), list(handlers), read)
        made.append(fake)
        return fake

    yield make
    HOLD.set()
    for fake in made:
        fake.close()


def source(path: str, **options: object) -> AuthdaemonSource:
    options.setdefault("remote_ip", "")
    timeouts = dict(connect_timeout=T, write_timeout=T, read_timeout=T, enumerate_timeout=T)
    timeouts.update(options)
    return AuthdaemonSource(path, **timeouts)  # type: ignore[arg-type]


def every_operation(src: AuthdaemonSource) -> list[Callable[[], object]]:
    return [
        lambda: src.lookup("andrew@example.com"),
        lambda: src.authenticate("andrew@example.com", b"andrew-secret", "imap"),
        lambda: src.authenticate_cram(b"<1.2@h>", "andrew@example.com", "00" * 16, "md5"),
        lambda: src.change_password("andrew@example.com", b"old", b"new"),
        lambda: list(src.enumerate()),
    ]


def assert_temporary(call: Callable[[], object], within: float, match: str = "") -> TemporaryFailure:
    start = time.monotonic()
    with pytest.raises(TemporaryFailure) as info:
        call()
    elapsed = time.monotonic() - start
    assert not isinstance(info.value, Rejected)
    assert info.value.exit_code == 111
    assert elapsed < within, f"took {elapsed:.2f} s"
    assert match in str(info.value)
    return info.value


# --- faults --------------------------------------------------------------------

def test_socket_path_missing_is_a_temporary_failure_naming_the_path(sockdir: str) -> None:
    path = os.path.join(sockdir, "nosuch", "socket")
    for call in every_operation(source(path)):
        error = assert_temporary(call, SLACK, match=path)
        assert "does not exist" in str(error)


def test_daemon_stopped_leaving_its_socket_file_is_a_temporary_failure(sockdir: str) -> None:
    path = os.path.join(sockdir, "socket")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.close()  # the file stays, nothing listens: ECONNREFUSED
    for call in every_operation(source(path)):
        assert_temporary(call, SLACK, match="refused")


def test_path_that_is_not_a_socket_is_a_temporary_failure(sockdir: str) -> None:
    path = os.path.join(sockdir, "file")
    open(path, "w").close()
    assert_temporary(lambda: source(path).lookup("a"), SLACK, match=path)


def test_daemon_that_never_answers_times_out_within_the_read_timeout(daemon) -> None:
    fake = daemon(never_answer)
    for call in every_operation(source(fake.path)):
        assert_temporary(call, T + SLACK, match="no complete reply")


def test_daemon_that_never_reads_the_request_times_out_within_the_write_timeout(daemon) -> None:
    fake = daemon(never_answer, read=False)
    request = b"PRE . login " + b"x" * 4_000_000 + b"\n"  # more than the socket buffers hold
    start = time.monotonic()
    with pytest.raises(TemporaryFailure, match="not accepted within"):
        client.exchange(fake.path, request, protocol.AccountReplyReader(),
                        connect_timeout=T, write_timeout=T, read_timeout=T)
    assert time.monotonic() - start < T + SLACK


def test_full_listen_queue_is_a_temporary_failure(sockdir: str) -> None:
    path = os.path.join(sockdir, "busy")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(0)
    waiting = []
    try:
        for _ in range(3):  # fill the backlog; nobody accepts
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(path)
            except BlockingIOError:
                pass
            waiting.append(s)
        assert_temporary(lambda: source(path).lookup("a"), T + SLACK)
    finally:
        for s in waiting:
            s.close()
        listener.close()


def test_daemon_trickling_a_reply_is_cut_off_at_the_read_timeout(daemon) -> None:
    def trickle(conn: socket.socket, request: bytes) -> None:
        for byte in PRE_ANDREW:
            conn.sendall(bytes([byte]))
            time.sleep(0.05)
    fake = daemon(trickle)
    assert_temporary(lambda: source(fake.path).lookup("a"), T + SLACK, match="within")


def test_zero_byte_reply_is_a_temporary_failure_not_a_rejection(daemon) -> None:
    fake = daemon(reply(b""))
    for call in every_operation(source(fake.path)):
        assert_temporary(call, SLACK)


@pytest.mark.parametrize("cut", [5, len(PRE_ANDREW) // 2, len(PRE_ANDREW) - 2])
def test_reply_cut_in_the_middle_is_a_temporary_failure(daemon, cut: int) -> None:
    fake = daemon(reply(PRE_ANDREW[:cut]))
    src = source(fake.path)
    assert_temporary(lambda: src.lookup("andrew@example.com"), SLACK, match="cut short")
    assert_temporary(lambda: src.authenticate("andrew@example.com", b"pw"), SLACK)


def test_reply_dropped_by_reset_is_a_temporary_failure(daemon) -> None:
    def reset(conn: socket.socket, request: bytes) -> None:
        conn.sendall(b"UID=50")
        conn.shutdown(socket.SHUT_RDWR)
        conn.close()
    fake = daemon(reset)
    assert_temporary(lambda: source(fake.path).lookup("a"), SLACK)


@pytest.mark.parametrize("size", [8192, 8193, 100_000])
def test_reply_larger_than_8192_bytes_is_a_temporary_failure(daemon, size: int) -> None:
    head = b"UID=1\nGID=1\nHOME=/h\nOPTIONS="
    fake = daemon(reply(head + b"o" * (size - len(head) - 3) + b"\n.\n"))
    src = source(fake.path)
    assert_temporary(lambda: src.lookup("a"), SLACK, match="longer than 8191")
    assert_temporary(lambda: src.authenticate("a", b"pw"), SLACK, match="longer than 8191")


def test_huge_passwd_reply_is_a_temporary_failure(daemon) -> None:
    fake = daemon(reply(b"O" * 50_000))
    assert_temporary(lambda: source(fake.path).change_password("a", b"o", b"n"), SLACK)


def test_malformed_success_reply_is_a_temporary_failure(daemon) -> None:
    fake = daemon(reply(b"UID=5000\nHOME=/h\n.\n"))  # no GID
    assert_temporary(lambda: source(fake.path).lookup("a"), SLACK, match="GID")


def test_enumeration_cut_off_raises_after_the_accounts_before_the_break(daemon) -> None:
    fake = daemon(reply(b"# authuserdb\n\na\t1\t1\t/a\nb\t2\t2\t/b\nc\t3\t3"))
    seen = []
    with pytest.raises(TemporaryFailure, match="aborted"):
        for account in source(fake.path).enumerate():
            seen.append(account.address)
    assert seen == ["a", "b"]


def test_enumeration_stalling_times_out_per_read(daemon) -> None:
    def stall(conn: socket.socket, request: bytes) -> None:
        conn.sendall(b"# authuserdb\n\na\t1\t1\t/a\n")
        HOLD.wait(10)
    fake = daemon(stall)
    seen = []
    start = time.monotonic()
    with pytest.raises(TemporaryFailure, match="per read"):
        for account in source(fake.path).enumerate():
            seen.append(account.address)
    assert seen == ["a"]
    assert time.monotonic() - start < T + SLACK


def test_slow_enumeration_within_the_per_read_timeout_completes(daemon) -> None:
    def slow(conn: socket.socket, request: bytes) -> None:
        conn.sendall(b"# authuserdb\n\n")
        for i in range(1, 6):  # 5 x T/2 > T in total, each read well within T
            time.sleep(T / 2)
            conn.sendall(b"u%d\t%d\t1\t/h\n" % (i, i))
        conn.sendall(b".\n")
        conn.close()
    fake = daemon(slow)
    assert [a.uid for a in source(fake.path).enumerate()] == [1, 2, 3, 4, 5]
    assert fake.requests == [b"ENUMERATE\n"]


def test_enumeration_streams_before_the_reply_is_complete(daemon) -> None:
    gate = threading.Event()

    def gated(conn: socket.socket, request: bytes) -> None:
        conn.sendall(b"# authuserdb\n\na\t1\t1\t/a\n")
        gate.wait(5)
        conn.sendall(b".\n")
        conn.close()
    fake = daemon(gated)
    accounts = source(fake.path).enumerate()
    assert next(accounts).address == "a"  # arrived while the daemon still holds the rest
    gate.set()
    assert list(accounts) == []


# --- the source over a well-behaved fake ----------------------------------------

def test_lookup_sends_pre_and_maps_the_reply(daemon) -> None:
    fake = daemon(reply(PRE_ANDREW))
    account = source(fake.path, remote_ip="192.0.2.7").lookup("andrew@example.com", "imap")
    assert fake.requests == [b"TCPREMOTEIP=192.0.2.7\nPRE . imap andrew@example.com\n"]
    assert (account.address, account.uid, account.fullname, account.encrypted_password) == (
        "andrew@example.com", 5000, "Andrew Example", "$1$XvgBrLvh$k/Fs0X9fbiRCpmvIvfRos1")


def test_remote_ip_defaults_to_tcpremoteip_from_the_environment(daemon, monkeypatch) -> None:
    fake = daemon(reply(PRE_ANDREW))
    monkeypatch.setenv("TCPREMOTEIP", "::1")
    AuthdaemonSource(fake.path).lookup("andrew@example.com")
    monkeypatch.delenv("TCPREMOTEIP")
    AuthdaemonSource(fake.path).lookup("andrew@example.com")
    assert fake.requests == [b"TCPREMOTEIP=::1\nPRE . login andrew@example.com\n",
                             b"PRE . login andrew@example.com\n"]


def test_lookup_fail_is_unknown_user(daemon) -> None:
    fake = daemon(reply(b"FAIL\n"))
    with pytest.raises(UnknownUser):
        source(fake.path).lookup("nobody@example.com")


def test_login_fail_is_bad_password(daemon) -> None:
    fake = daemon(reply(b"FAIL\n"))
    with pytest.raises(BadPassword):
        source(fake.path).authenticate("andrew@example.com", b"wrong")
    assert fake.requests == [b"AUTH 37\nlogin\nlogin\nandrew@example.com\nwrong\n"]


def test_cram_fail_is_bad_password(daemon) -> None:
    fake = daemon(reply(b"FAIL\n"))
    with pytest.raises(BadPassword):
        source(fake.path).authenticate_cram(b"c", "a", "00", "sha256", "imap")
    assert fake.requests[0].split(b"\n")[1:3] == [b"imap", b"cram-sha256"]


def test_defdomain_applies_to_login_and_cram_but_not_lookup_or_passwd(daemon) -> None:
    fake = daemon(reply(PRE_ANDREW), reply(PRE_ANDREW), reply(PRE_ANDREW), reply(b"OK\n"),
                  reply(PRE_ANDREW))
    src = source(fake.path, defdomain="@example.com")
    src.lookup("andrew")
    src.authenticate("andrew", b"pw")
    src.authenticate_cram(b"c", "andrew", "00", "md5")
    src.change_password("andrew", b"o", b"n")
    pre, login, cram, passwd, pre_after = fake.requests
    assert pre == b"PRE . login andrew\n"
    assert login.endswith(b"\nandrew@example.com\npw\n")
    assert binascii.a2b_base64(cram.split(b"\n")[4]) == b"andrew@example.com 00"
    assert passwd == b"PASSWD login\tandrew\to\tn\n"
    assert pre_after == b"PRE . login andrew\n"


def test_change_password_ok_returns_the_account_read_back(daemon) -> None:
    fake = daemon(reply(b"OK\n"), reply(PRE_ANDREW))
    account = source(fake.path).change_password("andrew@example.com", b"old", b"new", "imap")
    assert account.home == "/home/vmail/example.com/andrew"
    assert fake.requests == [b"PASSWD imap\tandrew@example.com\told\tnew\n",
                             b"PRE . imap andrew@example.com\n"]


def test_change_password_fail_is_bad_password(daemon) -> None:
    fake = daemon(reply(b"FAIL\n"))
    with pytest.raises(BadPassword):
        source(fake.path).change_password("andrew@example.com", b"wrong", b"new")
    assert len(fake.requests) == 1



def test_change_password_with_check_account_looks_up_first_and_verifies_once(daemon) -> None:
    """issue 16: PRE (no password check), the caller's check on its account,
    then PASSWD (the daemon's one verification), then the read-back."""
    fake = daemon(reply(PRE_ANDREW), reply(b"OK\n"), reply(PRE_ANDREW))
    seen = []
    source(fake.path).change_password("andrew@example.com", b"old", b"new", "imap",
                                      check_account=lambda account: seen.append(account.uid))
    assert seen == [5000]
    assert fake.requests == [b"PRE . imap andrew@example.com\n",
                             b"PASSWD imap\tandrew@example.com\told\tnew\n",
                             b"PRE . imap andrew@example.com\n"]


def refuse(account) -> None:  # noqa: ANN001
    raise PolicyRefused("account uid below the minimum")


@pytest.mark.parametrize("auth_reply, refusal", [(PRE_ANDREW, PolicyRefused), (b"FAIL\n", BadPassword)])
def test_change_password_refused_by_check_account_sends_no_passwd(daemon, auth_reply, refusal) -> None:
    """A refusal by ``check_account`` stands only for a right old password (one
    AUTH tells); a wrong one is ``BadPassword``.  No PASSWD is sent either way."""
    fake = daemon(reply(PRE_ANDREW), reply(auth_reply))
    with pytest.raises(refusal):
        source(fake.path, defdomain="example.org").change_password(
            "andrew@example.com", b"old", b"new", check_account=refuse)
    assert len(fake.requests) == 2
    assert fake.requests[1].startswith(b"AUTH ")
    assert fake.requests[1].endswith(b"\nandrew@example.com\nold\n")  # as PASSWD would name it
    assert not any(request.startswith(b"PASSWD") for request in fake.requests)


def test_change_password_with_check_account_of_an_unknown_user_is_bad_password(daemon) -> None:
    fake = daemon(reply(b"FAIL\n"))
    with pytest.raises(BadPassword):
        source(fake.path).change_password("nobody", b"old", b"new", check_account=refuse)
    assert fake.requests == [b"PRE . login nobody\n"]


def test_changed_password_that_cannot_be_read_back_is_a_temporary_failure(daemon) -> None:
    fake = daemon(reply(b"OK\n"), reply(b"FAIL\n"))
    assert_temporary(lambda: source(fake.path).change_password("a", b"o", b"n"), SLACK,
                     match="changed")


def test_refusals_are_decided_without_contacting_the_daemon(daemon) -> None:
    fake = daemon(reply(b"FAIL\n"))
    src = source(fake.path)
    with pytest.raises(BadPassword):
        src.authenticate("andrew@example.com", b"")
    with pytest.raises(BadPassword):
        src.authenticate("andrew@example.com\nroot", b"pw")
    with pytest.raises(UnknownUser):
        src.lookup("andrew\nPRE . login root")
    with pytest.raises(PolicyRefused):
        src.change_password("andrew", b"old", b"new|systempw=x")
    with pytest.raises(Misuse):
        src.authenticate_cram(b"c", "a", "00", "sha512")
    with pytest.raises(Misuse):
        src.lookup("a", "im ap")
    assert fake.requests == []


def test_username_reply_takes_the_system_account_uid(daemon) -> None:
    fake = daemon(reply(b"USERNAME=root\nGID=5\nHOME=/root\nADDRESS=r\n.\n"))
    account = source(fake.path).lookup("r")
    assert (account.uid, account.gid) == (0, 5)


def test_nonpositive_timeout_is_a_config_error(sockdir: str) -> None:
    for option in ("connect_timeout", "write_timeout", "read_timeout", "enumerate_timeout"):
        with pytest.raises(ConfigError):
            AuthdaemonSource(os.path.join(sockdir, "s"), **{option: 0})


def test_source_description_and_close() -> None:
    src = AuthdaemonSource("/run/courier/authdaemon/socket", remote_ip="")
    assert src.description == "authdaemond /run/courier/authdaemon/socket"
    src.close()
    src.close()


# --- finding Courier's socket ---------------------------------------------------

def test_find_socket_returns_the_first_existing_socket(daemon, sockdir: str) -> None:
    from authkit.authdaemon.source import DEFAULT_SOCKET_PATHS, find_socket

    fake = daemon(reply(b"FAIL\n"))
    plain = os.path.join(sockdir, "plain-file")
    open(plain, "w").close()
    missing = os.path.join(sockdir, "missing", "socket")
    assert find_socket([missing, plain, fake.path]) == fake.path
    assert find_socket([missing, plain]) is None
    assert DEFAULT_SOCKET_PATHS[0] == "/run/courier/authdaemon/socket"


def test_find_socket_returns_a_path_it_may_not_search(monkeypatch) -> None:
    from authkit.authdaemon import source as source_module

    def stat(path: str) -> os.stat_result:
        if path.startswith("/locked/"):
            raise PermissionError(13, "Permission denied", path)
        raise FileNotFoundError(2, "No such file or directory", path)

    # a fake stat: as root every directory is searchable, so the real one cannot say no
    monkeypatch.setattr(source_module, "stat", stat)
    assert source_module.find_socket(["/missing/socket", "/locked/socket"]) == "/locked/socket"
    assert source_module.find_socket(["/missing/socket"]) is None


def test_no_error_message_holds_the_password(daemon) -> None:
    secret = b"s3cret-Pw"
    fake = daemon(reply(b"FAIL\n"), reply(b"UID=1\nPASSWD2=s3cret-Pw\n"),
                  reply(b"PASSWD2=s3cret-Pw\nbad line\n.\n"), reply(b"FAIL\n"))
    src = source(fake.path)
    messages = []
    for call in (lambda: src.authenticate("a", secret),
                 lambda: src.authenticate("a", secret),
                 lambda: src.authenticate("a", secret),
                 lambda: src.change_password("a", secret, b"new-" + secret),
                 lambda: src.change_password("a", secret, b"bad|" + secret),
                 lambda: src.authenticate("a\n", secret)):
        with pytest.raises(Exception) as info:
            call()
        messages.append(str(info.value) + repr(info.value))
    assert not any("s3cret" in message for message in messages), messages
