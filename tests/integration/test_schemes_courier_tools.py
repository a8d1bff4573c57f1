"""authkit.schemes against the real hash generators: Courier's ``userdbpw`` and
``authpasswd`` (courier-authlib-userdb / courier-authlib, Debian 12) and whois'
``mkpasswd``.

None of these tools needs a daemon, /etc/courier or a tty: without a tty each reads
the password as one line from stdin (``echo pw | userdbpw -md5``,
``echo pw | authpasswd SSHA``, ``echo pw | mkpasswd -s -m sha512crypt``) and prints
the stored value.  Every output must verify in authkit with the right password and
not with a wrong one; ``userdbpw -hmac-*`` output must equal ``hmac_state`` exactly.
A missing tool skips its tests with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from authkit.schemes import identify_scheme, verify_password
from authkit.schemes.hmacstate import hmac_state

pytestmark = pytest.mark.integration

PASSWORDS = [
    b"a",  # short
    b"pw-courier",
    b"with space",
    "Grüße-€".encode("utf-8"),  # UTF-8
    b"L" * 100,  # long: beyond bcrypt's 72 and HMAC's 64-byte block
]
PASSWORD_IDS = ["short", "plain", "space", "utf8", "100-bytes"]


def _tool(*candidates: str) -> str:
    for candidate in candidates:
        path = shutil.which(candidate) if "/" not in candidate else candidate
        if path and os.access(path, os.X_OK):
            return path
    pytest.skip(f"{candidates[0]} is not installed (looked in {', '.join(candidates)})")


def _run(argv: list[str], password: bytes) -> str:
    """Run a generator with ``password`` as one stdin line (no tty); its stored value."""
    proc = subprocess.run(
        argv,
        input=password + b"\n",
        capture_output=True,
        timeout=60,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"},
    )
    assert proc.returncode == 0, (argv, proc.returncode, proc.stderr)
    lines = proc.stdout.decode("ascii").split()
    assert len(lines) == 1, (argv, proc.stdout)
    return lines[0]


def _wrong(password: bytes) -> bytes:
    """``password`` with its first byte changed (so DES's 8-byte limit cannot hide it)."""
    return bytes([password[0] ^ 1]) + password[1:]


def _assert_verifies(stored: str, password: bytes, scheme: str) -> None:
    assert identify_scheme(stored) == scheme
    assert verify_password(password, stored)
    assert not verify_password(_wrong(password), stored)
    assert not verify_password(password + b"x", stored) or scheme in ("des-crypt", "bcrypt")


# ------------------------------------------------------------------ userdbpw


def _userdbpw() -> str:
    return _tool("userdbpw", "/usr/sbin/userdbpw", "/usr/lib/courier/courier-authlib/userdbpw")


@pytest.mark.parametrize("password", PASSWORDS, ids=PASSWORD_IDS)
@pytest.mark.parametrize("option,scheme", [("-md5", "md5-crypt"), (None, "des-crypt")])
def test_userdbpw_hash_verifies(option: str | None, scheme: str, password: bytes) -> None:
    stored = _run([_userdbpw()] + ([option] if option else []), password)
    _assert_verifies(stored, password, scheme)


@pytest.mark.parametrize("password", PASSWORDS + [b"k" * 64, b"k" * 65], ids=PASSWORD_IDS + ["64-bytes", "65-bytes"])
@pytest.mark.parametrize("algorithm", ["md5", "sha1", "sha256"])
def test_userdbpw_hmac_state_equals_authkit(algorithm: str, password: bytes) -> None:
    assert _run([_userdbpw(), f"-hmac-{algorithm}"], password) == hmac_state(password, algorithm)


# ------------------------------------------------------------------ authpasswd


AUTHPASSWD_METHODS = [
    ("MD5", "MD5"),
    ("MD5RAW", "MD5RAW"),
    ("SHA", "SHA"),
    ("SSHA", "SSHA"),
    ("SHA256", "SHA256"),
    ("SHA512", "SHA512"),
    (None, "md5-crypt"),  # default: $1$ with a 5-character salt
    ("ssha", "SSHA"),  # methods in any case
    ("crypt", "SSHA"),  # documented in the man page, but yields {SSHA} (spec section 6)
]


@pytest.mark.parametrize("password", PASSWORDS, ids=PASSWORD_IDS)
@pytest.mark.parametrize("method,scheme", AUTHPASSWD_METHODS, ids=[str(m[0]) for m in AUTHPASSWD_METHODS])
def test_authpasswd_hash_verifies(method: str | None, scheme: str, password: bytes) -> None:
    tool = _tool("authpasswd", "/usr/sbin/authpasswd", "/usr/lib/courier/courier-authlib/authpasswd")
    stored = _run([tool] + ([method] if method else []), password)
    _assert_verifies(stored, password, scheme)


# ------------------------------------------------------------------ mkpasswd (whois)


MKPASSWD_METHODS = [
    ("des", "des-crypt"),
    ("md5crypt", "md5-crypt"),
    ("sha256crypt", "sha256-crypt"),
    ("sha512crypt", "sha512-crypt"),
    ("bcrypt", "bcrypt"),
    ("bcrypt-a", "bcrypt"),
    ("yescrypt", "yescrypt"),
    ("gost-yescrypt", "crypt"),
    ("scrypt", "crypt"),
    ("sunmd5", "crypt"),
    ("bsdicrypt", "crypt"),
    ("nt", "crypt"),
]


@pytest.mark.parametrize("password", PASSWORDS, ids=PASSWORD_IDS)
@pytest.mark.parametrize("method,scheme", MKPASSWD_METHODS, ids=[m[0] for m in MKPASSWD_METHODS])
def test_mkpasswd_hash_verifies(method: str, scheme: str, password: bytes) -> None:
    tool = _tool("mkpasswd", "/usr/bin/mkpasswd")
    stored = _run([tool, "-s", "-m", method], password)
    if scheme in ("des-crypt", "bcrypt") or method == "bsdicrypt":
        # truncating methods: only the wrong-first-byte check is meaningful
        assert identify_scheme(stored) == scheme
        assert verify_password(password, stored)
        assert not verify_password(_wrong(password), stored)
    else:
        _assert_verifies(stored, password, scheme)


def test_mkpasswd_non_utf8_password_verifies() -> None:
    tool = _tool("mkpasswd", "/usr/bin/mkpasswd")
    password = "été".encode("latin-1")  # goes through the ctypes crypt_rn path
    for method in ("sha512crypt", "yescrypt", "des"):
        stored = _run([tool, "-s", "-m", method], password)
        assert verify_password(password, stored)
        assert not verify_password("été".encode("utf-8"), stored)
