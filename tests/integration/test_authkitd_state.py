"""State only a daemon can hold (docs/authkitd.8, SHARED STATE): the failure
delay per TCPREMOTEIP, rehash_on_login, the lookup cache.  Userdbs are made by
Courier's userdb/userdbpw/makeuserdb; Courier's authdaemond confirms upgraded
hashes."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from authkitdlab import Authkitd, lab_config
from courierlab import CourierLab
from stacktools import exchange, pre_reply as pre

from authkit.authdaemon import protocol

pytestmark = pytest.mark.integration


def login(path, name: str, password: bytes, ip: str | None) -> tuple[float, bytes]:
    start = time.monotonic()
    reply = exchange(path, protocol.login_request("imap", name, password, ip))
    return time.monotonic() - start, reply


# --------------------------------------------------------------- refusal floor

def test_refusals_wait_out_the_floor_on_a_timer_not_in_a_worker(courier_lab):
    """With one worker and a 3 s floor, six refusals at once (wrong password and
    unknown user alike) each take at least 3 s, while a good login sent after
    them is answered at once: a sleeping worker would have made it wait for
    all six (18 s)."""
    import threading

    lab = courier_lab
    lab.add_user("andrew@example.com", "andrew-secret")
    lab.makeuserdb()
    floor = 3.0
    kitd = Authkitd(lab.root / "kitd", lab.socket_path,
                    lab_config(lab, f"workers = 1\nrefusal_floor = {floor:g}\nfailure_delay = 0\n")).start()
    try:
        refusals: list = []
        names = ["andrew@example.com", "nobody@example.com"] * 3
        threads = [threading.Thread(target=lambda n=n: refusals.append(login(lab.socket_path, n, b"wrong", None)))
                   for n in names]
        for thread in threads:
            thread.start()
        # every refusal has reached the worker once the log shows it
        assert kitd.wait_for_log("result=fail", timeout=30)
        good, reply = login(lab.socket_path, "andrew@example.com", b"andrew-secret", None)
        for thread in threads:
            thread.join(60)
        assert reply.endswith(b"\n.\n")
        assert len(refusals) == 6 and all(r == b"FAIL\n" for _, r in refusals)
        assert min(t for t, _ in refusals) >= floor
        assert good < floor, (good, sorted(t for t, _ in refusals))
    finally:
        kitd.stop()


# --------------------------------------------------------------- failure delay

def test_twenty_wrong_passwords_slow_that_address_not_another(courier_lab):
    lab = courier_lab
    lab.add_user("andrew@example.com", "andrew-secret")
    lab.makeuserdb()
    base, cap = 0.05, 0.5
    kitd = Authkitd(lab.root / "kitd", lab.socket_path,
                    lab_config(lab, f"failure_delay = {base}\nfailure_delay_max = {cap}\n")).start()
    try:
        start = time.monotonic()
        for _ in range(20):
            assert login(lab.socket_path, "andrew@example.com", b"wrong", "192.0.2.66")[1] == b"FAIL\n"
        spent = time.monotonic() - start
        # the n-th failure waited min(base * 2**(n-2), cap) before its check
        assert spent >= sum(min(base * 2 ** (n - 2), cap) for n in range(2, 21))
        slowed, reply = login(lab.socket_path, "andrew@example.com", b"andrew-secret", "192.0.2.66")
        assert reply.endswith(b"\n.\n") and slowed >= cap
        other, reply = login(lab.socket_path, "andrew@example.com", b"andrew-secret", "198.51.100.7")
        assert reply.endswith(b"\n.\n") and other < cap, other
        local, reply = login(lab.socket_path, "andrew@example.com", b"andrew-secret", None)
        assert reply.endswith(b"\n.\n") and local < cap, local
        # the success reset it
        after, reply = login(lab.socket_path, "andrew@example.com", b"andrew-secret", "192.0.2.66")
        assert reply.endswith(b"\n.\n") and after < cap, after
        assert "penalty ip=192.0.2.66 failures=20" in kitd.log()
        assert "198.51.100.7 failures" not in kitd.log()
    finally:
        kitd.stop()


# -------------------------------------------------------------- rehash_on_login

def field(path, name: str, key: str) -> str | None:
    for line in open(path, encoding="utf-8"):
        record, _, fields = line.rstrip("\n").partition("\t")
        if record == name:
            for item in fields.split("|"):
                k, _, v = item.partition("=")
                if k == key:
                    return v
    return None


def test_rehash_on_login_upgrades_weak_hashes_and_courier_accepts_them(courier_lab):
    lab = courier_lab
    lab.add_user("andrew@example.com", "andrew-secret", imappw=lab.userdbpw("andrew-imap"),
                 **{"hmac-md5pw": lab.userdbpw("andrew-secret", "-hmac-md5")})
    lab.makeuserdb()
    md5 = field(lab.userdb_path, "andrew@example.com", "systempw")
    des = field(lab.userdb_path, "andrew@example.com", "imappw")
    hmac_state = field(lab.userdb_path, "andrew@example.com", "hmac-md5pw")
    assert md5.startswith("$1$") and len(des) == 13
    kitd = Authkitd(lab.root / "kitd", lab.socket_path, lab_config(lab, "rehash_on_login = yes\n")).start()
    try:
        ok = exchange(lab.socket_path, protocol.login_request("pop3", "andrew@example.com", b"andrew-secret"))
        assert ok.endswith(b"\n.\n")
        assert kitd.wait_for_log("rehash user=andrew@example.com service=pop3 result=ok")
        upgraded = field(lab.userdb_path, "andrew@example.com", "systempw")
        assert upgraded.startswith("$6$")
        assert field(lab.userdb_path, "andrew@example.com", "imappw") == des  # not the field used
        assert field(lab.userdb_path, "andrew@example.com", "hmac-md5pw") == hmac_state
        # a wrong password upgrades nothing; a strong hash is left alone
        assert exchange(lab.socket_path, protocol.login_request("imap", "andrew@example.com", b"nope")) == b"FAIL\n"
        assert field(lab.userdb_path, "andrew@example.com", "imappw") == des
        before = lab.userdb_path.read_bytes()
        assert exchange(lab.socket_path, protocol.login_request("pop3", "andrew@example.com",
                                                                b"andrew-secret")).endswith(b"\n.\n")
        assert lab.userdb_path.read_bytes() == before
        assert exchange(lab.socket_path, protocol.login_request("imap", "andrew@example.com",
                                                                b"andrew-imap")).endswith(b"\n.\n")
        assert kitd.wait_for_log("rehash user=andrew@example.com service=imap result=ok")
    finally:
        kitd.stop()
    assert field(lab.userdb_path, "andrew@example.com", "imappw").startswith("$6$")
    CourierLab.start_daemon(lab)  # reads the compiled pair authkit kept current
    assert lab.authtest("-s", "pop3", "andrew@example.com", "andrew-secret").returncode == 0
    assert lab.authtest("-s", "imap", "andrew@example.com", "andrew-imap").returncode == 0
    assert lab.authtest("-s", "imap", "andrew@example.com", "andrew-secret").returncode != 0


def test_rehash_on_a_full_disk_keeps_the_login_and_the_userdb(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root (a private tmpfs in a mount namespace)")
    from authkit.schemes import make_password_hash
    from authkit.userdb.locks import compiled_lock_path, text_lock_path

    source_dir = tmp_path / "seed"
    source_dir.mkdir()
    text = ("andrew@example.com\tuid=5000|gid=5000|home=/home/andrew|systempw="
            + make_password_hash(b"andrew-secret", "md5-crypt") + "\n").encode()
    (source_dir / "userdb").write_bytes(text)
    disk = tmp_path / "disk"
    disk.mkdir()
    # inside authkitd's own mount namespace: a 64 kB tmpfs holding the userdb,
    # filled up, so the rehash cannot write its new copy
    setup = ('mount -t tmpfs -o size=64k authkitd-full "$0" && cp "$1"/userdb "$0"/userdb && '
             'chmod 600 "$0"/userdb && (dd if=/dev/zero of="$0"/filler bs=1k 2>/dev/null || true) && '
             'shift && exec "$@"')
    prefix = ["unshare", "-m", "--propagation", "private", "/bin/sh", "-c", setup,
              str(disk), str(source_dir)]
    config = f"source = userdb\nuserdb = {disk / 'userdb'}\nrehash_on_login = yes\n"
    kitd = Authkitd(tmp_path / "kitd", tmp_path / "kitd" / "socket", config, prefix=prefix).start()
    try:
        reply = exchange(kitd.socket_path, protocol.login_request("imap", "andrew@example.com",
                                                                  b"andrew-secret"))
        assert reply.endswith(b"\n.\n") and b"PASSWD2=andrew-secret\n" in reply
        assert kitd.wait_for_log("rehash user=andrew@example.com result=failed")
        inside = subprocess.run(["nsenter", "-t", str(kitd.proc.pid), "-m", "--", "cat", str(disk / "userdb")],
                                capture_output=True, timeout=30)
        assert inside.returncode == 0 and inside.stdout == text
        listing = subprocess.run(["nsenter", "-t", str(kitd.proc.pid), "-m", "--", "ls", "-a", str(disk)],
                                 capture_output=True, timeout=30).stdout.split()
        locks = {os.path.basename(path).encode() for path in  # lock files stay, by design
                 (text_lock_path(str(disk / "userdb")), compiled_lock_path(str(disk / "userdb")))}
        assert sorted(set(listing) - locks) == [b".", b"..", b"filler", b"userdb"]  # no temp file
        assert "andrew-secret" not in kitd.log()
    finally:
        kitd.stop()


# ------------------------------------------------------------------- the cache

def test_cache_is_invalidated_by_userdb_changes_and_passwd(courier_lab):
    lab = courier_lab
    lab.add_user("andrew@example.com", "andrew-secret", quota="100S")
    lab.makeuserdb()
    kitd = Authkitd(lab.root / "kitd", lab.socket_path, lab_config(lab, "cache_ttl = 2\n")).start()
    try:
        first = pre(lab.socket_path, "andrew@example.com")
        assert b"QUOTA=100S\n" in first
        assert pre(lab.socket_path, "newbie@example.com") == b"FAIL\n"   # a negative entry
        # Courier's own tools change the files: seen at once
        lab.userdb("andrew@example.com", "set", "quota=200S")
        lab.add_user("newbie@example.com", "newbie-pw")
        lab.makeuserdb()
        assert b"QUOTA=200S\n" in pre(lab.socket_path, "andrew@example.com")
        assert pre(lab.socket_path, "newbie@example.com").endswith(b"\n.\n")
        # a PASSWD through the daemon: the next PRE has the new hash
        old_hash = [line for line in pre(lab.socket_path, "andrew@example.com").split(b"\n")
                    if line.startswith(b"PASSWD=")]
        assert exchange(lab.socket_path, protocol.passwd_request(
            "login", "andrew@example.com", b"andrew-secret", b"Cache-N3w-1")) == b"OK\n"
        new_hash = [line for line in pre(lab.socket_path, "andrew@example.com").split(b"\n")
                    if line.startswith(b"PASSWD=")]
        assert new_hash and new_hash != old_hash
        # the cache is in use: a change that keeps inode, size and mtime is not
        # seen until the entry expires
        dat = lab.dat_path
        cached = pre(lab.socket_path, "andrew@example.com")
        st = os.stat(dat)
        data = dat.read_bytes()
        assert data.count(b"quota=200S") == 1
        with open(dat, "r+b") as handle:
            handle.write(data.replace(b"quota=200S", b"quota=300S"))
        os.utime(dat, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert pre(lab.socket_path, "andrew@example.com") == cached
        deadline = time.monotonic() + 30
        while b"QUOTA=300S" not in pre(lab.socket_path, "andrew@example.com"):
            assert time.monotonic() < deadline, "the entry never expired"
            time.sleep(0.1)
    finally:
        kitd.stop()
