"""The CourierLab harness runs Courier's real tools and authdaemond privately.

Every fixture here is made by Courier's own programs inside the lab:
``userdbpw`` (hashes), ``userdb NAME set`` (text userdb), ``makeuserdb``
(userdb.dat / userdbshadow.dat), ``authdaemond``, ``authtest``, ``authenumerate``.
Expected replies follow spec courier-authlib.md section 4.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from courierlab import CourierLab

pytestmark = pytest.mark.integration


def _listing(path: str) -> list[tuple]:
    """(name, mode, uid, gid, size, mtime_ns) of every entry under ``path``."""
    out = []
    for dirpath, dirnames, filenames in os.walk(path):
        for name in sorted(dirnames + filenames):
            st = os.lstat(os.path.join(dirpath, name))
            out.append((os.path.join(dirpath, name), st.st_mode, st.st_uid, st.st_gid,
                        st.st_size, st.st_mtime_ns))
    st = os.lstat(path)
    return sorted(out) + [(path, st.st_mode, st.st_mtime_ns)]


def _populate(lab: CourierLab) -> None:
    """andrew: md5-crypt systempw, DES-crypt imappw, HMAC-MD5 secret (all from
    userdbpw); des@example.org: DES-crypt systempw."""
    lab.add_user("andrew@example.com", "andrew-secret",
                 mail="/home/vmail/example.com/andrew/Maildir",
                 gecos="Andrew Example,Room 1,555-0100", quota="10000000S",
                 options="disableshared=1")
    lab.add_user("andrew@example.com", "andrew-imap", pw_field="imappw", pw_flags=())
    lab.add_user("andrew@example.com", "andrew-secret", pw_field="hmac-md5pw",
                 pw_flags=("-hmac-md5",))
    lab.add_user("des@example.org", "pw-descrypt", pw_flags=())


def test_lab_mounts_are_private_and_host_courier_dirs_unchanged(
        courier_lab_factory) -> None:
    before = (_listing("/etc/courier"), _listing("/run/courier"))
    host_mounts = Path("/proc/self/mounts").read_text()
    lab = courier_lab_factory()
    seen = lab.run(["sh", "-c", "cat /etc/courier/authdaemonrc; ls /run/courier/authdaemon"])
    assert b'authmodulelist="authuserdb"' in seen.stdout
    _populate(lab)
    lab.makeuserdb()
    lab.start_daemon()
    assert lab.authtest("-s", "imap", "andrew@example.com", "andrew-imap").returncode == 0
    assert (lab.etc_dir / "userdb.dat").exists()
    assert not Path("/etc/courier/userdb.dat").exists()
    lab.close()
    assert (_listing("/etc/courier"), _listing("/run/courier")) == before
    assert Path("/proc/self/mounts").read_text() == host_mounts


def test_userdb_files_get_private_modes(courier_lab: CourierLab) -> None:
    _populate(courier_lab)
    courier_lab.makeuserdb()
    assert courier_lab.userdb_path.stat().st_mode & 0o777 == 0o600
    assert courier_lab.shadow_path.stat().st_mode & 0o077 == 0  # makeuserdb: umask 066
    assert courier_lab.dat_path.stat().st_mode & 0o777 == 0o644  # makeuserdb: umask 022


def test_makeuserdb_refuses_group_readable_userdb(courier_lab: CourierLab) -> None:
    os.chmod(courier_lab.userdb_path, 0o640)
    proc = courier_lab.makeuserdb(check=False)
    assert proc.returncode != 0
    assert b"MAY NOT HAVE GROUP OR WORLD PERMISSIONS" in proc.stderr


def test_authtest_accepts_service_password_and_rejects_other(courier_lab: CourierLab) -> None:
    _populate(courier_lab)
    courier_lab.makeuserdb()
    courier_lab.start_daemon()
    ok = courier_lab.authtest("-s", "imap", "andrew@example.com", "andrew-imap")
    assert ok.returncode == 0, ok.stderr
    assert b"Authentication succeeded." in ok.stdout
    assert b"Options: disableshared=1" in ok.stdout
    # imappw exists, so systempw is not used for imap ...
    bad = courier_lab.authtest("-s", "imap", "andrew@example.com", "andrew-secret")
    assert bad.returncode == 1
    assert b"Authentication FAILED" in bad.stderr
    # ... but is for pop3; DES crypt from plain userdbpw works too.
    assert courier_lab.authtest("-s", "pop3", "andrew@example.com", "andrew-secret").returncode == 0
    assert courier_lab.authtest("-s", "imap", "des@example.org", "pw-descrypt").returncode == 0
    assert courier_lab.authtest("-s", "imap", "nobody@example.org", "x").returncode == 1


def test_pre_over_raw_socket_from_host(courier_lab: CourierLab) -> None:
    _populate(courier_lab)
    courier_lab.makeuserdb()
    courier_lab.start_daemon()
    reply = courier_lab.request(b"PRE . imap andrew@example.com\n")
    lines = reply.split(b"\n")
    assert lines[:7] == [
        b"UID=5000", b"GID=5000", b"HOME=/home/vmail/andrew@example.com",
        b"ADDRESS=andrew@example.com", b"NAME=Andrew Example",
        b"MAILDIR=/home/vmail/example.com/andrew/Maildir", b"QUOTA=10000000S",
    ]
    assert lines[7].startswith(b"PASSWD=") and len(lines[7]) == len(b"PASSWD=") + 13
    assert lines[8:] == [b"OPTIONS=disableshared=1", b".", b""]
    assert courier_lab.request(b"PRE . imap nobody@example.com\n") == b"FAIL\n"
    assert courier_lab.request(b"HELLO\n") == b""


def test_authenumerate_lists_users(courier_lab: CourierLab) -> None:
    _populate(courier_lab)
    courier_lab.makeuserdb()
    courier_lab.start_daemon()
    proc = courier_lab.authenumerate()
    assert proc.returncode == 0
    assert sorted(proc.stdout.splitlines()) == [
        b"andrew@example.com\t5000\t5000\t/home/vmail/andrew@example.com"
        b"\t/home/vmail/example.com/andrew/Maildir",
        b"des@example.org\t5000\t5000\t/home/vmail/des@example.org\t",
    ]


def test_directory_layout_records_source_location(courier_lab_factory) -> None:
    lab = courier_lab_factory(layout="dir", defaultoptions="wbnoimages=1")
    lab.add_user("andrew@example.com", "andrew-secret")
    assert (lab.userdb_path / "example.com").exists()
    assert lab.userdb_path.stat().st_mode & 0o777 == 0o700
    lab.makeuserdb()
    lab.start_daemon()
    reply = lab.request(b"PRE . login andrew@example.com\n")
    assert b"\nOPTIONS=wbnoimages=1\n.\n" in reply


def test_close_leaves_no_process_and_is_idempotent(courier_lab_factory) -> None:
    lab = courier_lab_factory(daemons=2)
    _populate(lab)
    lab.makeuserdb()
    lab.start_daemon()
    pids = lab.namespace_pids()
    assert len(pids) >= 4  # holder + authdaemond parent + 2 children
    lab.close()
    lab.close()
    time.sleep(0.05)
    alive = [p for p in pids if Path(f"/proc/{p}").exists()
             and "zombie" not in Path(f"/proc/{p}/status").read_text().lower()]
    assert alive == []
    assert not lab.socket_path.exists() or not _connectable(lab.socket_path)


def _connectable(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True
