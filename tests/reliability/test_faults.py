"""Faults while the userdb is being changed: disk full, a read-only directory
(both on a private tmpfs in a mount namespace), the userdb or its temporary
file replaced by a symlink, and courierpassd SIGKILLed at random points of a
change.  Afterwards every account authenticates with exactly its old or its new
password, the other accounts are untouched, and no lock file blocks the next
change.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from _rel import (BIN, ROOT, authenticates, count, courierpasswd, dialogue, env, make_userdb, record,
                  records, write_config)

ACCOUNTS = {f"user{i}": (f"old-password-{i}", 1000 + i) for i in range(5)}

_INNER = textwrap.dedent('''
    import json, os, subprocess, sys
    sys.path.insert(0, {root!r})
    sys.path.insert(0, {here!r})
    from _rel import make_userdb, write_config, courierpasswd, authenticates, records
    from pathlib import Path
    d = Path(os.environ["FAULT_DIR"])
    accounts = {{f"user{{i}}": (f"old-password-{{i}}", 1000 + i) for i in range(5)}}
    db = make_userdb(d / "userdb", accounts, scheme="SSHA")
    conf = write_config(d / "authkit.conf", db, hash_scheme="SSHA")
    before = db.read_bytes()
    out = {{}}
    {body}
    print(json.dumps(out))
''')


def _in_private_tmpfs(tmp_path: Path, size: str, body: str) -> dict:
    """Run ``body`` (Python, with ``d``, ``db``, ``conf``, ``before``, ``out``) in a
    new mount namespace where ``tmp_path/mnt`` is a tmpfs of ``size``."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare for a private tmpfs")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    code = _INNER.format(root=str(ROOT), here=str(Path(__file__).parent),
                         body=textwrap.dedent(body).strip())
    script = tmp_path / "inner.py"
    script.write_text(code)
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         f'mount -t tmpfs -o size={size},mode=0755 tmpfs "$FAULT_DIR" && exec "$0" "$1"',
         sys.executable, str(script)],
        capture_output=True, env=env(FAULT_DIR=str(mnt)), timeout=300)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_disk_full_while_writing_the_userdb_changes_nothing(tmp_path: Path) -> None:
    out = _in_private_tmpfs(tmp_path, "256k", '''
        filler = d / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"x" * 4096)
        except OSError:
            pass
        os.close(fd)
        # the tmpfs is full: the lock file (no data) can be created, the copy cannot
        p = courierpasswd(b"user1\\0old-password-1\\0new-password-1\\0", conf, "-c")
        out["full_rc"] = p.returncode
        out["full_log"] = p.stderr.decode(errors="replace")
        out["unchanged"] = db.read_bytes() == before
        out["leftovers"] = sorted(n for n in os.listdir(d) if n.startswith(".tmp"))
        os.unlink(filler)
        p = courierpasswd(b"user1\\0old-password-1\\0new-password-1\\0", conf, "-c")
        out["after_rc"] = p.returncode
        out["new_ok"] = authenticates(db, "user1", "new-password-1")
        out["others_ok"] = all(authenticates(db, f"user{i}", f"old-password-{i}") for i in (0, 2, 3, 4))
        out["mode"] = oct(os.stat(db).st_mode & 0o777)
    ''')
    assert out["full_rc"] == 111 and out["unchanged"] and out["leftovers"] == [], out
    assert "No space left on device" in out["full_log"] and "old-password" not in out["full_log"]
    assert out["after_rc"] == 0 and out["new_ok"] and out["others_ok"] and out["mode"] == "0o600", out
    record("fault-disk-full", exit=out["full_rc"], unchanged=True, next_change_exit=out["after_rc"])


def test_read_only_directory_is_a_temporary_failure(tmp_path: Path) -> None:
    out = _in_private_tmpfs(tmp_path, "1m", '''
        subprocess.run(["mount", "-o", "remount,ro", str(d)], check=True)
        p = courierpasswd(b"user2\\0old-password-2\\0new-password-2\\0", conf, "-c")
        out["rc"], out["log"] = p.returncode, p.stderr.decode(errors="replace")
        out["unchanged"] = db.read_bytes() == before
        out["old_ok"] = authenticates(db, "user2", "old-password-2")
        subprocess.run(["mount", "-o", "remount,rw", str(d)], check=True)
        p = courierpasswd(b"user2\\0old-password-2\\0new-password-2\\0", conf, "-c")
        out["after_rc"] = p.returncode
    ''')
    assert out["rc"] == 111 and out["unchanged"] and out["old_ok"], out
    assert "Read-only file system" in out["log"] and "old-password" not in out["log"]
    assert out["after_rc"] == 0
    record("fault-read-only", exit=out["rc"], unchanged=True, next_change_exit=out["after_rc"])


