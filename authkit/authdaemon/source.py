"""A running Courier authdaemond as an :class:`~authkit.source.AccountSource`.

Every method is one request on a new connection to the daemon's unix socket
(spec courier-authlib.md section 4):

* :meth:`lookup`: ``PRE . <service> <name>``; ``FAIL`` -> ``UnknownUser``;
* :meth:`authenticate`: ``AUTH`` ``login``; ``FAIL`` -> ``BadPassword`` (the daemon
  does not tell an unknown user from a wrong password);
* :meth:`authenticate_cram`: ``AUTH`` ``cram-md5|cram-sha1|cram-sha256``;
* :meth:`change_password`: ``PASSWD``, then ``PRE`` for the account returned
  (with ``check_account``, a ``PRE`` before it too);
* :meth:`enumerate`: ``ENUMERATE``, streamed.

A reply of zero bytes, a dropped connection, a malformed or oversized reply, a
timeout or a missing socket is a ``TemporaryFailure`` (exit 111), never a
rejection.  ``DEFDOMAIN`` is applied to logins and CRAM names the way Courier's
client library does, never to lookups or password changes.  What it is not: a
connection pool (the daemon closes after each reply) or a cache.
"""

from __future__ import annotations

from os import environ, stat

from ..errors import BadPassword, ConfigError, Rejected, TemporaryFailure, UnknownUser
from ..source import AccountSource
from . import client, protocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Iterator

    from ..account import Account


#: Where Courier's authdaemond puts its socket (``<authdaemonvar>/socket``, a
#: compile-time path), most likely first.  Used only when nothing is configured.
DEFAULT_SOCKET_PATHS = (
    "/run/courier/authdaemon/socket",           # Debian >= 9, Ubuntu (Debian 12 binaries)
    "/var/run/courier/authdaemon/socket",       # older Debian/Ubuntu
    "/var/spool/authdaemon/socket",             # Fedora/RHEL/CentOS, upstream RPM spec
    "/run/courier-authlib/socket",              # openSUSE (systemd)
    "/var/run/courier-authlib/socket",          # openSUSE (sysvinit)
    "/var/lib/courier/authdaemon/socket",       # Gentoo
    "/run/authdaemon/socket",                   # Arch Linux (AUR)
    "/var/run/authdaemond/socket",              # FreeBSD ports
    "/usr/local/var/spool/authdaemon/socket",   # upstream default, --prefix=/usr/local
    "/usr/local/courier-authlib/var/spool/authdaemon/socket",  # --prefix=/usr/local/courier-authlib
)


def find_socket(paths: "tuple[str, ...] | list[str]" = DEFAULT_SOCKET_PATHS) -> "str | None":
    """The first of ``paths`` that is a socket, or whose directory this process
    may not search (Debian's is 0750 courier:courier: connecting will then say
    "permission denied" and name it); None when none exists."""
    for path in paths:
        try:
            mode = stat(path).st_mode
        except PermissionError:
            return path
        except (OSError, ValueError):
            continue
        if mode & 0o170000 == 0o140000:  # S_IFSOCK
            return path
    return None


def _getpwnam(name: str) -> "tuple[int, int] | None":
    """(uid, gid) of system account ``name``, or None.  ``pwd`` is imported only
    here: only non-userdb modules (authpam...) send ``USERNAME``."""
    import pwd

    try:
        entry = pwd.getpwnam(name)
    except (KeyError, ValueError):
        return None
    return entry.pw_uid, entry.pw_gid


def _timeout(name: str, value: float) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"authdaemond {name} must be a number of seconds") from None
    if not seconds > 0:
        raise ConfigError(f"authdaemond {name} must be more than 0 seconds")
    return seconds


