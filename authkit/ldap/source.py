"""An LDAP directory with Courier's authldap schema as an account source.

:class:`LdapSource` answers the way Courier's authldap module (authldaplib)
does for the same authldaprc settings (``ldap_*`` keys of authkit.conf, see
docs/ldap.md), over ldap3:

* lookup: one subtree search under ``ldap_basedn`` with
  :func:`authkit.ldap.filters.login_filter`; exactly one entry is an account,
  none or several is ``UnknownUser``;
* authenticate: the clear password attribute if the entry has one, else the
  crypted one through :mod:`authkit.schemes`; with ``ldap_authbind`` a simple
  bind as the entry's DN instead (the directory checks the password);
* authenticate_cram: only against a clear password (as Courier), else
  ``BadPassword``;
* change_password: the old password checked as above, then the caller's
  ``check_account``, then one LDAP modify
  (replace) of the clear attribute (if the entry has one) and of the crypted
  attribute (if the entry has one) with a new ``hash_scheme`` hash (a crypt(3)
  hash is stored as ``{CRYPT}...``); bound as ``ldap_binddn``, or as the user
  under ``ldap_authbind``.  Courier re-hashes in the old scheme and falls back
  to ``{SSHA}``; authkit does not downgrade;
* enumerate: a paged subtree search (RFC 2696).

Connections: a small thread-safe pool per source (one for searches, bound as
``ldap_binddn`` or anonymous, one for user binds under ``ldap_authbind``); a
connection is used by one thread at a time and kept open between requests.  A
new connection tries the servers of ``ldap_uri`` in order.  When a request
fails on a connection (closed, reset, no answer within ``ldap_timeout``, server
busy or unavailable), the connection and the idle ones to the same server are
dropped and the request is tried again on a new connection, each server
failing at most once per request: that is the failover.  When no server
answers, ``TemporaryFailure`` (111), never a rejection.  A wrong ``ldap_binddn`` password or a malformed ``ldap_filter`` is
a ``TemporaryFailure`` as well (Courier rejects the login).

Only this package and the tests import ldap3; authkitd opens this source, the
per-login programs reach it through authkitd's socket.

Not here: LDAP_EMAILMAP (not implemented), SASL binds, a cache.  Under
``ldap_authbind`` an unknown user costs one search, a known one a search and a
bind: the two are not made to cost the same.
"""

from __future__ import annotations

import threading
from _operator import _compare_digest

from .._heavy import import_heavy
from ..errors import ConfigError

ldap3 = import_heavy("ldap3", kind="ldap", what="ldap3", debian="python3-ldap3", extra="ldap")
from ldap3.core import exceptions as ldap_errors

from ..account import CRAM_ALGORITHMS
from ..errors import AuthError, BadPassword, Misuse, PolicyRefused, TemporaryFailure, UnknownUser
from ..source import AccountSource
from .filters import enumerate_filter, login_filter
from .mapping import DirectoryLayout, lower_keys, resolve_global_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Iterator

    from ..account import Account

# Result codes (RFC 4511).
_SUCCESS, _SIZE_LIMIT, _NO_SUCH_OBJECT = 0, 4, 32
_INVALID_CREDENTIALS = 49
#: The server cannot serve now: another connection (server) may.
_RETRY_CODES = frozenset((51, 52, 80))  # busy, unavailable, other
#: The directory refuses the bind or change itself (a verdict, not an outage).
_REFUSAL_CODES = frozenset((19, 48, 50, 53))  # constraint, inappropriateAuth, access, unwilling

_DEREF = {"never": ldap3.DEREF_NEVER, "searching": ldap3.DEREF_SEARCH,
          "finding": ldap3.DEREF_BASE, "always": ldap3.DEREF_ALWAYS}

_PAGED_RESULTS = "1.2.840.113556.1.4.319"

# Verified when an account is unknown, so that it costs what a wrong password costs.
_DUMMY_HASH = (
    "$6$/XfRdOoB2XQcs.Z4$WzK5NOZnDSS12k.9rBnD2VEOV8bNW1IpC/AzyoaMiwev4LE8/"
    "ub6aoom4sWK6OLYKcXqf3ehwZazaJifjf46E."
)


