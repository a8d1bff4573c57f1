"""Courier userdb text format: parsing and editing, without I/O.

A userdb line is ``name<TAB>field=value|field=value...`` (makeuserdb's regex
``^([^\\t]*)\\t(.*)``: only the first TAB splits).  Lines that are empty or start with
``#`` are ignored.  There is no escaping: a value runs to the next ``|``, may hold
``=``, and a field without ``=`` has the value "".  When a record repeats a field
name, the first one wins (``userdb_get``).  A record lacking ``home``, ``uid`` or
``gid`` is invisible to authlib.

Everything here works on ``bytes`` lines as they are in the file; names and values
are decoded to ``str`` with ``surrogateescape`` so that any byte survives a round
trip.  Editing (:func:`edit_fields`) keeps every other field byte for byte and in
its place, unlike Courier's ``userdb`` script, which reorders a record on every
``set``.

The record rules live here once, for every reader and writer: the line split
(:func:`split_line`; makeuserdb's hot loop inlines it and a test pins the two
together), the account-name rule (:func:`is_account_name`), the forbidden
characters (:data:`FORBIDDEN_IN_VALUES` and the two derived sets), the check of
a record's values (:func:`record_problem`, for lookups and ``authkit check``)
and the split into compiled values (:func:`split_compiled_bytes`).

This module does no I/O and imports nothing but :mod:`authkit.account`.
"""

from __future__ import annotations

from ..account import Account, fullname_from_gecos

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable, Mapping, Sequence

ENCODING = "utf-8"
ERRORS = "surrogateescape"


class MalformedLine(ValueError):
    """A line that is neither a comment, blank, nor ``name<TAB>fields``.  The
    message says what is wrong; it never quotes field values (they may be hashes)."""


def decode(raw: bytes) -> str:
    """Bytes from a userdb file as ``str`` (lossless)."""
    return raw.decode(ENCODING, ERRORS)


def encode(text: str) -> bytes:
    """The inverse of :func:`decode`."""
    return text.encode(ENCODING, ERRORS)


def split_line(line: bytes) -> tuple[bytes, bytes] | None:
    """``(name, fields)`` of one line (without its ``\\n``), or None for a blank
    line or a comment.  Raises :class:`MalformedLine` for a line without a TAB or
    with an empty name (Courier's makeuserdb stores the former as a bogus record
    and skips the latter)."""
    if not line or line[:1] == b"#":
        return None
    name, tab, rest = line.partition(b"\t")
    if not tab:
        if not line.strip():
            return None
        raise MalformedLine("no TAB between the name and the fields")
    if not name:
        raise MalformedLine("empty account name")
    return name, rest


def parse_fields(fields: str) -> list[tuple[str, str]]:
    """The ``(name, value)`` pairs of a record in file order (duplicates kept)."""
    pairs = []
    for item in fields.split("|"):
        if item:
            key, _, value = item.partition("=")
            pairs.append((key, value))
    return pairs


def first_values(pairs: "Iterable[tuple[str, str]]") -> dict[str, str]:
    """Field name -> value, the first occurrence of a name winning."""
    values: dict[str, str] = {}
    for key, value in pairs:
        if key not in values:
            values[key] = value
    return values


def is_password_field(raw_field: str) -> bool:
    """makeuserdb's rule ``^[^=]*pw=``: the field's name ends in ``pw`` and it has
    a ``=``.  Such fields go to ``userdbshadow.dat`` and never to ``userdb.dat``."""
    key, sep, _ = raw_field.partition("=")
    return bool(sep) and key.endswith("pw")


def split_compiled_bytes(fields: bytes, location: bytes) -> tuple[bytes, bytes | None]:
    """The ``userdb.dat`` and ``userdbshadow.dat`` values Courier's makeuserdb
    stores for a record's field text: the non-password fields plus
    ``_=<location>``, and the password fields (None when there are none: then no
    shadow record is written).  Perl ``split(/\\|/)`` semantics, as makeuserdb's:
    inner empty fields are kept, trailing empty fields dropped.  The one
    implementation of this rule: the compiler, the editor and the text reader all
    call it."""
    items = fields.split(b"|")
    while items and not items[-1]:
        items.pop()
    main = []
    shadow = []
    for item in items:
        if b"pw=" in item:  # cheap pre-test; the exact rule (is_password_field) follows
            eq = item.find(b"=")
            if item.endswith(b"pw", 0, eq):
                shadow.append(item)
                continue
        main.append(item)
    main.append(b"_=" + location)
    return b"|".join(main), (b"|".join(shadow) if shadow else None)


def split_compiled(fields: str, location: str) -> tuple[str, str | None]:
    """:func:`split_compiled_bytes` for decoded text."""
    main, shadow = split_compiled_bytes(encode(fields), encode(location))
    return decode(main), (None if shadow is None else decode(shadow))


class InvalidRecord(ValueError):
    """A record Courier would not show: lacking home, uid or gid, or with a uid or
    gid that is not a number."""


def _is_id(value: str) -> bool:
    # ASCII digits only, at most 10 of them: more is no 32-bit id (and int()
    # refuses over 4300 digits); Courier's atol would read garbage as 0, i.e. root
    return value.isdigit() and value.isascii() and len(value) <= 10


#: What :func:`record_problem` answers.
LACKS_FIELDS = "lacks home, uid or gid"
BAD_ID = "has a uid or gid that is not a number"


