"""LDAP search filters the way Courier's authldap builds them, escaped per RFC 4515.

Sans-I/O: strings in, strings out; no ldap3 here.

* :func:`escape_value` escapes an assertion value: ``*``, ``(``, ``)``, ``\\``,
  NUL and every byte outside printable ASCII become ``\\xx`` (two lower-case hex
  digits of the byte).  Courier escapes only ``*()\\``; escaping the rest too
  means a login name matches only itself whatever bytes it holds (a NUL no
  longer cuts the name short, a byte that is not UTF-8 cannot make the filter
  unparsable).  Names arrive as ``str``; bytes that were not UTF-8 are carried
  as surrogate escapes (``surrogateescape``) and come out as the original bytes.
* :func:`login_filter` is authldaplib's query: ``(&<LDAP_FILTER>(<LDAP_MAIL>=<name>))``,
  with ``@<LDAP_DOMAIN>`` appended to a name without ``@``, and no ``(&...)``
  wrapper when no filter is configured.
* :func:`enumerate_filter`: ``LDAP_ENUMERATE_FILTER``, else ``LDAP_FILTER``, else
  ``(<LDAP_MAIL>=*)``.
"""

from __future__ import annotations

_PLAIN = frozenset(range(0x20, 0x7F)) - {ord("*"), ord("("), ord(")"), ord("\\")}


def escape_value(value: str) -> str:
    """``value`` as an RFC 4515 assertion value that matches only ``value``."""
    raw = value.encode("utf-8", "surrogateescape")
    return "".join(chr(byte) if byte in _PLAIN else f"\\{byte:02x}" for byte in raw)


def _wrap(filter_text: str) -> str:
    """A configured filter with its outer parentheses (Courier's examples have
    them; a bare ``objectClass=x`` is accepted too)."""
    text = filter_text.strip()
    if text and not text.startswith("("):
        text = f"({text})"
    return text


def login_filter(mail_attribute: str, name: str, domain: str = "", extra: str = "") -> str:
    """The filter that finds the account of login ``name``.  ``domain``
    (``LDAP_DOMAIN``) is appended after ``@`` when ``name`` has no ``@``;
    ``extra`` (``LDAP_FILTER``) is and-ed in front, as Courier does."""
    value = name if not domain or "@" in name else f"{name}@{domain}"
    match = f"({mail_attribute}={escape_value(value)})"
    extra = _wrap(extra)
    return f"(&{extra}{match})" if extra else match


def enumerate_filter(mail_attribute: str, extra: str = "", enumerate_extra: str = "") -> str:
    """The filter of ENUMERATE: ``enumerate_extra``, else ``extra``, else every
    entry with the login attribute."""
    return _wrap(enumerate_extra) or _wrap(extra) or f"({mail_attribute}=*)"


__all__ = ["enumerate_filter", "escape_value", "login_filter"]
