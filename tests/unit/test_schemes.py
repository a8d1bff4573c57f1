"""Unit tests of authkit.schemes (registry, crypt(3) shim, digests, Courier HMAC states).

Vectors note their source.  "spec" rows are the samples in
shared/spec/courier-authlib.md section 3: real userdbpw / authpasswd / mkpasswd output
that was verified through Courier's authdaemond.  "mkpasswd" rows were made on Debian 12
with ``echo pw-<method> | mkpasswd -s -m <method>`` (whois 5.5.17, libxcrypt 4.4.33).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authkit.schemes import SCHEMES, identify_scheme, make_password_hash, verify_password
from authkit.schemes import cryptlib, digests
from authkit.schemes.hmacstate import (
    hmac_state,
    md5_compress,
    sha1_compress,
    sha256_compress,
    verify_cram,
)

REPO = Path(__file__).resolve().parents[2]

SHA512_SAMPLE = (
    "$6$JnuJPyIoI7szigg1$XPK3xt5h0ytNIvCKAP7CEcQsHzIlawRQJRkbpEOARk0hOY8qFrmP724JTSC3"
    "CvekCP7Wjje3RddOlL/xLiESL."
)
BCRYPT_BODY = "05$QRgzutwXBAZ1UjDETXv.l.WY3MWNwRL7urP53Nb6umCmvEaIpmVnW"

# (scheme, stored, password, source)
VECTORS = [
    ("des-crypt", "XmL3l4sJC9w3c", "pw-descrypt", "spec: userdbpw"),
    ("md5-crypt", "$1$7DkDryhd$ySF.5za85ah431.AA75hR0", "pw-md5crypt", "spec: userdbpw -md5 (8-char salt)"),
    ("md5-crypt", "$1$slxBr$IulutAXS7R1oZnF.UVK8i1", "tmda-secret", "spec: authpasswd (5-char salt)"),
    ("MD5", "{MD5}7wwRz2Z55xTqj7leD7BalQ==", "pw-md5", "spec: authpasswd MD5"),
    ("MD5RAW", "{MD5RAW}15ce82c133080ea226df1a2b57dd33f1", "pw-md5raw", "spec: authpasswd MD5RAW"),
    ("SHA", "{SHA}G5zynyVKZeHPqXetqic75L7ZkrM=", "pw-sha", "spec: authpasswd SHA"),
    ("SSHA", "{SSHA}CPSRZ6ny673dIlou9tK3vVa8RcplhZoT", "pw-ssha", "spec: authpasswd SSHA"),
    ("SHA256", "{SHA256}XpSNPkdXCZ8gKc79iTllJ+wzypDeibXtMlEzClQOmYQ=", "pw-sha256", "spec: authpasswd SHA256"),
    (
        "SHA512",
        "{SHA512}mBA1DNqGVIBF1MhgqQKHwFnXv/mlecLwdfkJQhthVsEqUucew8SQ9E6nNtpM1oLiQmhIZStJLhH0JxZuPwM8qw==",
        "pw-sha512",
        "spec: authpasswd SHA512",
    ),
    (
        "sha256-crypt",
        "$5$/e/Gvjj30gbVdYM3$wOLgWDfmeofcmCdVVnPC8PHpq7tlIz9K9G9JIhBG3QB",
        "pw-sha256crypt",
        "spec: mkpasswd",
    ),
    ("sha512-crypt", SHA512_SAMPLE, "pw-sha512crypt", "spec: mkpasswd"),
    ("bcrypt", "$2b$" + BCRYPT_BODY, "pw-bcrypt", "spec: mkpasswd -m bcrypt"),
    ("bcrypt", "$2y$" + BCRYPT_BODY, "pw-bcrypt", "spec: same body as $2y$ (authdaemond OK)"),
    ("bcrypt", "$2a$" + BCRYPT_BODY, "pw-bcrypt", "spec: same body as $2a$ (authdaemond OK)"),
    (
        "yescrypt",
        "$y$j9T$ZsSa3l4c/GzVRCP1vXW051$eyllYN6cvIaVd.nQwvmzQu2xOtUnfSOM1uiihLbVOe8",
        "pw-yescrypt",
        "spec: mkpasswd",
    ),
    ("sha512-crypt", "{CRYPT}" + SHA512_SAMPLE, "pw-sha512crypt", "spec: {CRYPT} + any crypt"),
    ("md5-crypt", "{crypt}$1$7DkDryhd$ySF.5za85ah431.AA75hR0", "pw-md5crypt", "spec: {crypt} lower case"),
    ("SHA", "{sha}wdcGI4iWE215FicOuFfkHoFCRWk=", "pw-lowerprefix", "spec: lower-case prefix"),
    ("crypt", "$3$$df2100c9c668e8a1fe1187d734f7448f", "pw-nt", "mkpasswd -m nt"),
    ("crypt", "$md5,rounds=38124$ps/lX/my$$czt6d0OqBai7sj7DD.xd2/", "pw-sunmd5", "mkpasswd -m sunmd5"),
    ("crypt", "_J9..BBBuXp6vbbjlazM", "pw-bsdicrypt", "mkpasswd -m bsdicrypt"),
    (
        "crypt",
        "$7$CU..../....vWSt0ncBhXYUyYTSMI7ZV1$IEBHfIGwo8oP8hQmsy7PkN0gQELOkctwC.ulKwLqYp2",
        "pw-scrypt",
        "mkpasswd -m scrypt",
    ),
    (
        "crypt",
        "$gy$j9T$mrC0eeyNn2Upw8CaoUbDl0$TZQfp/nhZtjepuN4JhyxEiIXTR.BxqHHnmk2aERJ7i5",
        "pw-gost-yescrypt",
        "mkpasswd -m gost-yescrypt",
    ),
]
VECTOR_IDS = [f"{v[0]}:{v[3]}" for v in VECTORS]


# ------------------------------------------------------------------ vector table


@pytest.mark.parametrize("scheme,stored,password,source", VECTORS, ids=VECTOR_IDS)
def test_vector_is_identified(scheme: str, stored: str, password: str, source: str) -> None:
    assert identify_scheme(stored) == scheme


@pytest.mark.parametrize("scheme,stored,password,source", VECTORS, ids=VECTOR_IDS)
def test_vector_verifies_with_right_password(scheme: str, stored: str, password: str, source: str) -> None:
    assert verify_password(password.encode(), stored) is True


@pytest.mark.parametrize("scheme,stored,password,source", VECTORS, ids=VECTOR_IDS)
def test_vector_fails_with_wrong_password(scheme: str, stored: str, password: str, source: str) -> None:
    # changed in the first byte, so that DES's 8-byte truncation cannot hide it
    assert verify_password(b"X" + password.encode()[1:], stored) is False
    assert verify_password(password.encode()[:-1], stored) is False or scheme == "des-crypt"
    assert verify_password(b"wrong", stored) is False


# ------------------------------------------------------------------ generated hashes


@pytest.mark.parametrize("scheme", SCHEMES)
def test_generated_hash_is_identified_and_verifies_again(scheme: str) -> None:
    stored = make_password_hash(b"generated-pw", scheme)
    assert identify_scheme(stored) == scheme
    assert verify_password(b"generated-pw", stored)
    assert not verify_password(b"Generated-pw", stored)


UNSALTED = ("MD5", "MD5RAW", "SHA", "SHA256", "SHA512")


@pytest.mark.parametrize("scheme", [s for s in SCHEMES if s not in UNSALTED])
def test_generated_hashes_use_fresh_salts(scheme: str) -> None:
    assert make_password_hash(b"same", scheme) != make_password_hash(b"same", scheme)


def test_default_scheme_is_sha512_crypt() -> None:
    assert make_password_hash(b"pw").startswith("$6$")


def test_scheme_names_are_matched_case_insensitively() -> None:
    assert make_password_hash(b"pw", "ssha").startswith("{SSHA}")
    assert make_password_hash(b"pw", "SHA512-CRYPT").startswith("$6$")


def test_unknown_scheme_is_value_error_listing_schemes() -> None:
    with pytest.raises(ValueError) as info:
        make_password_hash(b"pw", "argon2")
    for name in SCHEMES:
        assert name in str(info.value)


def test_empty_or_nul_password_is_refused_for_new_hashes() -> None:
    with pytest.raises(ValueError):
        make_password_hash(b"", "SHA")
    with pytest.raises(ValueError):
        make_password_hash(b"a\0b", "sha512-crypt")


def test_generated_ssha_has_courier_four_byte_salt() -> None:
    import binascii

    raw = binascii.a2b_base64(make_password_hash(b"pw", "SSHA")[len("{SSHA}") :])
    assert len(raw) == 24


def test_md5raw_is_generated_in_lowercase_hex() -> None:
    body = make_password_hash(b"pw", "MD5RAW")[len("{MD5RAW}") :]
    assert body == body.lower() and body == hashlib.md5(b"pw").hexdigest()


def test_rounds_set_the_crypt_cost() -> None:
    assert make_password_hash(b"pw", "bcrypt").startswith("$2b$10$")
    assert make_password_hash(b"pw", "bcrypt", rounds=4).startswith("$2b$04$")
    stored = make_password_hash(b"pw", "sha512-crypt", rounds=6000)
    assert stored.startswith("$6$rounds=6000$") and verify_password(b"pw", stored)
    with pytest.raises(ValueError):
        make_password_hash(b"pw", "SHA", rounds=5)
    with pytest.raises(ValueError):
        make_password_hash(b"pw", "bcrypt", rounds=99)


def test_des_crypt_uses_only_first_eight_bytes() -> None:
    # spec: descrypt accepted pw-descrZZZZ for pw-descrypt
    assert verify_password(b"pw-descrZZZZ", "XmL3l4sJC9w3c")
    stored = make_password_hash(b"12345678-tail", "des-crypt")
    assert verify_password(b"12345678", stored)


# ------------------------------------------------------------------ prefixes, refusals


@pytest.mark.parametrize(
    "stored,password",
    [
        ("{md5}7wwRz2Z55xTqj7leD7BalQ==", "pw-md5"),
        ("{Md5}7wwRz2Z55xTqj7leD7BalQ==", "pw-md5"),
        ("{md5raw}15ce82c133080ea226df1a2b57dd33f1", "pw-md5raw"),
        ("{Sha}G5zynyVKZeHPqXetqic75L7ZkrM=", "pw-sha"),
        ("{ssha}CPSRZ6ny673dIlou9tK3vVa8RcplhZoT", "pw-ssha"),
        ("{sha256}XpSNPkdXCZ8gKc79iTllJ+wzypDeibXtMlEzClQOmYQ=", "pw-sha256"),
        ("{CrYpT}XmL3l4sJC9w3c", "pw-descrypt"),
    ],
)
def test_prefixes_match_case_insensitively(stored: str, password: str) -> None:
    assert identify_scheme(stored) is not None
    assert verify_password(password.encode(), stored)


def test_base64_body_is_case_sensitive() -> None:
    assert not verify_password(b"pw-sha", "{SHA}G5zynyVKZeHPqXetqic75L7ZkrM=".lower())


def test_plain_text_never_matches() -> None:
    assert identify_scheme("pw-plain") is None
    assert not verify_password(b"pw-plain", "pw-plain")
    # 13 characters of the crypt alphabet look like DES; crypt(3) still never returns them
    assert not verify_password(b"abcdefghijklm", "abcdefghijklm")


def test_empty_stored_value_never_matches() -> None:
    assert identify_scheme("") is None
    assert not verify_password(b"anything", "")
    assert not verify_password(b"anything", "{CRYPT}")
    assert not verify_password(b"", "{SHA}")


def test_empty_password_never_matches() -> None:
    # the SHA-1 of the empty string, stored as Courier would
    empty_sha = "{SHA}2jmj7l5rSw0yVb/vlWAYkK/YBwk="
    assert digests.verify(b"", "SHA", empty_sha[5:])  # the handler itself would accept it
    assert not verify_password(b"", empty_sha)
    assert not verify_password(b"", "XmL3l4sJC9w3c")


def test_password_with_nul_never_matches() -> None:
    assert not verify_password(b"pw-descrypt\0junk", "XmL3l4sJC9w3c")
    assert not verify_password(b"pw-sha\0", "{SHA}G5zynyVKZeHPqXetqic75L7ZkrM=")


def test_unknown_brace_prefix_is_unverifiable() -> None:
    for stored in ("{PLAIN}secret", "{CLEARTEXT}secret", "{SSHA512}abcd", "{MD5", "{}x", "{\u017fha}x"):
        assert identify_scheme(stored) is None
        assert not verify_password(b"secret", stored)


def test_ssha_with_any_salt_length_is_accepted() -> None:
    # authkit improvement: Courier takes exactly 4 salt bytes
    import base64

    for salt in (b"s", b"12345678", b"0123456789abcdef", os.urandom(40)):
        stored = "{SSHA}" + base64.b64encode(hashlib.sha1(b"pw" + salt).digest() + salt).decode()
        assert verify_password(b"pw", stored)
        assert not verify_password(b"pX", stored)


def test_ssha_without_salt_or_with_bad_base64_never_matches() -> None:
    import base64

    no_salt = "{SSHA}" + base64.b64encode(hashlib.sha1(b"pw").digest()).decode()
    assert not verify_password(b"pw", no_salt)
    good = "{SSHA}CPSRZ6ny673dIlou9tK3vVa8RcplhZoT"
    assert not verify_password(b"pw-ssha", good[:-1])  # broken padding
    assert not verify_password(b"pw-ssha", good + "!")
    assert not verify_password(b"pw-ssha", "{SSHA}")


def test_md5raw_upper_case_hex_is_rejected_as_courier_does() -> None:
    assert not verify_password(b"pw-md5raw", "{MD5RAW}15CE82C133080EA226DF1A2B57DD33F1")
    assert verify_password(b"pw-md5raw", "{MD5RAW}15ce82c133080ea226df1a2b57dd33f1")


def test_crypt_failures_are_non_matches() -> None:
    for stored in ("*0", "*1", "!", "!!", "*", "$6$", "$6$salt", "$9$unknown$x", "$2b$99$" + "a" * 53, "a\0b"):
        assert not verify_password(b"pw", stored)
    assert identify_scheme("$9$unknown$x") is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40), st.text(max_size=60))
def test_verify_never_raises(password: bytes, stored: str) -> None:
    assert verify_password(password, stored) in (True, False)
    identify_scheme(stored)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=40), st.sampled_from(["{MD5}", "{MD5RAW}", "{SHA}", "{SSHA}", "{SHA256}", "{SHA512}", "{CRYPT}"]), st.text(max_size=60))
def test_verify_never_raises_for_prefixed_junk(password: bytes, prefix: str, body: str) -> None:
    assert verify_password(password, prefix + body) in (True, False)


# ------------------------------------------------------------------ non-UTF-8 and the shim


@pytest.mark.parametrize("scheme", SCHEMES)
def test_non_utf8_password_bytes_work(scheme: str) -> None:
    password = "été".encode("latin-1")  # b"\xe9t\xe9", not valid UTF-8
    stored = make_password_hash(password, scheme)
    assert verify_password(password, stored)
    assert not verify_password("été".encode("utf-8"), stored)


def test_latin1_password_matches_mkpasswd_output() -> None:
    # echo -n été | iconv -f utf-8 -t latin1 | mkpasswd -s -m sha512crypt
    stored = "$6$tfp5HCbUcDdjv2Km$2OCPIbdeb6GTyqVTtsRiIyJA1OKl7lpLFxvvNsBWxf5dYRV.AKXs9FTt/Ld1U8k99Y7KD5NxISbA6.INYzWNl1"
    assert verify_password("été".encode("latin-1"), stored)
    # echo -n été | mkpasswd -s -m sha512crypt (UTF-8 bytes)
    stored_utf8 = "$6$QpKji0wwGtx3tBJz$ioI.no3J.p7xcLzoICmA83dOeeaHLpsdlSt8wXgK6hXh/nNA6Doc59W9wLkJW6YGBfJkVOeuzMF5ejghlT9u.1"
    assert verify_password("été".encode("utf-8"), stored_utf8)
    assert not verify_password("été".encode("latin-1"), stored_utf8)


@pytest.mark.parametrize("setting", ["XmL3l4sJC9w3c", "$1$7DkDryhd$", SHA512_SAMPLE, "$2b$04$QRgzutwXBAZ1UjDETXv.l.", "$y$j9T$ZsSa3l4c/GzVRCP1vXW051$"])
def test_crypt_shim_paths_agree(setting: str) -> None:
    if cryptlib._c_crypt is None:
        pytest.skip("no _crypt/_crypt_r extension on this interpreter")
    for password in (b"pw", "Grüße".encode(), b"x" * 100):
        assert cryptlib.crypt(password, setting) == cryptlib.crypt_bytes(password, setting.encode())


def test_crypt_shim_returns_none_on_failure() -> None:
    assert cryptlib.crypt(b"pw", "*0") is None
    assert cryptlib.crypt_bytes(b"pw", b"{X}") is None
    assert cryptlib.crypt_bytes(b"p\0w", b"$1$abc$") is None
    assert cryptlib.crypt_gensalt("$nonsense$") is None


def test_crypt_gensalt_makes_settings_for_libxcrypt_methods() -> None:
    assert cryptlib.crypt_gensalt("$2b$", 5).startswith("$2b$05$")
    assert cryptlib.crypt_gensalt("$y$").startswith("$y$j9T$")
    assert cryptlib.crypt_gensalt("$6$").startswith("$6$")


# ------------------------------------------------------------------ libpass cross-check

try:
    import passlib.hash as passlib_hash
except ImportError:  # pragma: no cover - libpass is a test dependency
    passlib_hash = None

LIBPASS = [
    ("md5_crypt", {}),
    ("sha256_crypt", {"rounds": 5000}),
    ("sha512_crypt", {"rounds": 5000}),
    ("des_crypt", {}),
    ("bsdi_crypt", {}),
    ("ldap_md5", {}),
    ("ldap_sha1", {}),
    ("ldap_salted_sha1", {}),
    ("ldap_salted_sha1", {"salt_size": 8}),
    ("ldap_salted_sha1", {"salt_size": 16}),
    ("ldap_md5_crypt", {}),
    ("ldap_sha512_crypt", {"rounds": 5000}),
    ("bcrypt", {"rounds": 4}),
]


def _libpass_handler(name: str, options: dict):
    if passlib_hash is None:
        pytest.skip("libpass (import name passlib) is not installed")
    handler = getattr(passlib_hash, name)
    if name == "bcrypt" and not handler.has_backend():
        pytest.skip("libpass bcrypt needs the 'bcrypt' package, not installed")
    return handler.using(**options) if options else handler


@pytest.mark.parametrize("name,options", LIBPASS, ids=[f"{n}{o or ''}" for n, o in LIBPASS])
def test_libpass_hashes_verify_in_authkit(name: str, options: dict) -> None:
    handler = _libpass_handler(name, options)
    stored = handler.hash("libpass-pw")
    assert identify_scheme(stored) is not None
    assert verify_password(b"libpass-pw", stored)
    assert not verify_password(b"Libpass-pw", stored)


AUTHKIT_TO_LIBPASS = [
    ("md5-crypt", "md5_crypt"),
    ("sha256-crypt", "sha256_crypt"),
    ("sha512-crypt", "sha512_crypt"),
    ("des-crypt", "des_crypt"),
    ("bcrypt", "bcrypt"),
    ("MD5", "ldap_md5"),
    ("SHA", "ldap_sha1"),
    ("SSHA", "ldap_salted_sha1"),
]


@pytest.mark.parametrize("scheme,name", AUTHKIT_TO_LIBPASS)
def test_authkit_hashes_verify_in_libpass(scheme: str, name: str) -> None:
    handler = _libpass_handler(name, {})
    stored = make_password_hash(b"authkit-pw", scheme, rounds=4 if scheme == "bcrypt" else 0)
    assert handler.verify("authkit-pw", stored)
    assert not handler.verify("Authkit-pw", stored)


# ------------------------------------------------------------------ Courier HMAC states

HMAC_SAMPLES = [
    # spec section 3 and perf-baselines section 3: userdbpw -hmac-<alg> output
    ("md5", b"andrew-secret", "c932c8cb7d3e979c6f61c66c817c47021a66750faf7228629e231e101cfa6263"),
    ("md5", b"secret", "cd3ba7deaad6e5ca23448ba42e379747a9e0f7f1fbc00c8a81bbaac395731b56"),
    ("sha1", b"secret", "091e0f4c6cb5277ee2beb639a60d0831b5c8adcdaee172433df3e96ba4f00fb1b6a490c3929d2034"),
    (
        "sha256",
        b"secret",
        "5a84072aab37d22275b139adf7a92564c7f674be98e77d991f6f689d29e05245"
        "72804f31b042016804d3dea2f4e991a21b1c8906be161594b202fb74afc8ceb3",
    ),
    # echo kkk...k (65 k) | userdbpw -hmac-md5: the key is hashed first
    ("md5", b"k" * 65, "27b7a38df6efd1400c525816494f98a12e1df2505cdc138ece701b47ad0c2409"),
]


@pytest.mark.parametrize("algorithm,password,expected", HMAC_SAMPLES)
def test_hmac_state_reproduces_userdbpw(algorithm: str, password: bytes, expected: str) -> None:
    assert hmac_state(password, algorithm) == expected


CHALLENGES = [b"", b"<1896.697170952@postoffice.reston.mci.net>", b"x" * 55, b"x" * 56, b"y" * 64, b"z" * 200]
KEYS = [b"tanstaaftanstaaf", b"k" * 64, b"k" * 65, os.urandom(150).replace(b"\0", b"\1")]  # no NUL: refused


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "sha256"])
def test_cram_response_from_stdlib_hmac_verifies(algorithm: str) -> None:
    for key in KEYS:
        state = hmac_state(key, algorithm)
        for challenge in CHALLENGES:
            response = hmac.new(key, challenge, algorithm).hexdigest()
            assert verify_cram(state, algorithm, challenge, response)
            assert verify_cram(state, algorithm, challenge, response.upper())
            assert not verify_cram(state, algorithm, challenge + b".", response)
            assert not verify_cram(state, algorithm, challenge, response[:-1])


def test_cram_md5_rfc2195_example() -> None:
    # RFC 2195 section 2: user tim, secret tanstaaftanstaaf
    challenge = b"<1896.697170952@postoffice.reston.mci.net>"
    state = hmac_state(b"tanstaaftanstaaf", "md5")
    assert verify_cram(state, "md5", challenge, "b913a602c7eda7a495b4e6e7334d3890")


@pytest.mark.parametrize(
    "state",
    ["", "abc", "zz" * 32, "cd3ba7de" * 7 + " " * 8, "cd3ba7de" * 9, "é" * 64, None, b"cd" * 32],
)
def test_malformed_stored_state_is_false_not_exception(state) -> None:
    response = hmac.new(b"secret", b"c", "md5").hexdigest()
    assert verify_cram(state, "md5", b"c", response) is False


def test_stored_state_of_wrong_algorithm_length_is_false() -> None:
    sha1_state = hmac_state(b"secret", "sha1")
    assert not verify_cram(sha1_state, "md5", b"c", hmac.new(b"secret", b"c", "md5").hexdigest())


def test_malformed_response_is_false() -> None:
    state = hmac_state(b"secret", "md5")
    for response in ("", "zz", "é" * 32, None):
        assert verify_cram(state, "md5", b"c", response) is False


def test_unknown_hmac_algorithm_is_value_error() -> None:
    with pytest.raises(ValueError):
        hmac_state(b"secret", "sha512")
    with pytest.raises(ValueError):
        verify_cram("00" * 64, "sha512", b"c", "00")


def test_hmac_state_refuses_empty_password() -> None:
    with pytest.raises(ValueError):
        hmac_state(b"", "md5")


def _full_hash(compress, iv, order, data: bytes) -> bytes:
    padded = data + b"\x80" + b"\0" * ((55 - len(data)) % 64) + struct.pack(order + "Q", len(data) * 8)
    state = iv
    for i in range(0, len(padded), 64):
        state = compress(state, padded[i : i + 64])
    return struct.pack(f"{order}{len(state)}I", *state)


@pytest.mark.parametrize("length", [0, 1, 55, 56, 63, 64, 65, 119, 120, 300])
def test_compression_functions_match_hashlib(length: int) -> None:
    from authkit.schemes import hmacstate as h

    data = os.urandom(length)
    assert _full_hash(md5_compress, h._MD5_IV, "<", data) == hashlib.md5(data).digest()
    assert _full_hash(sha1_compress, h._SHA1_IV, ">", data) == hashlib.sha1(data).digest()
    assert _full_hash(sha256_compress, h._SHA256_IV, ">", data) == hashlib.sha256(data).digest()


# ------------------------------------------------------------------ lean imports

HEAVY = ["hashlib", "base64", "hmac", "typing", "dataclasses", "re", "ctypes", "logging", "random", "secrets", "inspect", "enum", "argparse", "passlib"]


@pytest.mark.parametrize(
    "stored,password",
    [
        (SHA512_SAMPLE, "pw-sha512crypt"),
        ("{SSHA}CPSRZ6ny673dIlou9tK3vVa8RcplhZoT", "pw-ssha"),
        ("{SHA512}mBA1DNqGVIBF1MhgqQKHwFnXv/mlecLwdfkJQhthVsEqUucew8SQ9E6nNtpM1oLiQmhIZStJLhH0JxZuPwM8qw==", "pw-sha512"),
    ],
)
def test_verify_path_imports_only_cheap_modules(stored: str, password: str) -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import authkit.schemes as s; "
        "assert s.verify_password(sys.argv[3].encode(), sys.argv[2]); print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, str(REPO), stored, password],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    assert [m for m in HEAVY if m in out] == []


def test_hmac_state_module_imports_only_cheap_modules() -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from authkit.schemes.hmacstate import verify_cram, hmac_state; "
        "verify_cram(hmac_state(b'x', 'md5'), 'md5', b'c', '00'); print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(REPO)], capture_output=True, text=True, check=True).stdout.split()
    assert [m for m in HEAVY if m in out] == []


# ------------------------------------------------------------------ OpenLDAP {SMD5}

def test_smd5_from_slappasswd_verifies() -> None:
    # `slappasswd -h '{SMD5}' -s pw` (OpenLDAP 2.5, Debian 12): 4-byte salt
    stored = "{SMD5}0syj5dTUR0UYYqto//uT5YwLDr8="
    assert identify_scheme(stored) == "SMD5"
    assert verify_password(b"pw", stored)
    assert verify_password(b"pw", "{smd5}" + stored[6:])
    assert not verify_password(b"pW", stored)
    assert not verify_password(b"pw", "{SMD5}" + stored[7:])


@pytest.mark.parametrize("salt", [b"s", b"salt", b"salt-of-16-bytes"])
def test_smd5_any_salt_length_and_no_salt_never(salt: bytes) -> None:
    import base64
    import hashlib

    stored = "{SMD5}" + base64.b64encode(hashlib.md5(b"pw" + salt).digest() + salt).decode()
    assert verify_password(b"pw", stored)
    assert not verify_password(b"px", stored)
    unsalted = "{SMD5}" + base64.b64encode(hashlib.md5(b"pw").digest()).decode()
    assert not verify_password(b"pw", unsalted)


def test_smd5_is_verified_but_never_made() -> None:
    assert "SMD5" not in SCHEMES
    with pytest.raises(ValueError):
        make_password_hash(b"pw", "SMD5")
