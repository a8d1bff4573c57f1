"""The CourierLab harness runs Courier's real tools and authdaemond privately.

Every fixture here is made by Courier's own programs inside the lab:
``userdbpw`` (hashes), ``userdb NAME set`` (text userdb), ``makeuserdb``
(userdb.dat / userdbshadow.dat), ``authdaemond``, ``authtest``, ``authenumerate``.
Expected replies follow spec courier-authlib.md section 4.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from authkit.errors import TemporaryFailure
from authkit.userdb import gdbm
from courierlab import CourierLab, missing_requirements

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"

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


def test_crashed_test_process_leaves_no_lab_process(tmp_path: Path) -> None:
    """A test process that dies without close() takes the holder (stdin EOF) and
    authdaemond (PR_SET_PDEATHSIG) with it."""
    if missing_requirements():
        pytest.skip("CourierLab unavailable: " + "; ".join(missing_requirements()))
    code = (
        "import os, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
        "from pathlib import Path\n"
        "from courierlab import CourierLab\n"
        f"lab = CourierLab(Path({str(tmp_path / 'lab')!r}))\n"
        "lab.add_user('a@example.com', 'pw-a')\n"
        "lab.makeuserdb()\n"
        "lab.start_daemon()\n"
        "print(lab._mntns, len(lab.namespace_pids()), flush=True)\n"
        "os._exit(0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    mntns, count = proc.stdout.split()
    assert int(count) >= 3
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = [p for p in os.listdir("/proc") if p.isdigit() and _mntns_of(p) == mntns]
        if not left:
            break
        time.sleep(0.05)
    assert left == []


def _mntns_of(pid: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


# ------------------------------------------------ the lab's databases, read by authkit


def _records_via_system_python(path: Path) -> dict[bytes, bytes] | None:
    """Read a GDBM file with the _gdbm backend under Debian's /usr/bin/python3."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return None
    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "try:\n"
        "    import _gdbm\n"
        "except ImportError:\n"
        "    print('null'); raise SystemExit\n"
        "from authkit.userdb import gdbm\n"
        "with gdbm.open_reader(sys.argv[1], backend='_gdbm') as r:\n"
        "    print(json.dumps({k.hex(): v.hex() for k, v in r.items()}))\n"
    )
    proc = subprocess.run([SYSTEM_PYTHON, "-I", "-c", code, str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    if data is None:
        return None
    return {bytes.fromhex(k): bytes.fromhex(v) for k, v in data.items()}


def test_makeuserdb_output_reads_the_same_with_both_backends(courier_lab: CourierLab) -> None:
    """Files made by Courier's makeuserdb (lab: add_user x4 + makeuserdb)."""
    _populate(courier_lab)
    courier_lab.makeuserdb()
    for path in (courier_lab.dat_path, courier_lab.shadow_path):
        assert gdbm.detect_format(str(path)) == "gdbm"
    with gdbm.open_reader(str(courier_lab.dat_path), backend="ctypes") as r:
        main = dict(r.items())
    with gdbm.open_reader(str(courier_lab.shadow_path), backend="ctypes") as r:
        shadow = dict(r.items())
    assert sorted(main) == [b"andrew@example.com", b"des@example.org"]
    record = main[b"andrew@example.com"]
    # spec section 2: f=v|f=v..., pw fields moved out, "_=" always appended last.
    assert record.endswith(b"|_=")
    fields = dict(f.split(b"=", 1) for f in record.split(b"|"))
    assert fields == {
        b"uid": b"5000", b"gid": b"5000", b"home": b"/home/vmail/andrew@example.com",
        b"mail": b"/home/vmail/example.com/andrew/Maildir",
        b"gecos": b"Andrew Example,Room 1,555-0100", b"quota": b"10000000S",
        b"options": b"disableshared=1", b"_": b"",
    }
    shadow_fields = dict(f.split(b"=", 1) for f in shadow[b"andrew@example.com"].split(b"|"))
    assert sorted(shadow_fields) == [b"hmac-md5pw", b"imappw", b"systempw"]
    assert shadow_fields[b"systempw"].startswith(b"$1$")
    # userdbpw -hmac-md5 of andrew-secret (spec section 3 table)
    assert shadow_fields[b"hmac-md5pw"] == (
        b"c932c8cb7d3e979c6f61c66c817c47021a66750faf7228629e231e101cfa6263")
    via_gdbm_module = _records_via_system_python(courier_lab.dat_path)
    if via_gdbm_module is not None:
        assert via_gdbm_module == main
        assert _records_via_system_python(courier_lab.shadow_path) == shadow


def test_directory_layout_source_location_in_dat(courier_lab_factory) -> None:
    lab = courier_lab_factory(layout="dir")
    lab.add_user("andrew@example.com", "andrew-secret")
    lab.add_user("bob@example.org", "bob-secret", file="other")
    lab.makeuserdb()
    with gdbm.open_reader(str(lab.dat_path)) as r:
        assert r.get(b"andrew@example.com").endswith(b"|_=example.com/")
        assert r.get(b"bob@example.org").endswith(b"|_=other/")


def test_file_written_by_authkit_gdbm_is_served_by_authdaemond(courier_lab: CourierLab) -> None:
    """A userdb.dat/userdbshadow.dat pair written by authkit.userdb.gdbm (ctypes,
    GDBM_NEWDB + insert, like makedatprog) is read by Courier's libauthuserdb."""
    hashed = courier_lab.userdbpw("pw-kit", "-md5").encode()
    for name, records, mode in (
        ("userdb.dat", {b"kit@example.com": b"uid=5000|gid=5000|home=/home/kit|_="}, 0o644),
        ("userdbshadow.dat", {b"kit@example.com": b"systempw=" + hashed}, 0o600),
    ):
        tmp = courier_lab.etc_dir / (name + ".tmp")
        with gdbm.create(str(tmp), mode, backend="ctypes") as w:
            for key, value in records.items():
                w.insert(key, value)
        os.rename(tmp, courier_lab.etc_dir / name)
    courier_lab.start_daemon()
    assert courier_lab.authtest("-s", "imap", "kit@example.com", "pw-kit").returncode == 0
    assert courier_lab.authtest("-s", "imap", "kit@example.com", "pw-kat").returncode == 1


def test_authdaemond_rereads_userdb_dat_replaced_by_rename(courier_lab_factory) -> None:
    """No restart needed: each child re-stats userdb.dat per request (userdb.c
    userdb_init compares st_mtime and st_ino) and reopens it; the shadow file is
    opened per lookup.  Checked for makeuserdb and for an authkit tmp+rename, with
    one child (so the same process must notice) and repeated within one second."""
    lab = courier_lab_factory(daemons=1)
    lab.add_user("a@example.com", "pw-a")
    lab.makeuserdb()
    lab.start_daemon()
    assert lab.request(b"PRE . login b@example.com\n") == b"FAIL\n"
    lab.add_user("b@example.com", "pw-b")
    lab.makeuserdb()
    assert lab.request(b"PRE . login b@example.com\n").startswith(b"UID=5000\n")
    lab.add_user("a@example.com", "pw-a2")  # new password: shadow replaced too
    lab.makeuserdb()
    assert lab.authtest("a@example.com", "pw-a2").returncode == 0
    assert lab.authtest("a@example.com", "pw-a").returncode == 1
    for i in range(3):  # back-to-back replacements, same mtime second
        with gdbm.open_reader(str(lab.dat_path)) as r:
            records = dict(r.items())
        records[b"c%d@example.com" % i] = b"uid=5000|gid=5000|home=/c|_="
        tmp = lab.etc_dir / "userdb.dat.tmp"
        with gdbm.create(str(tmp)) as w:
            for key, value in records.items():
                w.insert(key, value)
        os.rename(tmp, lab.dat_path)
        reply = lab.request(b"PRE . login c%d@example.com\n" % i)
        assert reply == b"UID=5000\nGID=5000\nHOME=/c\nADDRESS=c%d@example.com\n.\n" % i
    assert lab.daemon_running()


def test_running_authdaemond_blocks_in_place_gdbm_writer(courier_lab: CourierLab) -> None:
    """The daemon's children keep userdb.dat open with GDBM_READER's shared lock,
    so updating it in place fails at once: writers must use tmp + rename."""
    _populate(courier_lab)
    courier_lab.makeuserdb()
    courier_lab.start_daemon()
    assert courier_lab.request(b"PRE . login des@example.org\n").startswith(b"UID=")
    with pytest.raises(TemporaryFailure, match="locked"):
        gdbm.open_writer(str(courier_lab.dat_path))


def test_password_change_through_daemon_runs_courier_scripts_in_lab(
        courier_lab: CourierLab) -> None:
    """PASSWD makes authdaemond exec /usr/sbin/userdb and makeuserdb, which must
    find the lab's files (they run inside the namespace)."""
    courier_lab.add_user("a@example.com", "pw-a")
    courier_lab.makeuserdb()
    courier_lab.start_daemon()
    proc = courier_lab.authtest("a@example.com", "pw-a", "pw-new")
    assert proc.returncode == 0, proc.stderr
    assert b"Password change succeeded." in proc.stderr
    assert b"systempw=$1$" in courier_lab.userdb_path.read_bytes()
    assert courier_lab.authtest("a@example.com", "pw-new").returncode == 0
    assert courier_lab.authtest("a@example.com", "pw-a").returncode == 1
