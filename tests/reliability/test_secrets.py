"""Secrets: no password, hash or HMAC state appears in any log line or error
message of courierpasswd and courierpassd (``--stderr`` and ``-v`` output
captured, every outcome: success, wrong password, unknown user, policy refusal,
malformed userdb line, temporary failure); files holding hashes keep their mode
(0600, or the source's own) after every rewrite.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from _rel import courierpassd_stdio, courierpasswd, dialogue, make_userdb, record, write_config

PASSWORDS = {"alice": "Alice-Secret-1", "bob": "Bob-Secret-22"}
NEW = {"alice": "Alice-Fresh-333", "bob": "Bob-Fresh-4444"}


def _secrets(userdb: Path) -> set[str]:
    """Every password, stored hash (and its salt and digest parts) and HMAC state."""
    found = set(PASSWORDS.values()) | set(NEW.values()) | {"Wrong-Guess-55"}
    for line in userdb.read_bytes().decode().splitlines():
        for item in line.partition("\t")[2].split("|"):
            key, _, value = item.partition("=")
            if key.endswith("pw") and value:
                found.add(value)
                found.update(part for part in re.split(r"[${}]", value) if len(part) >= 8)
    return found


def _assert_clean(output: bytes, secrets: set[str], where: str) -> None:
    text = output.decode("utf-8", "replace")
    for secret in secrets:
        assert secret not in text, f"{where}: a secret leaked: ...{text[-300:]}"


@pytest.mark.parametrize("mode", [0o600, 0o640])
def test_no_secret_in_any_log_line_and_modes_kept(tmp_path: Path, mode: int) -> None:
    userdb = make_userdb(tmp_path / "userdb", {n: (p, 1000 + i) for i, (n, p) in enumerate(PASSWORDS.items())},
                         mode=mode, hmac=True)
    with open(userdb, "ab") as handle:  # a malformed line holding a hash: reported, never quoted
        handle.write(b"brokenline-without-tab systempw=$6$saltsaltsalt$digestdigestdigest\n")
    config = write_config(tmp_path / "authkit.conf", userdb, bad_pass_delay=0, idle_timeout=5)
    secrets = _secrets(userdb) | {"saltsaltsalt", "digestdigestdigest"}
    outputs: list[tuple[str, bytes]] = []

    def run_passwd(label: str, data: bytes, *args: str) -> int:
        proc = courierpasswd(data, config, "-v", *args)
        outputs.append((label, proc.stdout + proc.stderr))
        return proc.returncode

    def run_passd(label: str, data: bytes) -> bytes:
        proc = courierpassd_stdio(data, config, "-v")
        outputs.append((label, proc.stdout + proc.stderr))
        return proc.stdout

    assert run_passwd("login ok", b"alice\0Alice-Secret-1\0") == 0
    assert run_passwd("login wrong", b"alice\0Wrong-Guess-55\0") == 1
    assert run_passwd("login unknown", b"nobody\0Alice-Secret-1\0") == 1
    assert run_passwd("cram wrong", b"alice\0" + b"0" * 32 + b"\0<1.2@x>\0", "-C", "md5") == 1
    assert run_passwd("change policy", b"alice\0Alice-Secret-1\0short\0", "-c") == 1
    assert run_passwd("change wrong", b"alice\0Wrong-Guess-55\0Alice-Fresh-333\0", "-c") == 1
    assert run_passwd("change ok", b"alice\0Alice-Secret-1\0Alice-Fresh-333\0", "-c") == 0
    assert os.stat(userdb).st_mode & 0o7777 == mode
    assert b"200 Password changed" in run_passd("passd ok", dialogue(b"bob", b"Bob-Secret-22", b"Bob-Fresh-4444"))
    assert os.stat(userdb).st_mode & 0o7777 == mode
    assert b"500 Old password" in run_passd("passd wrong", dialogue(b"bob", b"Wrong-Guess-55", b"Bob-Fresh-4444"))
    assert b"500 " in run_passd("passd policy", dialogue(b"bob", b"Bob-Fresh-4444", b"Bob-Fresh-4444"))
    # temporary failure: the directory cannot take the temporary file
    (tmp_path / ".tmp.userdb").mkdir()
    assert run_passwd("change tempfail", b"bob\0Bob-Fresh-4444\0Bob-Secret-22\0", "-c") == 111
    assert b"Server error" in run_passd("passd tempfail", dialogue(b"bob", b"Bob-Fresh-4444", b"Bob-Secret-22"))
    (tmp_path / ".tmp.userdb").rmdir()
    secrets |= _secrets(userdb)  # the new hashes too
    assert sum(b"result=" in output for _, output in outputs) == len(outputs), "every run logged its outcome"
    for label, output in outputs:
        _assert_clean(output, secrets, label)
    assert os.stat(userdb).st_mode & 0o7777 == mode
    assert os.stat(tmp_path / ".lock.userdb").st_mode & 0o777 == 0o600
    record(f"secrets-mode-{oct(mode)}", runs=len(outputs), secrets_checked=len(secrets), leaks=0,
           mode_kept=oct(mode))