def record_problem(values: "Mapping[str, str]") -> str | None:
    """Why the record with these field values (from :func:`first_values`) is
    refused, or None when it is usable: :data:`LACKS_FIELDS` or :data:`BAD_ID`.  The one check of a record's values:
    lookups (:func:`make_account`, text or compiled) and ``authkit check``
    (authkit.userdb.compile.check_text) both call it, so check reports exactly
    the records every lookup refuses."""
    home = values.get("home")
    uid = values.get("uid")
    gid = values.get("gid")
    if not home or uid is None or gid is None:
        return LACKS_FIELDS
    if not (_is_id(uid) and _is_id(gid)):
        return BAD_ID
    return None


def make_account(
    address: str,
    values: dict[str, str],
    passwords: dict[str, str] | None = None,
    service: str = "login",
    default_options: str = "",
) -> Account:
    """The :class:`Account` of a parsed record (``values`` from :func:`first_values`;
    for a compiled userdb, ``passwords`` from the shadow record).

    Raises :class:`InvalidRecord` when :func:`record_problem` refuses the record
    (home, uid or gid missing, uid/gid not a decimal number of at most 10 digits:
    Courier's ``atol`` would read garbage as 0, i.e. root; authkit refuses such
    records instead)."""
    problem = record_problem(values)
    if problem is not None:
        raise InvalidRecord("record " + problem)
    home = values["home"]
    uid = values["uid"]
    gid = values["gid"]
    if passwords is None:
        passwords = {k: v for k, v in values.items() if k.endswith("pw")}
    options = values.get("options", "")
    if default_options:
        from ..account import merge_options

        options = merge_options(options, default_options)
    account = Account(
        address=address,
        uid=int(uid),
        gid=int(gid),
        home=home,
        maildir=values.get("mail", ""),
        quota=values.get("quota", ""),
        fullname=fullname_from_gecos(values.get("gecos", "")),
        options=options,
        shell=values.get("shell", ""),
        source_location=values.get("_", ""),
        passwords=passwords,
    )
    chosen = account.password_for(service)
    if chosen:
        object.__setattr__(account, "encrypted_password", chosen)
    return account


#: The one set of forbidden characters.  A value cannot hold ``|`` (it ends the
#: field), a line end (LF, CR: it would end or corrupt the line) or NUL (C
#: strings: Courier's readers stop there).
FORBIDDEN_IN_VALUES = frozenset("|\n\r\0")
#: A field name cannot hold those, nor ``=`` (it ends the name) or TAB.
FORBIDDEN_IN_NAMES = FORBIDDEN_IN_VALUES | frozenset("=\t")
#: An account name ends at its TAB and may hold ``|`` and ``=``; not TAB or a
#: line end or NUL.
FORBIDDEN_IN_ACCOUNT_NAMES = frozenset("\t\n\r\0")


def is_account_name(name: str) -> bool:
    """The one account-name rule, for lookups, ``show`` and every edit: not
    empty, not starting with ``#`` (such a line is a comment: a commented-out
    record is no account, as for Courier's makeuserdb), and none of
    :data:`FORBIDDEN_IN_ACCOUNT_NAMES`."""
    return bool(name) and name[0] != "#" and not FORBIDDEN_IN_ACCOUNT_NAMES.intersection(name)


def check_value(value: str) -> None:
    """Raise ValueError for a field value the text format cannot hold (``|``,
    newline, CR, NUL), as Courier's ``userdb`` script refuses them."""
    if FORBIDDEN_IN_VALUES.intersection(value):
        raise ValueError("Invalid value: '|', newlines and NUL are not allowed")


def check_field_name(name: str) -> None:
    """Raise ValueError for a field name the text format cannot hold."""
    if not name or FORBIDDEN_IN_NAMES.intersection(name):
        raise ValueError("Invalid field name")


def edit_fields(
    fields: str, set_values: "Sequence[tuple[str, str]]" = (), unset: "Iterable[str]" = ()
) -> str:
    """A record's field text with some fields changed, everything else kept byte
    for byte: a set field keeps its position (its first occurrence; later
    duplicates of it are dropped so that the new value is the one read), a new field
    is appended, an unset field is removed (all its occurrences).

    Raises ValueError if a name or value cannot be stored (see :func:`check_value`)."""
    wanted = dict(set_values)
    for key, value in set_values:
        check_field_name(key)
        check_value(value)
    removed = set(unset)
    out: list[str] = []
    done: set[str] = set()
    for item in fields.split("|"):
        if not item:
            continue
        key = item.partition("=")[0]
        if key in removed:
            continue
        if key in wanted:
            if key in done:
                continue
            out.append(f"{key}={wanted[key]}")
            done.add(key)
        else:
            out.append(item)
    for key, _ in set_values:
        if key not in done:
            out.append(f"{key}={wanted[key]}")  # the last value given for a field wins
            done.add(key)
    return "|".join(out)


def format_line(name: str, fields: str) -> bytes:
    """One userdb line, with its newline."""
    return encode(name) + b"\t" + encode(fields) + b"\n"


__all__ = [
    "MalformedLine",
    "InvalidRecord",
    "record_problem",
    "is_account_name",
    "split_line",
    "parse_fields",
    "first_values",
    "is_password_field",
    "split_compiled",
    "split_compiled_bytes",
    "make_account",
    "edit_fields",
    "format_line",
    "check_value",
    "check_field_name",
    "decode",
    "encode",
]
