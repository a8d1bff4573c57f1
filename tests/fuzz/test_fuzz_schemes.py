"""Fuzzing the hash-format dispatcher (authkit.schemes).

Properties: ``verify_password`` returns a bool and never raises, whatever the
stored string and the password (prefixes, truncated hashes, non-ASCII, surrogate
escapes from non-UTF-8 files); ``identify_scheme`` returns None or a name from
the documented list; a fresh hash verifies its password and no other.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from _budget import Counter, run_fuzz
from authkit.schemes import SCHEMES, identify_scheme, make_password_hash, verify_password

_PREFIXES = ["{MD5}", "{md5}", "{MD5RAW}", "{SHA}", "{SSHA}", "{SHA256}", "{SHA512}", "{CRYPT}",
             "{crypt}", "{X}", "{", "}", "$1$", "$5$", "$6$", "$2a$", "$2b$", "$2y$", "$y$",
             "$2x$", "$3$", "$7$", "$gy$", "$md5", "$sha1$", "_", "", "{CRYPT}$6$"]
# Costs a stored hash may name are trusted (the admin wrote them); keep the fuzz
# away from bcrypt cost > 12 and explicit crypt rounds, which are slow by design.
_body = st.one_of(st.text(max_size=60), st.text("./0123456789ABCDEFabcdefxyz$=", max_size=60),
                  st.binary(max_size=40).map(lambda b: b.decode("utf-8", "surrogateescape")))
stored = st.builds(lambda p, b: p + b, st.sampled_from(_PREFIXES), _body).filter(
    lambda s: "rounds=" not in s and not any(s.find(f"$2{v}$") >= 0 and s[s.find(f"$2{v}$") + 4:s.find(f"$2{v}$") + 6] > "12"
                                             for v in "abxy"))
NAMES = set(SCHEMES) | {"crypt"}


def test_verify_password_never_raises_on_any_stored_value() -> None:
    count = Counter()

    @given(password=st.binary(max_size=40), value=stored)
    def target(password: bytes, value: str) -> None:
        count()
        result = verify_password(password, value)
        assert result is True or result is False
        if not password or b"\0" in password or not value:
            assert result is False
        scheme = identify_scheme(value)
        assert scheme is None or scheme in NAMES

    run_fuzz("schemes-verify_password", target, count)


def test_a_fresh_hash_verifies_its_password_only() -> None:
    count = Counter()

    @given(password=st.binary(min_size=1, max_size=40).filter(lambda b: b"\0" not in b),
           other=st.binary(min_size=1, max_size=40).filter(lambda b: b"\0" not in b),
           scheme=st.sampled_from(["MD5", "SHA", "SSHA", "SHA256", "SHA512", "md5-crypt", "sha512-crypt"]))
    def target(password: bytes, other: bytes, scheme: str) -> None:
        count()
        value = make_password_hash(password, scheme)
        assert identify_scheme(value) == scheme
        assert verify_password(password, value) is True
        if other != password:
            assert verify_password(other, value) is False

    run_fuzz("schemes-make-verify", target, count, scale=0.5)
