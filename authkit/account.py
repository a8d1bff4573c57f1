"""The account record: what Courier authlib calls ``struct authinfo``.

An :class:`Account` is what every account source returns, whatever it reads
(userdb text, the compiled ``userdb.dat`` pair, a running authdaemond).  It is a
value: frozen, comparable, safe to pass around.  Its ``repr`` never shows password
fields.

Courier's rules, copied here (courier-authlib.md sections 1 and 4):

* ``address`` is the login name exactly as it was looked up, not a stored field;
* ``fullname`` is ``gecos`` up to the first comma;
* ``maildir`` comes from the ``mail`` field, ``source_location`` from ``_``;
* the password for a service is ``<service>pw``, else ``systempw``; there is no
  fallback for a service whose own field is absent but which has no ``systempw``;
* the CRAM secret for a service and algorithm is ``<service>-hmac-<alg>pw``, else
  ``hmac-<alg>pw``; ``systempw`` is never a CRAM secret.
"""

from __future__ import annotations

_EMPTY: "Mapping[str, str]" = {}

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~9 ms to import; the per-login path must not pay it
    from typing import Mapping

#: The CRAM algorithms Courier knows, as they appear in field names and in
#: authdaemond's ``cram-<alg>`` authtypes.
CRAM_ALGORITHMS = ("md5", "sha1", "sha256")

_FIELDS = (
    "address", "uid", "gid", "home", "maildir", "quota", "fullname", "options",
    "shell", "source_location",
)


class Account:
    """One account as authlib reports it.  Immutable; equality and ``repr`` use the
    fields below except the two password ones (``repr`` never shows a secret).

    Fields:
        address: the login name as requested (authdaemond's ``ADDRESS``).
        uid, gid: numeric ids (``UID``/``GID``).
        home: home directory (``HOME``), never empty for a visible account.
        maildir: the ``mail`` field (``MAILDIR``), "" when absent.
        quota: the ``quota`` field (``QUOTA``), "" when absent.
        fullname: ``gecos`` up to its first comma (``NAME``), "" when absent.
        options: account options (``OPTIONS``), "" when absent.
        shell: the ``shell`` field, "" when absent (authdaemond never sends it).
        source_location: the userdb ``_`` field: the source file's path relative to
            the userdb root plus ``/`` ("" for a single-file userdb).
        passwords: every password field of the record (``systempw``, ``imappw``,
            ``hmac-md5pw``, ...) by field name.  Empty for sources that do not hand
            out their stored hashes (authdaemond gives only ``encrypted_password``).
        encrypted_password: the stored hash chosen for the service of the lookup
            (authdaemond's ``PASSWD``), "" when none.

    (A plain class with ``__slots__`` rather than a dataclass: ``dataclasses``
    costs 15 ms to import, more than the password hash itself.)
    """

    __slots__ = _FIELDS + ("passwords", "encrypted_password")

    address: str
    uid: int
    gid: int
    home: str
    maildir: str
    quota: str
    fullname: str
    options: str
    shell: str
    source_location: str
    passwords: "Mapping[str, str]"
    encrypted_password: str

    def __init__(
        self,
        address: str,
        uid: int,
        gid: int,
        home: str,
        maildir: str = "",
        quota: str = "",
        fullname: str = "",
        options: str = "",
        shell: str = "",
        source_location: str = "",
        passwords: "Mapping[str, str] | None" = None,
        encrypted_password: str = "",
    ) -> None:
        setter = object.__setattr__
        setter(self, "address", address)
        setter(self, "uid", uid)
        setter(self, "gid", gid)
        setter(self, "home", home)
        setter(self, "maildir", maildir)
        setter(self, "quota", quota)
        setter(self, "fullname", fullname)
        setter(self, "options", options)
        setter(self, "shell", shell)
        setter(self, "source_location", source_location)
        setter(self, "passwords", dict(passwords) if passwords else _EMPTY)
        setter(self, "encrypted_password", encrypted_password)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Account is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Account is immutable")

    def _key(self) -> tuple:
        return tuple(getattr(self, name) for name in _FIELDS)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() == other._key()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in _FIELDS)
        return f"Account({inner})"

    def replace(self, **changes: object) -> "Account":
        """A copy with some fields changed (like ``dataclasses.replace``)."""
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update(changes)
        return Account(**values)  # type: ignore[arg-type]

    def password_for(self, service: str) -> str | None:
        """The stored hash used to check a plain password for ``service``:
        ``<service>pw``, else ``systempw``, else None."""
        stored = self.passwords.get(service + "pw")
        if stored is None:
            stored = self.passwords.get("systempw")
        return stored

    def password_field_for(self, service: str) -> str | None:
        """The name of the field :meth:`password_for` reads, or None."""
        if service + "pw" in self.passwords:
            return service + "pw"
        if "systempw" in self.passwords:
            return "systempw"
        return None

    def hmac_secret_for(self, service: str, algorithm: str) -> str | None:
        """The stored HMAC state for a CRAM login: ``<service>-hmac-<alg>pw``,
        else ``hmac-<alg>pw``, else None."""
        stored = self.passwords.get(f"{service}-hmac-{algorithm}pw")
        if stored is None:
            stored = self.passwords.get(f"hmac-{algorithm}pw")
        return stored

    def option(self, key: str) -> str | None:
        """Courier's ``auth_getoption``: the value of ``key`` in ``options``
        ("" for a bare ``key``), None when absent."""
        for item in self.options.split(","):
            name, sep, value = item.partition("=")
            if name == key and item:
                return value if sep else ""
        return None


def fullname_from_gecos(gecos: str) -> str:
    """Courier's NAME: the gecos field up to its first comma."""
    return gecos.split(",", 1)[0]


def merge_options(options: str, defaults: str) -> str:
    """Courier's ``mergeoptions``: the record's options first, then each
    DEFAULTOPTIONS item whose key the record does not already have, in order."""
    present = {item.partition("=")[0] for item in options.split(",") if item}
    merged = [item for item in options.split(",") if item]
    for item in defaults.split(","):
        if item and item.partition("=")[0] not in present:
            merged.append(item)
            present.add(item.partition("=")[0])
    return ",".join(merged)


__all__ = ["Account", "CRAM_ALGORITHMS", "fullname_from_gecos", "merge_options"]
