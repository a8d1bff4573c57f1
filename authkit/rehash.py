"""Upgrade a weak stored hash after a successful login (authkitd's
``rehash_on_login``).

Weak (:func:`is_weak`): DES crypt, BSDi ``_`` crypt, md5-crypt (``$1$``), the
unsalted ``{MD5}``, ``{MD5RAW}`` and ``{SHA}``; and a sha256-crypt,
sha512-crypt or bcrypt hash of the configured ``hash_scheme`` with fewer rounds
than that scheme gets now.  Not weak: ``{SSHA}``, ``{SHA256}``, ``{SHA512}``,
yescrypt, a strong hash of another scheme, plain text or anything unknown
(left alone: Courier may have a reason to keep it).

:func:`rehash_userdb` stores the new hash through the userdb's crash-safe edit
path (``authkit.userdb.edit.update_record``: locks, undo journal, text and
compiled pair), in the field the login used (``<service>pw`` else
``systempw``), after checking again under the lock that this field still holds
a weak hash of this password (a concurrent change wins).  HMAC fields are never
touched: they hold HMAC states, not hashes.  The caller (authkitd) runs it once
the login has succeeded and treats any exception as "not upgraded": a failed
upgrade never fails the login.
"""

from __future__ import annotations

from .schemes import identify_scheme, make_password_hash, verify_password

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .userdb.source import UserdbSource

#: Schemes weak whatever their parameters.
WEAK_SCHEMES = frozenset({"des-crypt", "md5-crypt", "MD5", "MD5RAW", "SHA"})


def _cost(stored: str) -> int | None:
    """The cost parameter of a sha-crypt (``rounds=``, default 5000) or bcrypt
    (``$2b$NN$``) hash; None for other forms."""
    body = stored[7:] if stored[:7].upper() == "{CRYPT}" else stored
    if body.startswith(("$5$", "$6$")):
        rest = body[3:]
        if rest.startswith("rounds="):
            digits = rest[7:].split("$", 1)[0]
            return int(digits) if digits.isdigit() else None
        return 5000
    if body[:4] in ("$2a$", "$2b$", "$2y$") and body[4:6].isdigit():
        return int(body[4:6])
    return None


def is_weak(stored: str, hash_scheme: str) -> bool:
    """True when ``stored`` should be replaced by a ``hash_scheme`` hash."""
    scheme = identify_scheme(stored)
    if scheme is None:
        return False
    if scheme in WEAK_SCHEMES or stored.startswith("_"):
        return True
    if scheme.lower() == hash_scheme.lower():
        have = _cost(stored)
        if have is None:
            return False
        want = _cost(make_password_hash(b"cost probe", hash_scheme))
        return want is not None and have < want
    return False


def rehash_userdb(source: "UserdbSource", name: str, password: bytes, service: str) -> bool:
    """Replace the weak hash ``password`` matched for ``service`` with a new
    ``source.hash_scheme`` hash.  True when something was written.  Raises what
    the edit path raises (``TemporaryFailure`` for a full disk...), having
    written nothing."""
    from .userdb.edit import update_record

    written = []

    def decide(values: "dict[str, str]") -> "list[tuple[str, str]]":
        field = service + "pw" if values.get(service + "pw") is not None else "systempw"
        stored = values.get(field)
        if not stored or not is_weak(stored, source.hash_scheme) or not verify_password(password, stored):
            return []
        written.append(field)
        return [(field, make_password_hash(password, source.hash_scheme))]

    update_record(source.path, name, check=decide)
    return bool(written)


__all__ = ["WEAK_SCHEMES", "is_weak", "rehash_userdb"]