class AuthdaemonSource(AccountSource):
    """Accounts from Courier's authdaemond at ``socket_path``.

    Arguments:
        socket_path: the daemon's unix socket (Courier's default is
            ``/run/courier/authdaemon/socket``).
        connect_timeout, write_timeout: seconds for the connect and for each
            write (Courier: 10, 10).
        read_timeout: seconds for the whole reply to PRE/AUTH/PASSWD (Courier: 30).
        enumerate_timeout: seconds for each read of an ENUMERATE reply
            (Courier: 60).
        defdomain: Courier's ``DEFDOMAIN``, the suffix (``@example.com``)
            appended to a login or CRAM name that lacks a domain.
        domainsep: Courier's ``DOMAINSEP``: characters any of which marks a name
            as having a domain; None (unset) means the first character of
            ``defdomain``.
        remote_ip: the client's address, sent as ``TCPREMOTEIP=``; None takes
            the environment's ``TCPREMOTEIP`` (as Courier's library does), ""
            sends none.

    Raises ``ConfigError`` for a timeout that is not a positive number.
    """

    def __init__(self, socket_path: str, *, connect_timeout: float = 10.0,
                 write_timeout: float = 10.0, read_timeout: float = 30.0,
                 enumerate_timeout: float = 60.0, defdomain: str = "",
                 domainsep: str | None = None, remote_ip: str | None = None) -> None:
        self.socket_path = str(socket_path)
        self.connect_timeout = _timeout("connect timeout", connect_timeout)
        self.write_timeout = _timeout("write timeout", write_timeout)
        self.read_timeout = _timeout("read timeout", read_timeout)
        self.enumerate_timeout = _timeout("enumerate timeout", enumerate_timeout)
        self.defdomain = defdomain
        self.domainsep = domainsep
        self.remote_ip = environ.get("TCPREMOTEIP") if remote_ip is None else remote_ip
        self.description = f"authdaemond {self.socket_path}"

    def _exchange(self, request: bytes, reader: object) -> object:
        return client.exchange(
            self.socket_path, request, reader,  # type: ignore[arg-type]
            connect_timeout=self.connect_timeout, write_timeout=self.write_timeout,
            read_timeout=self.read_timeout)

    def _account(self, reply: "dict[str, str]", name: str) -> "Account":
        try:
            return protocol.account_from_reply(reply, name, _getpwnam)
        except TemporaryFailure as exc:
            raise TemporaryFailure(f"authdaemond socket {self.socket_path}: {exc}") from None

    def lookup(self, name: str, service: str = "login") -> "Account":
        """``PRE . <service> <name>`` (no DEFDOMAIN, as in Courier).  Raises
        ``UnknownUser`` (``FAIL``, or a name the protocol cannot carry),
        ``Misuse`` (a service name with a space or control byte) or
        ``TemporaryFailure``."""
        request = protocol.pre_request(service, name, self.remote_ip)
        reply = self._exchange(request, protocol.AccountReplyReader())
        if reply is protocol.FAIL:
            raise UnknownUser(f"no account {name!r}")
        return self._account(reply, name)  # type: ignore[arg-type]

    def authenticate(self, name: str, password: bytes, service: str = "login") -> "Account":
        """``AUTH`` ``login`` for ``name`` with DEFDOMAIN applied.  Raises
        ``BadPassword`` for ``FAIL`` (unknown user or wrong password alike) and,
        without asking, for an empty password or one the protocol cannot carry;
        ``TemporaryFailure`` when the daemon gives no answer."""
        if not password:
            raise BadPassword("empty password")
        login = protocol.apply_defdomain(name, self.defdomain, self.domainsep)
        request = protocol.login_request(service, login, password, self.remote_ip)
        reply = self._exchange(request, protocol.AccountReplyReader())
        if reply is protocol.FAIL:
            raise BadPassword(f"authdaemond refused the login of {login!r}")
        return self._account(reply, login)  # type: ignore[arg-type]

    def authenticate_cram(self, challenge: bytes, name: str, response_hex: str,
                          algorithm: str, service: str = "login") -> "Account":
        """``AUTH`` ``cram-<algorithm>``: the daemon checks ``response_hex``
        against its stored HMAC secret.  DEFDOMAIN is applied to ``name``.
        Raises ``Misuse`` (unknown algorithm), ``BadPassword`` (``FAIL``) or
        ``TemporaryFailure``."""
        login = protocol.apply_defdomain(name, self.defdomain, self.domainsep)
        request = protocol.cram_request(service, algorithm, challenge, login, response_hex,
                                        self.remote_ip)
        reply = self._exchange(request, protocol.AccountReplyReader())
        if reply is protocol.FAIL:
            raise BadPassword(f"authdaemond refused the CRAM login of {login!r}")
        return self._account(reply, login)  # type: ignore[arg-type]

    def change_password(self, name: str, old: bytes, new: bytes, service: str = "login",
                        *, check_account: "Callable[[Account], None] | None" = None) -> "Account":
        """``PASSWD <service>\\t<name>\\t<old>\\t<new>`` (no DEFDOMAIN, as in
        Courier's ``auth_passwd``); on ``OK`` the account is read back with
        ``PRE``.  The daemon verifies ``old``: this side never does.

        With ``check_account``, a ``PRE`` for ``name`` comes first (a lookup: the
        daemon checks no password for it) and ``check_account`` is called with
        its account before ``PASSWD`` is sent.  When it refuses, no ``PASSWD``
        is sent; one ``AUTH`` login of ``name`` (no DEFDOMAIN) then tells a wrong
        ``old`` (``BadPassword``) from a right one (the refusal stands), so every
        path verifies ``old`` exactly once.  A ``PRE`` that fails is
        ``BadPassword`` (the daemon's ``PASSWD`` answers unknown users alike).

        Raises ``PolicyRefused`` without asking for a name or password
        authuserdb would refuse (control bytes, ``| = ' "``), ``BadPassword`` for
        ``FAIL`` (wrong old password, unknown user or refused alike), whatever
        ``check_account`` raises, or ``TemporaryFailure`` (no answer; or changed
        but not readable back)."""
        request = protocol.passwd_request(service, name, old, new, self.remote_ip)
        if check_account is not None:
            try:
                account = self.lookup(name, service)
            except UnknownUser:
                raise BadPassword(f"authdaemond refused the password change of {name!r}") from None
            try:
                check_account(account)
            except Rejected:
                self._verify_old(name, old, service)  # a wrong old password says only that
                raise
        verdict = self._exchange(request, protocol.PasswdReplyReader())
        if verdict is protocol.FAIL:
            raise BadPassword(f"authdaemond refused the password change of {name!r}")
        try:
            return self.lookup(name, service)
        except UnknownUser:
            raise TemporaryFailure(
                f"authdaemond socket {self.socket_path}: password of {name!r} changed, "
                "but the account cannot be read back") from None

    def _verify_old(self, name: str, old: bytes, service: str) -> None:
        """``AUTH`` ``login`` of ``name`` as given (the name ``PASSWD`` would
        carry); ``BadPassword`` unless the daemon accepts ``old``."""
        request = protocol.login_request(service, name, old, self.remote_ip)
        if self._exchange(request, protocol.AccountReplyReader()) is protocol.FAIL:
            raise BadPassword(f"authdaemond refused the password change of {name!r}")

    def enumerate(self) -> "Iterator[Account]":
        """Every account the daemon lists (``ENUMERATE``), as the lines arrive;
        each read may wait ``enumerate_timeout`` seconds.  Accounts carry name,
        uid, gid, home, maildir, options.  Raises ``TemporaryFailure`` if the
        listing breaks off (after yielding what came before)."""
        return client.enumerate_accounts(
            self.socket_path, protocol.ENUMERATE_REQUEST, protocol.EnumerateReader(),
            connect_timeout=self.connect_timeout, write_timeout=self.write_timeout,
            per_read_timeout=self.enumerate_timeout)

    def __repr__(self) -> str:
        return f"AuthdaemonSource({self.socket_path!r})"


__all__ = ["DEFAULT_SOCKET_PATHS", "AuthdaemonSource", "find_socket"]
