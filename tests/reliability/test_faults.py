"""Faults while the userdb is being changed: disk full (with and without a
compiled pair), a read-only directory (both on a private tmpfs in a mount
namespace), a symlinked userdb, planted symlinks at the temporary and lock
files, a change racing the first makeuserdb, and courierpassd SIGKILLed at
random points of a change.  Afterwards every account authenticates with exactly its old or its new
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


def test_disk_full_while_copying_the_compiled_pair_leaves_the_text_unchanged(tmp_path: Path) -> None:
    """issue 17 item 1: with a compiled pair, the tmpfs has room for the new text
    but not for the copy of userdbshadow.dat (16 KiB): 111, and neither the text
    nor the compiled pair changed, and no journal is left that could later undo
    someone else's edit."""
    out = _in_private_tmpfs(tmp_path, "256k", '''
        from authkit.userdb.compile import compile_userdb, verify_compiled
        compile_userdb(str(db))
        before = db.read_bytes()
        shadow_before = (d / "userdbshadow.dat").read_bytes()
        filler = d / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"x" * 4096)
        except OSError:
            pass
        os.ftruncate(fd, (os.fstat(fd).st_size // 4096 - 2) * 4096)  # two or three pages free
        os.close(fd)
        p = courierpasswd(b"user1\\0old-password-1\\0new-password-1\\0", conf, "-c")
        out["full_rc"] = p.returncode
        out["full_log"] = p.stderr.decode(errors="replace")
        out["text_unchanged"] = db.read_bytes() == before
        out["shadow_unchanged"] = (d / "userdbshadow.dat").read_bytes() == shadow_before
        out["leftovers"] = sorted(n for n in os.listdir(d) if n.startswith((".tmp", ".authkit-pending")))
        out["old_ok"] = authenticates(db, "user1", "old-password-1")
        out["agree"] = list(verify_compiled(str(db)))
        os.unlink(filler)
        p = courierpasswd(b"user1\\0old-password-1\\0new-password-1\\0", conf, "-c")
        out["after_rc"] = p.returncode
        out["new_ok"] = authenticates(db, "user1", "new-password-1")
        out["others_ok"] = all(authenticates(db, f"user{i}", f"old-password-{i}") for i in (0, 2, 3, 4))
        out["agree_after"] = list(verify_compiled(str(db)))
        out["leftovers_after"] = sorted(n for n in os.listdir(d) if n.startswith((".tmp", ".authkit-pending")))
    ''')
    assert out["full_rc"] == 111 and "No space left on device" in out["full_log"], out
    assert out["text_unchanged"] and out["shadow_unchanged"] and out["leftovers"] == [], out
    assert out["old_ok"] and out["agree"] == [] and "old-password" not in out["full_log"], out
    assert out["after_rc"] == 0 and out["new_ok"] and out["others_ok"], out
    assert out["agree_after"] == [] and out["leftovers_after"] == [], out
    record("fault-disk-full-compiled", exit=out["full_rc"], text_unchanged=True, journal_left=False,
           next_change_exit=out["after_rc"])


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