class _Unusable(Exception):
    """This connection (or its server) cannot serve the request: try another."""


def split_uris(setting: str) -> "list[str]":
    """``LDAP_URI``'s list: URIs separated by commas and/or blanks."""
    return [uri for uri in setting.replace(",", " ").split() if uri]


class _Pool:
    """Idle connections of one kind, handed to one thread at a time."""

    def __init__(self, opener: "Callable[[frozenset[str]], ldap3.Connection]", size: int) -> None:
        self._opener = opener
        self._size = size
        self._idle: list[ldap3.Connection] = []
        self._lock = threading.Lock()

    def take(self, fresh: bool = False, skip: "frozenset[str]" = frozenset()) -> "ldap3.Connection":
        """An idle connection, or (``fresh``, or none idle) a new one to the
        first server of the list not in ``skip``."""
        if not fresh:
            with self._lock:
                if self._idle:
                    return self._idle.pop()
        return self._opener(skip)

    def give(self, conn: "ldap3.Connection") -> None:
        with self._lock:
            if len(self._idle) < self._size and not conn.closed:
                self._idle.append(conn)
                return
        _close(conn)

    def discard(self, conn: "ldap3.Connection") -> None:
        """Close ``conn`` and every idle connection to the same server."""
        uri = getattr(conn, "authkit_uri", None)
        with self._lock:
            dead = [c for c in self._idle if getattr(c, "authkit_uri", None) == uri]
            self._idle = [c for c in self._idle if c not in dead]
        for c in [conn, *dead]:
            _close(c)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            _close(conn)


def _close(conn: "ldap3.Connection") -> None:
    try:
        conn.unbind()
    except Exception:  # noqa: BLE001 - a dead connection may fail to say goodbye
        pass


