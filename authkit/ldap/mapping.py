"""From a directory entry to an :class:`~authkit.account.Account`, the way
Courier's authldaplib maps one.  Sans-I/O: no ldap3 here.

:class:`DirectoryLayout` holds which attribute means what (Courier's ``LDAP_*``
attribute keys) plus ``LDAP_MAILROOT``, ``LDAP_GLOB_UID``/``LDAP_GLOB_GID`` and
``LDAP_AUXOPTIONS``.  An entry is given as ``{attribute name: [raw values]}``
(any case of name, values as bytes); where an attribute has several values the
first counts, as in Courier.

Courier's rules, kept:

* uid/gid: the ``LDAP_UID``/``LDAP_GID`` attribute when set and present (its
  leading digits), else the global id; a resulting uid or gid of 0 is refused
  (Courier: a temporary error, not a rejection);
* home: ``LDAP_MAILROOT + "/" + home`` when both are set;
* maildir: the ``LDAP_DEFAULTDELIVERY`` attribute for service ``courier``, else
  ``LDAP_MAILDIR``;
* options: ``name=value`` for each ``attribute=name`` pair of ``LDAP_AUXOPTIONS``
  whose attribute is present and not empty, in the configured order, then
  authdaemond's DEFAULTOPTIONS merged in;
* fullname: the ``LDAP_FULLNAME`` value up to its first comma (authdaemond's NAME);
* the clear password (``LDAP_CLEARPW``) wins over the crypted one
  (``LDAP_CRYPTPW``) when both are present.

Where authkit differs: an entry without a home directory is no account
(``UnknownUser``; Courier would answer with an empty HOME); ENUMERATE applies
``LDAP_MAILROOT`` too (Courier lists the relative home).
"""

from __future__ import annotations

from ..account import Account, fullname_from_gecos, merge_options
from ..errors import ConfigError, TemporaryFailure, UnknownUser

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterator, Mapping, Sequence

    Entry = Mapping[str, Sequence[bytes]]


def text(value: bytes) -> str:
    """A raw attribute value as text (UTF-8; other bytes kept as surrogates)."""
    return value.decode("utf-8", "surrogateescape")


def parse_auxoptions(setting: str) -> "list[tuple[str, str]]":
    """``LDAP_AUXOPTIONS`` (``attribute=name,...``) as ``[(attribute, name)]``.
    A pair without ``=`` has an empty option name, as in Courier."""
    pairs = []
    for item in setting.split(","):
        item = item.strip()
        if item:
            attribute, _, name = item.partition("=")
            pairs.append((attribute.strip(), name.strip()))
    return pairs


def resolve_global_id(setting: str, kind: str) -> int:
    """``LDAP_GLOB_UID``/``LDAP_GLOB_GID``: a number, or a user (group) name
    looked up in the system's database; 0 when unset.  ``ConfigError`` for an
    unknown name."""
    setting = setting.strip()
    if not setting:
        return 0
    if setting.isdigit():
        return int(setting)
    try:
        if kind == "uid":
            import pwd

            return pwd.getpwnam(setting).pw_uid
        import grp

        return grp.getgrnam(setting).gr_gid
    except KeyError:
        raise ConfigError(f"ldap_glob_{kind}: no such {'user' if kind == 'uid' else 'group'} {setting!r}") from None


def _leading_number(value: str) -> "int | None":
    digits = ""
    for char in value.strip():
        if not char.isdigit():
            break
        digits += char
    return int(digits) if digits else None