def test_userdb_replaced_by_a_symlink_never_writes_through_it(tmp_path: Path) -> None:
    real = make_userdb(tmp_path / "real-userdb", ACCOUNTS, scheme="SSHA")
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    link = tmp_path / "userdb"
    link.symlink_to(real)
    config = write_config(tmp_path / "authkit.conf", link, hash_scheme="SSHA")
    real_before = real.read_bytes()
    proc = courierpasswd(b"user0\0old-password-0\0new-password-0\0", config, "-c")
    # the rename replaces the link itself; the file it pointed to is never written
    assert proc.returncode == 0, proc.stderr
    assert real.read_bytes() == real_before and victim.read_bytes() == b"precious\n"
    assert authenticates(link, "user0", "new-password-0")
    # a planted temporary-file symlink is refused (O_NOFOLLOW), nothing written through it
    (tmp_path / ".tmp.userdb").symlink_to(victim)
    proc = courierpasswd(b"user1\0old-password-1\0new-password-1\0", config, "-c")
    assert proc.returncode == 111 and victim.read_bytes() == b"precious\n"
    assert authenticates(link, "user1", "old-password-1")
    # a planted lock-file symlink: the lock is taken on the target, which is not written
    (tmp_path / ".tmp.userdb").unlink()
    (tmp_path / ".lock.userdb").unlink()
    (tmp_path / ".lock.userdb").symlink_to(victim)
    proc = courierpasswd(b"user1\0old-password-1\0new-password-1\0", config, "-c")
    assert victim.read_bytes() == b"precious\n"
    assert authenticates(link, "user1", "new-password-1" if proc.returncode == 0 else "old-password-1")
    record("fault-symlink", link_replaced=True, victim_written=False, planted_tmp_exit=111,
           planted_lock_exit=proc.returncode)


def test_sigkill_of_courierpassd_at_random_points_loses_nothing(tmp_path: Path) -> None:
    """courierpassd (stdin/stdout) is SIGKILLed at a random moment of a change
    dialogue; the account then has exactly its old or its new password, the
    others theirs, and the next change succeeds (no lock left behind)."""
    userdb = make_userdb(tmp_path / "userdb", ACCOUNTS)  # sha512-crypt: a change takes a while
    config = write_config(tmp_path / "authkit.conf", userdb, bad_pass_delay=0, idle_timeout=10)
    shape = records(userdb)
    current = {name: pw for name, (pw, _) in ACCOUNTS.items()}
    rng = random.Random(int(os.environ.get("AUTHKIT_SEED", "8")))
    reps = count(25, 200)
    outcomes = {"old": 0, "new": 0}
    for rep in range(reps):
        name = f"user{rep % len(ACCOUNTS)}"
        old, new = current[name], f"pw-{rep}-{rng.randrange(10**6)}"
        proc = subprocess.Popen([sys.executable, "-S", str(BIN / "courierpassd"), "--stderr", "--config", str(config)],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())
        proc.stdin.write(dialogue(name.encode(), old.encode(), new.encode()))
        proc.stdin.flush()
        time.sleep(rng.uniform(0, 0.12))  # start-up ~40 ms, then two verifications, hash, write
        proc.kill()
        proc.wait()
        proc.stdin.close()
        has_old, has_new = authenticates(userdb, name, old), authenticates(userdb, name, new)
        assert has_old != has_new, f"rep {rep}: old={has_old} new={has_new}"
        outcomes["new" if has_new else "old"] += 1
        current[name] = new if has_new else old
        assert records(userdb) == shape
        for other, pw in current.items():
            assert authenticates(userdb, other, pw), (rep, other)
    # no lock file blocks the next change
    started = time.monotonic()
    result = courierpasswd(b"user0\0" + current["user0"].encode() + b"\0final-password-0\0", config, "-c")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 10
    assert os.stat(userdb).st_mode & 0o777 == 0o600
    record("fault-sigkill-courierpassd", repetitions=reps, kept_old=outcomes["old"], got_new=outcomes["new"],
           lost_or_mixed=0, next_change_exit=result.returncode)