def _wait_until_it_holds(proc: subprocess.Popen, path: Path, timeout: float = 30) -> bool:
    """True once ``proc`` has ``path`` open (it is then taking or waiting for that
    lock); False if it exits first.  A bounded wait on a condition."""
    wanted = str(path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            fds = os.listdir(f"/proc/{proc.pid}/fd")
        except FileNotFoundError:
            return False
        for fd in fds:
            try:
                if os.readlink(f"/proc/{proc.pid}/fd/{fd}") == wanted:
                    return True
            except OSError:
                continue
        time.sleep(0.005)
    raise AssertionError(f"{proc.args} neither opened {path} nor exited in {timeout} s")


def _start_change(config: Path, user: str, old: str, new: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-S", str(BIN / "courierpasswd"), "--stdin", "--stderr", "--config", str(config), "-c"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
    proc.stdin.write(f"{user}\0{old}\0{new}\0".encode())
    proc.stdin.close()
    return proc


def _ended(proc: subprocess.Popen) -> str:
    """How a change that did not wait ended (for the assertion message)."""
    return f"exited {proc.wait(60)} without waiting: {proc.stderr.read()!r}"


def test_symlinked_userdb_is_edited_at_its_target_under_the_targets_lock(tmp_path: Path) -> None:
    """issue 17 item 6: Courier's userdb follows the link and locks
    ``.lock.<target>``; so does authkit, and the link stays a link."""
    from authkit.userdb.locks import FileLock

    real_dir = tmp_path / "real"
    real_dir.mkdir()
    real = make_userdb(real_dir / "real-userdb", ACCOUNTS, scheme="SSHA")
    link = tmp_path / "userdb"
    link.symlink_to(real)
    config = write_config(tmp_path / "authkit.conf", link, hash_scheme="SSHA")
    proc = courierpasswd(b"user0\0old-password-0\0new-password-0\0", config, "-c")
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert authenticates(real, "user0", "new-password-0") and authenticates(link, "user0", "new-password-0")
    assert os.stat(real).st_mode & 0o777 == 0o600
    # While Courier's userdb (here: the test) holds the target's lock, the change waits.
    target_lock = real_dir / ".lock.real-userdb"
    before = real.read_bytes()
    with FileLock(str(target_lock)):
        change = _start_change(config, "user1", "old-password-1", "new-password-1")
        try:
            assert _wait_until_it_holds(change, target_lock), _ended(change)
            assert change.poll() is None and real.read_bytes() == before  # waiting, nothing written
        except BaseException:
            change.kill()
            raise
    assert change.wait(60) == 0, change.stderr.read()
    assert authenticates(link, "user1", "new-password-1")
    assert not (tmp_path / ".lock.userdb").exists()
    record("fault-symlink-userdb", link_kept=True, target_lock_waited=True)


def test_planted_symlinks_are_refused_and_nothing_is_written_through_them(tmp_path: Path) -> None:
    """issue 17 item 8: a planted ``.tmp.userdb``, ``.lock.userdb`` or
    ``userdb.lock`` symlink makes the change fail with 111; root creates and
    writes nothing where it points."""
    userdb = make_userdb(tmp_path / "userdb", ACCOUNTS, scheme="SSHA")
    config = write_config(tmp_path / "authkit.conf", userdb, hash_scheme="SSHA")
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    before = userdb.read_bytes()
    exits = {}
    for planted, target in ((".tmp.userdb", victim), (".lock.userdb", tmp_path / "created-1"),
                            ("userdb.lock", tmp_path / "created-2")):
        (tmp_path / planted).unlink(missing_ok=True)
        (tmp_path / planted).symlink_to(target)
        proc = courierpasswd(b"user1\0old-password-1\0new-password-1\0", config, "-c")
        exits[planted] = proc.returncode
        assert proc.returncode == 111, (planted, proc.returncode, proc.stderr)
        assert victim.read_bytes() == b"precious\n" and not (tmp_path / "created-1").exists()
        assert not (tmp_path / "created-2").exists() and userdb.read_bytes() == before
        assert authenticates(userdb, "user1", "old-password-1")
        (tmp_path / planted).unlink()
    proc = courierpasswd(b"user1\0old-password-1\0new-password-1\0", config, "-c")
    assert proc.returncode == 0 and authenticates(userdb, "user1", "new-password-1"), proc.stderr
    record("fault-planted-symlinks", exits=exits, victim_written=False, created=False)


def test_a_change_during_the_first_makeuserdb_is_not_lost(tmp_path: Path) -> None:
    """issue 17 item 7: no userdb.dat yet; makeuserdb (here: the test, holding
    ``userdb.lock``) has read the text and is writing the compiled pair.  A
    change made meanwhile waits for it, then stores itself in the new pair."""
    from authkit.userdb.compile import compile_userdb
    from authkit.userdb.locks import FileLock

    userdb = make_userdb(tmp_path / "userdb", ACCOUNTS, scheme="SSHA")
    config = write_config(tmp_path / "authkit.conf", userdb, hash_scheme="SSHA")
    old_text = tmp_path / "snapshot" / "userdb"  # what the makeuserdb read
    old_text.parent.mkdir()
    shutil.copy2(userdb, old_text)
    lock = tmp_path / "userdb.lock"
    with FileLock(str(lock)):
        change = _start_change(config, "user2", "old-password-2", "new-password-2")
        try:
            assert _wait_until_it_holds(change, lock), _ended(change)
            assert change.poll() is None
            compile_userdb(str(old_text))  # makeuserdb's result from the text it read
            os.rename(f"{old_text}shadow.dat", tmp_path / "userdbshadow.dat")
            os.rename(f"{old_text}.dat", tmp_path / "userdb.dat")
        except BaseException:
            change.kill()
            raise
    assert change.wait(60) == 0, change.stderr.read()
    assert (tmp_path / "userdb.dat").exists()
    assert authenticates(userdb, "user2", "new-password-2")  # from the compiled pair
    assert not authenticates(userdb, "user2", "old-password-2")
    record("fault-change-during-first-makeuserdb", waited=True, lost=False)


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