class DirectoryLayout:
    """Which attributes hold what, and the rules around them (see module doc).
    Attribute names are matched case-insensitively; "" means "not used"."""

    def __init__(self, *, mail: str = "mail", homedir: str = "homeDirectory",
                 maildir: str = "mailbox", defaultdelivery: str = "defaultDelivery",
                 fullname: str = "cn", clearpw: str = "", cryptpw: str = "userPassword",
                 uid: str = "", gid: str = "", maildirquota: str = "", auxoptions: str = "",
                 mailroot: str = "", glob_uid: int = 0, glob_gid: int = 0,
                 default_options: str = "") -> None:
        if not mail:
            raise ConfigError("ldap_mail (the login attribute) must not be empty")
        if not homedir:
            raise ConfigError("ldap_homedir must not be empty")
        self.mail = mail
        self.homedir = homedir
        self.maildir = maildir
        self.defaultdelivery = defaultdelivery
        self.fullname = fullname
        self.clearpw = clearpw
        self.cryptpw = cryptpw
        self.uid = uid
        self.gid = gid
        self.maildirquota = maildirquota
        self.auxoptions = parse_auxoptions(auxoptions)
        self.mailroot = mailroot
        self.glob_uid = glob_uid
        self.glob_gid = glob_gid
        self.default_options = default_options

    def _maildir_attribute(self, service: str) -> str:
        return self.defaultdelivery if service == "courier" else self.maildir

    def lookup_attributes(self, service: str) -> "list[str]":
        """The attributes a login search asks for (no duplicates, no empties)."""
        names = [self.homedir, self._maildir_attribute(service), self.fullname, self.clearpw,
                 self.cryptpw, self.uid, self.gid, self.maildirquota]
        names += [attribute for attribute, _ in self.auxoptions]
        return _unique(names)

    def enumerate_attributes(self) -> "list[str]":
        """The attributes an ENUMERATE search asks for."""
        names = [self.mail, self.uid, self.gid, self.homedir, self.maildir]
        names += [attribute for attribute, _ in self.auxoptions]
        return _unique(names)

    # ------------------------------------------------------------- reading

    @staticmethod
    def first(entry: "Entry", attribute: str) -> str:
        """The first value of ``attribute`` in ``entry`` as text, "" if absent."""
        if not attribute:
            return ""
        values = entry.get(attribute.lower())
        return text(values[0]) if values else ""

    def _ids(self, entry: "Entry") -> "tuple[int, int]":
        uid = _leading_number(self.first(entry, self.uid)) if self.uid else None
        gid = _leading_number(self.first(entry, self.gid)) if self.gid else None
        return (self.glob_uid if uid is None else uid), (self.glob_gid if gid is None else gid)

    def _home(self, entry: "Entry") -> str:
        home = self.first(entry, self.homedir)
        if home and self.mailroot:
            home = f"{self.mailroot}/{home}"
        return home

    def _options(self, entry: "Entry") -> str:
        items = []
        for attribute, name in self.auxoptions:
            value = self.first(entry, attribute)
            if value:
                items.append(f"{name}={value}")
        return merge_options(",".join(items), self.default_options)

    def clear_password(self, entry: "Entry") -> "str | None":
        """The clear-text password of the entry, or None (not configured or absent)."""
        return self.first(entry, self.clearpw) or None

    def crypt_password(self, entry: "Entry") -> "str | None":
        """The stored hash of the entry, or None."""
        return self.first(entry, self.cryptpw) or None

    def account(self, entry: "Entry", address: str, service: str) -> Account:
        """The account of a found entry, for login name ``address``.  Raises
        ``UnknownUser`` (no home directory) or ``TemporaryFailure`` (uid or gid 0,
        Courier's "zero uid or gid not permitted")."""
        home = self._home(entry)
        if not home:
            raise UnknownUser(f"directory entry of {address!r} has no {self.homedir}")
        uid, gid = self._ids(entry)
        if uid == 0 or gid == 0:
            raise TemporaryFailure(
                f"ldap: refusing {address!r}: uid={uid}, gid={gid} (set ldap_uid/ldap_gid "
                "attributes or ldap_glob_uid/ldap_glob_gid; zero is not permitted)")
        crypt = self.crypt_password(entry)
        return Account(
            address=address, uid=uid, gid=gid, home=home,
            maildir=self.first(entry, self._maildir_attribute(service)),
            quota=self.first(entry, self.maildirquota),
            fullname=fullname_from_gecos(self.first(entry, self.fullname)),
            options=self._options(entry),
            passwords={"systempw": crypt} if crypt else None,
            encrypted_password=crypt or "",
        )

    def enumerated(self, entry: "Entry") -> "Iterator[Account]":
        """One account per login value of an ENUMERATE entry (none when it has
        no home directory, or uid or gid 0), as Courier's authenumerate lists them."""
        home = self._home(entry)
        names = entry.get(self.mail.lower()) or ()
        uid, gid = self._ids(entry)
        if not home or uid == 0 or gid == 0:
            return
        maildir = self.first(entry, self.maildir)
        options = self._options(entry)
        for name in names:
            yield Account(address=text(name), uid=uid, gid=gid, home=home, maildir=maildir,
                          options=options)


def _unique(names: "list[str]") -> "list[str]":
    seen: set[str] = set()
    out = []
    for name in names:
        if name and name.lower() not in seen:
            seen.add(name.lower())
            out.append(name)
    return out


def lower_keys(attributes: "Mapping[str, Sequence[bytes]]") -> "dict[str, list[bytes]]":
    """An entry's attributes keyed by lower-case name (LDAP names are
    case-insensitive; servers answer in the schema's case)."""
    out: dict[str, list[bytes]] = {}
    for name, values in attributes.items():
        out.setdefault(name.lower(), []).extend(values)
    return out


__all__ = ["DirectoryLayout", "lower_keys", "parse_auxoptions", "resolve_global_id", "text"]
