"""No head-of-line stall: idle connections cost authkitd a timer, not a worker
(docs/authkitd.8, CONCURRENCY).  Courier's authdaemond with DAEMONS=3 is shown
stalling on the same userdb, bounded by its own 10 s read timeout.  200
concurrent clients each get exactly their own answer."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from authkitdlab import Authkitd, lab_config
from courierlab import CourierLab
from stacktools import exchange

from authkit.authdaemon import protocol

pytestmark = pytest.mark.integration

USERS = [f"user{index}@example.com" for index in range(20)]


def hold_idle(path, count: int) -> list[socket.socket]:
    held = []
    for _ in range(count):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(path))
        held.append(sock)
    return held


def timed_login(path, name: str, password: bytes) -> tuple[float, bytes]:
    start = time.monotonic()
    reply = exchange(path, protocol.login_request("imap", name, password))
    return time.monotonic() - start, reply


@pytest.fixture
def lab(courier_lab_factory):
    lab = courier_lab_factory(daemons=3)
    for name in USERS:
        lab.add_user(name, "pw-" + name.split("@")[0])   # md5-crypt, as userdbpw -md5 makes
    lab.makeuserdb()
    return lab


def test_idle_connections_do_not_delay_a_login(lab):
    daemon = Authkitd(lab.root / "authkitd", lab.socket_path, lab_config(lab, "workers = 3\n")).start()
    try:
        held = hold_idle(lab.socket_path, 50)
        try:
            times = []
            for _ in range(3):
                elapsed, reply = timed_login(lab.socket_path, USERS[0], b"pw-user0")
                assert reply.endswith(b"\n.\n") and b"ADDRESS=user0@example.com\n" in reply
                times.append(elapsed)
            # the idle ones are still held open, not closed to make room
            assert all(sock.fileno() >= 0 for sock in held)
        finally:
            for sock in held:
                sock.close()
    finally:
        daemon.stop()
    assert min(times) < 0.1, times
    assert max(times) < 1.0, times


def test_courier_daemon_stalls_behind_three_idle_connections(lab):
    CourierLab.start_daemon(lab)
    held = hold_idle(lab.socket_path, 3)
    try:
        elapsed, reply = timed_login(lab.socket_path, USERS[0], b"pw-user0")
    finally:
        for sock in held:
            sock.close()
    assert reply.endswith(b"\n.\n")
    # the fourth client waited for an idle one's 10 s read timeout
    assert 5 < elapsed < 30, elapsed


def test_200_concurrent_clients_each_get_their_own_answer_once(lab):
    daemon = Authkitd(lab.root / "authkitd", lab.socket_path, lab_config(lab)).start()
    results: dict[int, bytes | BaseException] = {}
    barrier = threading.Barrier(200)

    def client(index: int) -> None:
        name = USERS[index % len(USERS)]
        good = index % 3 != 0
        password = ("pw-" + name.split("@")[0] if good else "wrong").encode()
        try:
            barrier.wait(60)
            results[index] = exchange(lab.socket_path, protocol.login_request("imap", name, password))
        except BaseException as exc:  # noqa: BLE001 - reported below
            results[index] = exc

    threads = [threading.Thread(target=client, args=(index,)) for index in range(200)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        daemon.stop()
    assert len(results) == 200
    for index in range(200):
        name = USERS[index % len(USERS)]
        reply = results[index]
        assert isinstance(reply, bytes), (index, reply)
        if index % 3 == 0:
            assert reply == b"FAIL\n", (index, reply)
        else:
            password = "pw-" + name.split("@")[0]
            fields = protocol.AccountReplyReader().receive_data(reply)
            assert fields["ADDRESS"] == name, (index, reply)
            assert reply.count(b"\n.\n") == 1 and reply.endswith(b"\n.\n")
            assert f"PASSWD2={password}\n".encode() in reply


def test_a_password_change_waiting_on_the_userdb_lock_does_not_stall_logins(lab):
    """A PASSWD serialises on the userdb's own lock, not on the daemon: while
    another writer holds the lock, logins (and lookups) are answered; the change
    completes once the lock is free."""
    from authkit.userdb.locks import FileLock, text_lock_path

    daemon = Authkitd(lab.root / "authkitd", lab.socket_path, lab_config(lab)).start()
    result: dict = {}
    try:
        with FileLock(text_lock_path(str(lab.userdb_path))):
            def change() -> None:
                result["reply"] = exchange(lab.socket_path, protocol.passwd_request(
                    "login", USERS[1], b"pw-user1", b"Locked-N3w-1"))

            changer = threading.Thread(target=change)
            changer.start()
            for index in range(10):  # the change is in a worker, waiting on the lock
                elapsed, reply = timed_login(lab.socket_path, USERS[index % 3 * 2],
                                             ("pw-user%d" % (index % 3 * 2)).encode())
                assert reply.endswith(b"\n.\n") and elapsed < 5, elapsed
            assert changer.is_alive() and "reply" not in result  # still waiting on the lock
        changer.join(60)
        assert result["reply"] == b"OK\n"
        _, reply = timed_login(lab.socket_path, USERS[1], b"Locked-N3w-1")
        assert reply.endswith(b"\n.\n")
    finally:
        daemon.stop()