class LdapSource(AccountSource):
    """Accounts in an LDAP directory (Courier's authldap semantics; module doc).

    ``page_size`` (class attribute, 500) is the RFC 2696 page of ENUMERATE.

    Arguments (authkit.conf key, Courier's authldaprc name):
        uris: servers in order (``ldap_uri``, LDAP_URI): ``ldap://host[:port]``
            or ``ldaps://host[:port]``.
        basedn: search base (``ldap_basedn``, LDAP_BASEDN).
        binddn, bindpw: the DN searches and password changes bind as; ""
            means anonymous (``ldap_binddn``/``ldap_bindpw``; Courier binds
            only with LDAP_INITBIND=1).
        timeout: seconds for a connect and for each answer (``ldap_timeout``).
        layout: the attribute mapping (:class:`DirectoryLayout`).
        domain: ``ldap_domain`` (LDAP_DOMAIN); filter, enumerate_filter:
            ``ldap_filter``, ``ldap_enumerate_filter``.
        authbind: verify passwords by binding as the user (``ldap_authbind``).
        starttls: StartTLS after connecting (``ldap_tls``, LDAP_TLS).
        cacert: CA certificates file for ldaps:// and StartTLS
            (``ldap_tls_cacert``; Courier: OpenLDAP's TLS_CACERT); "" means the
            system's.
        deref: alias dereferencing (``ldap_deref``): never, searching,
            finding, always.
        hash_scheme: the scheme of new hashes (``hash_scheme``).
        pool_size: idle connections kept per kind.

    Raises ``ConfigError`` for an empty URI list or base DN, an unknown deref
    value, a URI that is not ldap:// or ldaps://, or a timeout that is not
    positive.  Nothing is connected until the first request.
    """

    page_size = 500

    def __init__(self, uris: "list[str] | str", basedn: str, *, binddn: str = "",
                 bindpw: str = "", timeout: float = 5.0, layout: DirectoryLayout | None = None,
                 domain: str = "", filter: str = "", enumerate_filter: str = "",
                 authbind: bool = False, starttls: bool = False, cacert: str = "",
                 deref: str = "never", hash_scheme: str = "sha512-crypt",
                 pool_size: int = 4) -> None:
        self.uris = split_uris(uris) if isinstance(uris, str) else list(uris)
        if not self.uris:
            raise ConfigError("ldap_uri names no LDAP server")
        for uri in self.uris:
            if not uri.lower().startswith(("ldap://", "ldaps://")):
                raise ConfigError(f"ldap_uri: {uri!r} is not an ldap:// or ldaps:// URI")
        if not basedn:
            raise ConfigError("ldap_basedn must be set")
        if not float(timeout) > 0:
            raise ConfigError("ldap_timeout must be more than 0 seconds")
        if deref.lower() not in _DEREF:
            raise ConfigError(f"ldap_deref must be one of {', '.join(_DEREF)}")
        self.basedn = basedn
        self.binddn = binddn
        self._bindpw = bindpw
        self.timeout = float(timeout)
        # ldap3 sets SO_RCVTIMEO from an integer; time limits are whole seconds too
        self._whole_seconds = max(1, int(self.timeout + 0.999))
        self.layout = layout or DirectoryLayout()
        self.domain = domain
        self.filter = filter
        self.enumerate_filter_setting = enumerate_filter
        self.authbind = bool(authbind)
        self.starttls = bool(starttls)
        self.cacert = cacert
        self.deref = _DEREF[deref.lower()]
        self.hash_scheme = hash_scheme
        self._tls = None
        if self.starttls or any(u.lower().startswith("ldaps://") for u in self.uris):
            import ssl

            self._tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=cacert or None)
        self._search_pool = _Pool(lambda skip: self._connect(True, skip), pool_size)
        self._bind_pool = _Pool(lambda skip: self._connect(False, skip), pool_size)
        self.description = f"ldap {' '.join(self.uris)} {basedn}"

    @classmethod
    def from_settings(cls, settings: object) -> "LdapSource":
        """The source an authkit.conf describes (its ``ldap_*`` keys,
        ``default_options`` and ``hash_scheme``)."""
        get = lambda key: getattr(settings, key)  # noqa: E731
        layout = DirectoryLayout(
            mail=get("ldap_mail"), homedir=get("ldap_homedir"), maildir=get("ldap_maildir"),
            defaultdelivery=get("ldap_defaultdelivery"), fullname=get("ldap_fullname"),
            clearpw=get("ldap_clearpw"), cryptpw=get("ldap_cryptpw"), uid=get("ldap_uid"),
            gid=get("ldap_gid"), maildirquota=get("ldap_maildirquota"),
            auxoptions=get("ldap_auxoptions"), mailroot=get("ldap_mailroot"),
            glob_uid=resolve_global_id(get("ldap_glob_uid"), "uid"),
            glob_gid=resolve_global_id(get("ldap_glob_gid"), "gid"),
            default_options=get("default_options"))
        return cls(
            get("ldap_uri"), get("ldap_basedn"), binddn=get("ldap_binddn"),
            bindpw=get("ldap_bindpw"), timeout=get("ldap_timeout"), layout=layout,
            domain=get("ldap_domain"), filter=get("ldap_filter"),
            enumerate_filter=get("ldap_enumerate_filter"), authbind=bool(get("ldap_authbind")),
            starttls=bool(get("ldap_tls")), cacert=get("ldap_tls_cacert"),
            deref=get("ldap_deref"), hash_scheme=get("hash_scheme"),
            pool_size=get("ldap_connections"))

    # ---------------------------------------------------------- connections

    def _connect(self, as_binddn: bool, skip: "frozenset[str]" = frozenset()) -> "ldap3.Connection":
        """A new open connection to the first server of ``uris`` (not in
        ``skip``) that answers, StartTLS and the configured bind done.
        ``TemporaryFailure`` naming each server's problem when none does."""
        problems = []
        for uri in self.uris:
            if uri in skip:
                continue
            server = ldap3.Server(uri, get_info=ldap3.NONE, tls=self._tls,
                                  connect_timeout=self.timeout)
            conn = ldap3.Connection(server, auto_bind=ldap3.AUTO_BIND_NONE,
                                    receive_timeout=self._whole_seconds, raise_exceptions=False,
                                    check_names=False, auto_referrals=False)
            conn.authkit_uri = uri  # type: ignore[attr-defined]
            try:
                conn.open(read_server_info=False)
                if self.starttls and not conn.start_tls(read_server_info=False):
                    raise _Unusable(f"StartTLS refused: {conn.result.get('description')}")
                if as_binddn and self.binddn:
                    conn.user, conn.password = self.binddn, self._bindpw
                    conn.authentication = ldap3.SIMPLE
                    if not conn.bind(read_server_info=False):
                        raise _Unusable(f"bind as ldap_binddn failed: {conn.result.get('description')}")
                return conn
            except (ldap_errors.LDAPException, _Unusable, OSError) as exc:
                _close(conn)
                problems.append(f"{uri}: {_reason(exc)}")
        raise TemporaryFailure("ldap: no server usable: " + ("; ".join(problems) or "all failed"))

    def _run(self, pool: _Pool, operation: "Callable[[ldap3.Connection], object]") -> object:
        """``operation(conn)`` on a pooled connection; when the connection
        turns out unusable, again on a new one, each server failing at most
        once per request (a server dying while we connect to it is skipped
        next time)."""
        failed: set[str] = set()
        problems = []
        fresh = False
        while True:
            conn = pool.take(fresh, frozenset(failed))
            uri = getattr(conn, "authkit_uri", "?")
            try:
                result = operation(conn)
            except (ldap_errors.LDAPException, _Unusable, OSError) as exc:
                pool.discard(conn)
                problems.append(f"{uri}: {_reason(exc)}")
                if fresh:
                    failed.add(uri)
                if len(failed) >= len(self.uris):
                    raise TemporaryFailure("ldap: request failed: " + "; ".join(problems)) from None
                fresh = True
                continue
            except AuthError:  # a verdict or a config problem: the connection is fine
                pool.give(conn)
                raise
            except BaseException:
                pool.discard(conn)
                raise
            pool.give(conn)
            return result

    def close(self) -> None:
        self._search_pool.close()
        self._bind_pool.close()

    # ------------------------------------------------------------- searching

    def _search(self, conn: "ldap3.Connection", filter_text: str, attributes: "list[str]",
                size_limit: int = 0, **paging: object) -> "list[tuple[str, dict[str, list[bytes]]]]":
        try:
            conn.search(self.basedn, filter_text, search_scope=ldap3.SUBTREE,
                        dereference_aliases=self.deref, attributes=attributes,
                        size_limit=size_limit, time_limit=self._whole_seconds,
                        **paging)
        except ldap_errors.LDAPInvalidFilterError:
            raise ConfigError("ldap: ldap_filter or ldap_enumerate_filter is not a valid filter") from None
        code = conn.result.get("result") if conn.result else None
        if code in _RETRY_CODES or code is None:
            raise _Unusable(f"search: {conn.result.get('description') if conn.result else 'no result'}")
        if code == _NO_SUCH_OBJECT:
            return []
        if code not in (_SUCCESS, _SIZE_LIMIT):
            raise TemporaryFailure(f"ldap: search failed: {conn.result.get('description')}")
        return [(item["dn"], lower_keys(item["raw_attributes"]))
                for item in (conn.response or ()) if item.get("type") == "searchResEntry"]

    def _find(self, name: str, service: str) -> "tuple[str, dict[str, list[bytes]]]":
        """(dn, entry) of the one entry of login ``name``; ``UnknownUser`` if
        there are none or several, or if ``name`` is empty or holds a NUL (not
        asked: slapd's IA5 matching ignores what follows a NUL, so the escaped
        ``\\00`` would still find the name cut there)."""
        if not name or "\0" in name:
            raise UnknownUser("empty login name" if not name else "login name holds a NUL byte")
        query = login_filter(self.layout.mail, name, self.domain, self.filter)
        attributes = self.layout.lookup_attributes(service)
        found = self._run(self._search_pool, lambda c: self._search(c, query, attributes, 2))
        if len(found) != 1:  # type: ignore[arg-type]
            raise UnknownUser(f"no account {name!r} in {self.description}"
                              if not found else f"{name!r} matches several entries")
        return found[0]  # type: ignore[index]

    def lookup(self, name: str, service: str = "login") -> "Account":
        """The account of login ``name`` (``UnknownUser``, ``TemporaryFailure``)."""
        _dn, entry = self._find(name, service)
        return self.layout.account(entry, name, service)

    # ------------------------------------------------------------- passwords

    def _bind_as(self, conn: "ldap3.Connection", dn: str, password: bytes) -> None:
        """Simple bind on ``conn`` as ``dn``: returns, or raises ``BadPassword``
        (the directory refuses) or ``_Unusable`` (it cannot answer)."""
        conn.user, conn.password = dn, password
        conn.authentication = ldap3.SIMPLE
        if conn.bind(read_server_info=False):
            return
        code = conn.result.get("result") if conn.result else None
        if code == _INVALID_CREDENTIALS or code in _REFUSAL_CODES:
            raise BadPassword("the directory refused the bind")
        raise _Unusable(f"bind: {conn.result.get('description') if conn.result else 'no result'}")

    def _check_stored(self, entry: "dict[str, list[bytes]]", password: bytes) -> None:
        from ..schemes import verify_password

        clear = self.layout.clear_password(entry)
        if clear is not None:
            if not _compare_digest(clear.encode("utf-8", "surrogateescape"), password):
                raise BadPassword("password mismatch")
            return
        crypted = self.layout.crypt_password(entry)
        if crypted is None:
            verify_password(password, _DUMMY_HASH)
            raise BadPassword("no password stored for this account")
        if not verify_password(password, crypted):
            raise BadPassword("password mismatch")

    def authenticate(self, name: str, password: bytes, service: str = "login") -> "Account":
        """The account if ``password`` is right (module doc).  ``UnknownUser``,
        ``BadPassword`` (also empty or NUL-holding passwords), ``TemporaryFailure``
        (no server, or uid/gid 0)."""
        if not password or b"\0" in password:
            raise BadPassword("empty password" if not password else "password holds a NUL byte")
        try:
            dn, entry = self._find(name, service)
        except UnknownUser:
            if not self.authbind:
                from ..schemes import verify_password

                verify_password(password, _DUMMY_HASH)
            raise
        account = self.layout.account(entry, name, service)
        if self.authbind:
            self._run(self._bind_pool, lambda c: self._bind_as(c, dn, password))
        else:
            self._check_stored(entry, password)
        return account

    def authenticate_cram(self, challenge: bytes, name: str, response_hex: str,
                          algorithm: str, service: str = "login") -> "Account":
        """CRAM-<algorithm> against the entry's clear password, as Courier does;
        ``BadPassword`` when the entry has none."""
        if algorithm not in CRAM_ALGORITHMS:
            raise Misuse(f"unknown CRAM algorithm {algorithm!r} (md5, sha1, sha256)")
        from ..schemes.hmacstate import hmac_state, verify_cram

        _dn, entry = self._find(name, service)
        account = self.layout.account(entry, name, service)
        clear = self.layout.clear_password(entry)
        if clear is None:
            raise BadPassword("CRAM needs a clear password (ldap_clearpw) in the directory")
        state = hmac_state(clear.encode("utf-8", "surrogateescape"), algorithm)
        if not verify_cram(state, algorithm, challenge, response_hex):
            raise BadPassword("CRAM response mismatch")
        return account

    def _new_values(self, entry: "dict[str, list[bytes]]", new: bytes) -> "dict[str, str]":
        from ..schemes import make_password_hash

        values: dict[str, str] = {}
        if self.layout.clearpw and self.layout.clear_password(entry) is not None:
            try:
                values[self.layout.clearpw] = new.decode("utf-8")
            except UnicodeDecodeError:
                raise PolicyRefused("a clear password in the directory must be UTF-8") from None
        if self.layout.cryptpw and self.layout.crypt_password(entry) is not None:
            try:
                hashed = make_password_hash(new, self.hash_scheme)
            except ValueError as exc:
                raise PolicyRefused(str(exc)) from None
            values[self.layout.cryptpw] = hashed if hashed.startswith("{") else "{CRYPT}" + hashed
        if not values:
            raise PolicyRefused("the entry has no password attribute to change")
        return values

    def _modify(self, conn: "ldap3.Connection", dn: str, values: "dict[str, str]") -> None:
        changes = {attr: [(ldap3.MODIFY_REPLACE, [value])] for attr, value in values.items()}
        if conn.modify(dn, changes):
            return
        code = conn.result.get("result") if conn.result else None
        if code in _REFUSAL_CODES:
            raise PolicyRefused(f"the directory refused the change: {conn.result.get('description')}")
        if code in _RETRY_CODES or code is None:
            raise _Unusable(f"modify: {conn.result.get('description') if conn.result else 'no result'}")
        raise TemporaryFailure(f"ldap: password change failed: {conn.result.get('description')}")

    def change_password(self, name: str, old: bytes, new: bytes, service: str = "login",
                        *, check_account: "Callable[[Account], None] | None" = None) -> "Account":
        """Check ``old`` (module doc), then ``check_account(account)`` if given,
        then replace the password attributes the entry has (under
        ``ldap_authbind`` the check runs on the connection just bound as the
        user, before its modify).  ``UnknownUser``, ``BadPassword``, ``PolicyRefused`` (empty
        or unstorable new password, no password attribute, the directory's
        access control or password policy), ``TemporaryFailure``."""
        if not old or b"\0" in old:
            raise BadPassword("empty old password" if not old else "old password holds a NUL byte")
        if not new:
            raise PolicyRefused("empty new password")
        dn, entry = self._find(name, "authlib")  # Courier looks up as service "authlib"
        account = self.layout.account(entry, name, service)
        values = self._new_values(entry, new)
        if self.authbind:
            def bind_and_modify(conn: "ldap3.Connection") -> None:
                self._bind_as(conn, dn, old)
                if check_account is not None:
                    check_account(account)
                self._modify(conn, dn, values)

            self._run(self._bind_pool, bind_and_modify)
        else:
            self._check_stored(entry, old)
            if check_account is not None:
                check_account(account)
            self._run(self._search_pool, lambda c: self._modify(c, dn, values))
        crypted = values.get(self.layout.cryptpw, "")
        if not crypted:
            return account
        return account.replace(passwords={"systempw": crypted}, encrypted_password=crypted)

    # ------------------------------------------------------------- listing

    def enumerate(self) -> "Iterator[Account]":
        """Every account under the base (paged search, 500 entries a page),
        one per login value; entries without a home are skipped.  A failure
        before the first page is retried on a new connection; after it,
        ``TemporaryFailure`` follows what was yielded."""
        query = enumerate_filter(self.layout.mail, self.filter, self.enumerate_filter_setting)
        attributes = self.layout.enumerate_attributes()
        cookie = None
        conn = None
        pages = 0
        retried = False
        try:
            while True:
                if conn is None:
                    conn = self._search_pool.take(fresh=retried)
                try:
                    entries = self._search(conn, query, attributes, paged_size=self.page_size,
                                           paged_cookie=cookie)
                except (ldap_errors.LDAPException, _Unusable, OSError) as exc:
                    self._search_pool.discard(conn)
                    conn = None
                    if pages or retried:
                        raise TemporaryFailure(f"ldap: listing failed: {_reason(exc)}") from None
                    retried = True  # once more, on a new connection
                    continue
                pages += 1
                for _dn, entry in entries:
                    yield from self.layout.enumerated(entry)
                controls = (conn.result or {}).get("controls") or {}
                cookie = controls.get(_PAGED_RESULTS, {}).get("value", {}).get("cookie")
                if not cookie:
                    break
        except BaseException:
            if conn is not None:
                self._search_pool.discard(conn)
            raise
        self._search_pool.give(conn)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"LdapSource({self.uris!r}, {self.basedn!r})"


def _reason(exc: BaseException) -> str:
    """A one-line reason for a connection problem (never holds a password)."""
    text = str(exc) or exc.__class__.__name__
    return text.splitlines()[0][:200]


__all__ = ["LdapSource", "split_uris"]
