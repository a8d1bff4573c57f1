"""Where accounts come from, and the settings every program shares.

How a program finds its account source (first match wins):

1. ``--config FILE`` (the ``config_path`` argument): that file decides;
2. environment ``AUTHKIT_AUTHDAEMON=/path/to/socket``: a running authdaemond;
3. environment ``AUTHKIT_USERDB=/path/to/userdb``: a Courier userdb (the compiled
   pair beside it as ``userdb.dat``/``userdbshadow.dat``);
4. environment ``AUTHKIT_CONFIG=FILE``, else ``/etc/authkit/authkit.conf`` if it
   exists: that file decides;
5. Courier's defaults: a live authdaemond socket at one of Courier's default paths,
   else ``/etc/courier/userdb``, else ``/usr/local/etc/userdb``.

Every program resolves through :func:`load_settings`; the admin command's
``--userdb PATH`` is a userdb chosen on top of these rules (``userdb=``).

The settings other than the source (policy, timeouts) come from the config file of
step 1 or 4 whenever one is in use, else from the defaults below.

In a process whose real and effective uid (or gid) differ (a setuid or setgid
install), the ``AUTHKIT_*`` variables are ignored: the invoking user must not
choose the account source or the config file (see :func:`trusted_environ`).

The file format is ``key = value`` lines; ``#`` starts a comment line; blank lines
are ignored; values are not quoted.  Unknown keys and bad values are errors
(``ConfigError``, exit 111, naming file and line).  See docs/authkit.conf.5.

This module is on the per-login path: it parses by hand (no configparser).
"""

from __future__ import annotations

import os

from .errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping

    from .source import AccountSource

DEFAULT_CONFIG = "/etc/authkit/authkit.conf"
DEFAULT_USERDBS = ("/etc/courier/userdb", "/usr/local/etc/userdb")
# Courier's default authdaemond socket paths, across distributions: the list lives
# beside the client (authkit.authdaemon.source.DEFAULT_SOCKET_PATHS); None here
# means "that list".
DEFAULT_SOCKETS: "tuple[str, ...] | None" = None

# key -> (type, default).  Types: str, int, float, bool (yes/no, true/false, 1/0).
_SCHEMA: dict[str, tuple[type, object]] = {
    "source": (str, ""),  # one of SOURCE_KINDS; inferred when empty
    "userdb": (str, ""),
    "authdaemon_socket": (str, ""),
    "authdaemon_connect_timeout": (float, 10.0),
    "authdaemon_write_timeout": (float, 10.0),
    "authdaemon_read_timeout": (float, 30.0),
    "authdaemon_enumerate_timeout": (float, 60.0),
    "defdomain": (str, ""),
    "default_options": (str, ""),
    "hash_scheme": (str, "sha512-crypt"),
    "min_uid": (int, 100),
    "min_password_length": (int, 8),
    "max_password_length": (int, 128),
    "max_username_length": (int, 64),
    "bad_pass_delay": (float, 3.0),
    "refusal_floor": (float, 0.25),
    "idle_timeout": (float, 60.0),
    "max_connections": (int, 64),
    "allow_root_ids": (bool, False),
    # --- authkitd (docs/authkitd.8) ---
    "authkitd_socket": (str, "/run/courier/authdaemon/socket"),
    "workers": (int, 8),
    "max_clients": (int, 1024),
    "source_timeout": (float, 25.0),
    "failure_delay": (float, 2.0),
    "failure_delay_max": (float, 15.0),
    "rehash_on_login": (bool, False),
    "cache_ttl": (float, 0.0),
    # --- ldap source (authkit/ldap; Courier's authldaprc) ---
    "ldap_uri": (str, ""),  # LDAP_URI: servers tried in order, comma- or blank-separated
    "ldap_basedn": (str, ""),
    "ldap_binddn": (str, ""),  # "" = anonymous (Courier: LDAP_INITBIND=0)
    "ldap_bindpw": (str, ""),
    "ldap_timeout": (float, 5.0),
    "ldap_tls": (int, 0),  # StartTLS
    "ldap_tls_cacert": (str, ""),  # OpenLDAP's TLS_CACERT
    "ldap_deref": (str, "never"),
    "ldap_authbind": (int, 0),
    "ldap_mail": (str, "mail"),
    "ldap_domain": (str, ""),
    "ldap_filter": (str, ""),
    "ldap_enumerate_filter": (str, ""),
    "ldap_homedir": (str, "homeDirectory"),
    "ldap_mailroot": (str, ""),
    "ldap_maildir": (str, "mailbox"),
    "ldap_defaultdelivery": (str, "defaultDelivery"),
    "ldap_fullname": (str, "cn"),
    "ldap_clearpw": (str, ""),
    "ldap_cryptpw": (str, "userPassword"),
    "ldap_uid": (str, ""),
    "ldap_gid": (str, ""),
    "ldap_glob_uid": (str, ""),
    "ldap_glob_gid": (str, ""),
    "ldap_auxoptions": (str, ""),
    "ldap_maildirquota": (str, ""),
    "ldap_connections": (int, 4),  # idle connections kept per pool
    # --- pgsql source (authkit/pgsql; Courier's authpgsqlrc) ---
    "pgsql_connection": (str, ""),
    "pgsql_host": (str, ""),
    "pgsql_port": (str, ""),
    "pgsql_user": (str, ""),
    "pgsql_password": (str, ""),
    "pgsql_database": (str, ""),
    "pgsql_character_set": (str, "UTF8"),
    "pgsql_user_table": (str, "passwd"),
    "pgsql_login_field": (str, "id"),
    "pgsql_crypt_pwfield": (str, "crypt"),
    "pgsql_clear_pwfield": (str, ""),
    "pgsql_uid_field": (str, "uid"),
    "pgsql_gid_field": (str, "gid"),
    "pgsql_home_field": (str, "home"),
    "pgsql_maildir_field": (str, ""),
    "pgsql_defaultdelivery": (str, ""),
    "pgsql_name_field": (str, ""),
    "pgsql_quota_field": (str, ""),
    "pgsql_auxoptions_field": (str, ""),
    "pgsql_where_clause": (str, ""),
    "pgsql_default_domain": (str, ""),
    "pgsql_select_clause": (str, ""),
    "pgsql_chpass_clause": (str, ""),
    "pgsql_enumerate_clause": (str, ""),
    "pgsql_connect_timeout": (float, 10.0),
    "pgsql_statement_timeout": (float, 10.0),
    "pgsql_pool_size": (int, 8),
}

#: The account source kinds a config file may name.  "ldap" and "pgsql" are heavy
#: (they import ldap3 or psycopg): only authkitd opens them; the per-login programs
#: reach them through authkitd's socket (see open_source).
SOURCE_KINDS = ("userdb", "authdaemon", "ldap", "pgsql")
HEAVY_KINDS = {"ldap": ("authkit.ldap.source", "LdapSource"),
               "pgsql": ("authkit.pgsql.source", "PgsqlSource")}


_BOOLEANS = {"yes": True, "true": True, "on": True, "1": True,
             "no": False, "false": False, "off": False, "0": False}


class Settings:
    """The settings of one program run.  Attributes are the keys of the config
    file (see the module docstring) and two more: ``config_file``, the file read
    ("" if none), and ``chosen_source``, the kind of account source chosen
    (``userdb``, ``authdaemon``, ``ldap``, ``pgsql``, ``chain``, or "" before
    the choice).  The key ``source`` is what the file says: empty (to be
    inferred), a kind, or a chain of kinds.  The chosen source's path stays in
    its own key (``userdb`` for a userdb, ``authdaemon_socket`` for authdaemond):
    :meth:`choose` writes it there, and ``chosen_path`` reads it back (derived,
    read-only; "" for the other kinds), so a path has one name."""

    source: str
    userdb: str
    authdaemon_socket: str
    authdaemon_connect_timeout: float
    authdaemon_write_timeout: float
    authdaemon_read_timeout: float
    authdaemon_enumerate_timeout: float
    defdomain: str
    default_options: str
    hash_scheme: str
    min_uid: int
    min_password_length: int
    max_password_length: int
    max_username_length: int
    bad_pass_delay: float
    refusal_floor: float
    idle_timeout: float
    max_connections: int
    allow_root_ids: bool
    rehash_on_login: bool

    def __init__(self, **values: object) -> None:
        for key, (kind, default) in _SCHEMA.items():
            setattr(self, key, values.pop(key, default))
        if values:
            raise TypeError(f"unknown settings: {', '.join(sorted(values))}")
        self.config_file = ""
        self.chosen_source = ""

    @property
    def chosen_path(self) -> str:
        """The path of the chosen source: ``userdb`` or ``authdaemon_socket``
        by ``chosen_source``, else ""."""
        key = _PATH_KEYS.get(self.chosen_source)
        return getattr(self, key) if key else ""

    def choose(self, kind: str, path: str = "") -> "Settings":
        """Record the chosen source, and its path in its own key (a userdb or
        authdaemond; ``AttributeError`` for a path of another kind); return
        self."""
        self.chosen_source = kind
        if path:
            key = _PATH_KEYS.get(kind)
            if key is None:
                raise AttributeError(f"a {kind or 'unchosen'} source has no path")
            setattr(self, key, path)
        return self

    def __repr__(self) -> str:
        inner = ", ".join(f"{key}={getattr(self, key)!r}" for key in _SCHEMA)
        return f"Settings({inner}, chosen_source={self.chosen_source!r})"


#: The key holding the path of each source kind that has one.
_PATH_KEYS = {"userdb": "userdb", "authdaemon": "authdaemon_socket"}


#: The least value of a numeric key.  Every number must be finite (no inf, no
#: nan) and not negative; a key not listed here must be above 0.  A minimum of 0
#: means that 0 turns the thing off (min_uid 0: no minimum; bad_pass_delay 0: no
#: delay).
_MINIMUM: dict[str, float] = {
    "min_uid": 0,
    "bad_pass_delay": 0,
    "refusal_floor": 0,
    "min_password_length": 1,
    "max_password_length": 1,
    "max_username_length": 1,
    "max_connections": 1,
    "workers": 1,
    "max_clients": 1,
    "failure_delay": 0,
    "failure_delay_max": 0,
    "cache_ttl": 0,
    "ldap_tls": 0,
    "ldap_authbind": 0,
    "ldap_connections": 0,
    "pgsql_statement_timeout": 0,
    "pgsql_pool_size": 0,
}


def _number(kind: type, key: str, value: str) -> "int | float":
    """``value`` as ``kind`` (int: ASCII digits with an optional sign; float: a
    finite decimal), at least ``_MINIMUM[key]`` (else above 0).  Raises
    ValueError with the reason."""
    if kind is int:
        digits = value[1:] if value[:1] in ("+", "-") else value
        if not (digits.isascii() and digits.isdigit()):
            raise ValueError(f"{key} must be a number")
        number: "int | float" = int(value)
    else:
        try:
            number = float(value) if value.isascii() else float("nan")
        except ValueError:
            raise ValueError(f"{key} must be a number") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError(f"{key} must be a finite number")
    minimum = _MINIMUM.get(key)
    if minimum is None and not number > 0:
        raise ValueError(f"{key} must be above 0")
    if minimum is not None and number < minimum:
        raise ValueError(f"{key} must be at least {minimum}")
    return number


def _check_value(key: str, value: str) -> object:
    """The typed value of ``key``; ValueError naming what is wrong."""
    kind = _SCHEMA[key][0]
    if kind is bool:
        flag = _BOOLEANS.get(value.lower())
        if flag is None:
            raise ValueError(f"{key} must be yes or no")
        return flag
    if kind is not str:
        return _number(kind, key, value)
    if key == "source" and value and any(kind not in SOURCE_KINDS for kind in chain_kinds(value)):
        raise ValueError(f"source must be one of {', '.join(SOURCE_KINDS)} (or a comma-separated chain of them)")
    if key == "hash_scheme":
        from .schemes import SCHEMES  # the name table only: imports nothing heavy

        known = {name.lower(): name for name in SCHEMES}
        if value.lower() not in known:
            raise ValueError(f"hash_scheme must be one of {', '.join(SCHEMES)}")
    return value


def parse_config(text: str, filename: str = "<config>") -> dict[str, object]:
    """The values of a config file's text, every one checked.  Raises
    ``ConfigError`` naming ``filename`` and the line for an unknown key, a line
    without ``=``, a value of the wrong type or out of range (see ``_MINIMUM``),
    an unknown ``source`` or ``hash_scheme``, and a ``max_password_length``
    below ``min_password_length``."""
    values: dict[str, object] = {}
    lines: dict[str, int] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise ConfigError(f"{filename}:{lineno}: expected 'key = value'")
        if key not in _SCHEMA:
            raise ConfigError(f"{filename}:{lineno}: unknown setting {key!r}")
        try:
            values[key] = _check_value(key, value)
        except ValueError as exc:
            raise ConfigError(f"{filename}:{lineno}: {exc}") from None
        lines[key] = lineno
    low = values.get("min_password_length", _SCHEMA["min_password_length"][1])
    high = values.get("max_password_length", _SCHEMA["max_password_length"][1])
    if high < low:  # type: ignore[operator]
        lineno = max(lines.get("min_password_length", 0), lines.get("max_password_length", 0))
        raise ConfigError(f"{filename}:{lineno}: max_password_length ({high}) is below "
                          f"min_password_length ({low})")
    return values


def chain_kinds(source: str) -> "list[str]":
    """The kinds of a ``source`` value: one, or a comma-separated chain
    (``userdb, ldap``: authkit/chain.py; only authkitd opens a chain)."""
    return [part.strip() for part in source.split(",")]


def read_config(path: str) -> dict[str, object]:
    """Parse the config file at ``path``; ``ConfigError`` if it cannot be read."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"cannot read config file {path}: {reason}") from None
    return parse_config(text, path)


def trusted_environ(environ: "Mapping[str, str] | None" = None) -> "Mapping[str, str]":
    """``environ`` (default ``os.environ``), without its ``AUTHKIT_*`` variables
    when the real and effective uid or gid of this process differ: then the
    environment is the invoking user's, and those variables would let him name
    the account source or the config file of a privileged program."""
    env = os.environ if environ is None else environ
    if os.getuid() == os.geteuid() and os.getgid() == os.getegid():
        return env
    return {key: value for key, value in env.items() if not key.startswith("AUTHKIT_")}


def load_settings(config_path: str | None = None, environ: "Mapping[str, str] | None" = None,
                  *, userdb: str | None = None, require_source: bool = True) -> Settings:
    """Settings with the account source chosen as the module docstring says:
    the one resolver of every program.  ``userdb`` (the admin command's
    ``--userdb``) is a userdb chosen on top of every rule; the policy still
    comes from the config file the rules read.  Raises ``ConfigError`` for an
    unreadable or malformed config file, and, with ``require_source``, when no
    source can be found (without it, ``chosen_source`` is then "")."""
    env = trusted_environ(environ)
    file_values: dict[str, object] = {}
    file_decides = False
    if config_path:
        file_values = read_config(config_path)
        file_decides = True
    else:
        path = env.get("AUTHKIT_CONFIG") or (DEFAULT_CONFIG if os.path.exists(DEFAULT_CONFIG) else "")
        if path:
            config_path = path
            file_values = read_config(path)
    settings = Settings(**file_values)
    settings.config_file = config_path or ""

    if userdb:
        return settings.choose("userdb", userdb.rstrip("/") or "/")
    if not file_decides:
        if env.get("AUTHKIT_AUTHDAEMON"):
            return settings.choose("authdaemon", env["AUTHKIT_AUTHDAEMON"])
        if env.get("AUTHKIT_USERDB"):
            return settings.choose("userdb", env["AUTHKIT_USERDB"])
    if config_path:
        kind = settings.source or ("authdaemon" if settings.authdaemon_socket else "userdb" if settings.userdb else "")
        if kind in _PATH_KEYS and getattr(settings, _PATH_KEYS[kind]):
            return settings.choose(kind)
        if kind in HEAVY_KINDS:
            return settings.choose(kind)
        if "," in kind:  # a chain (authkit/chain.py): opened like a heavy kind
            return settings.choose("chain")
        if (file_decides or kind) and require_source:
            raise ConfigError(f"{config_path}: names no account source (set userdb or authdaemon_socket)")
    from .authdaemon.source import DEFAULT_SOCKET_PATHS, find_socket

    # A socket, or one in a directory we may not search (Debian's is 0750
    # courier:courier): the connection error will then name it.
    socket_path = find_socket(DEFAULT_SOCKETS if DEFAULT_SOCKETS is not None else DEFAULT_SOCKET_PATHS)
    if socket_path:
        return settings.choose("authdaemon", socket_path)
    for path in DEFAULT_USERDBS:
        if os.path.exists(path) or os.path.exists(path + ".dat"):
            return settings.choose("userdb", path)
    if not require_source:
        return settings
    raise ConfigError(
        "no account source: set AUTHKIT_USERDB or AUTHKIT_AUTHDAEMON, or write "
        f"{DEFAULT_CONFIG} (no authdaemond socket or userdb at Courier's default paths)"
    )


def open_source(
    settings: Settings | None = None,
    *,
    config_path: str | None = None,
    environ: "Mapping[str, str] | None" = None,
    on_problem: object = None,
    daemon: bool = False,
) -> "AccountSource":
    """The account source the settings name (loading them first if not given).
    Imports only the module of the chosen source.

    A heavy kind (``HEAVY_KINDS``: ldap, pgsql) is opened only when ``daemon`` is
    true (authkitd); every other caller gets an authdaemond client on
    ``authdaemon_socket`` (default: Courier's socket paths), i.e. reaches the heavy
    source through authkitd, so ldap3 and psycopg never load on the per-login path."""
    if settings is None:
        settings = load_settings(config_path, environ)
    if settings.chosen_source == "chain" and daemon:
        return _open_chain(settings, environ, on_problem)
    if settings.chosen_source in HEAVY_KINDS or settings.chosen_source == "chain":
        if daemon:
            import importlib

            module, name = HEAVY_KINDS[settings.chosen_source]
            return getattr(importlib.import_module(module), name).from_settings(settings)
        settings.choose("authdaemon")
        if not settings.authdaemon_socket:
            from .authdaemon.source import DEFAULT_SOCKET_PATHS, find_socket

            settings.authdaemon_socket = find_socket(DEFAULT_SOCKET_PATHS) or DEFAULT_SOCKET_PATHS[0]
    if settings.chosen_source == "authdaemon":
        from .authdaemon.source import AuthdaemonSource

        env = os.environ if environ is None else environ
        return AuthdaemonSource(
            settings.chosen_path,
            connect_timeout=settings.authdaemon_connect_timeout,
            write_timeout=settings.authdaemon_write_timeout,
            read_timeout=settings.authdaemon_read_timeout,
            enumerate_timeout=settings.authdaemon_enumerate_timeout,
            defdomain=settings.defdomain or env.get("DEFDOMAIN", ""),
            domainsep=env.get("DOMAINSEP") or None,
            remote_ip=env.get("TCPREMOTEIP", ""),
        )
    from .userdb.source import UserdbSource

    return UserdbSource(
        settings.chosen_path,
        default_options=settings.default_options,
        hash_scheme=settings.hash_scheme,
        on_problem=on_problem,  # type: ignore[arg-type]
        # authkitd keeps the floor as a timer in its loop, not a sleep in a worker
        refusal_floor=0.0 if daemon else settings.refusal_floor,
    )


#: The Courier module name of each source kind (authkitd's ``PRE <module>`` and
#: ENUMERATE headers).
COURIER_MODULES = {"userdb": "authuserdb", "authdaemon": "authdaemon",
                   "ldap": "authldap", "pgsql": "authpgsql"}


def _open_chain(settings: Settings, environ: "Mapping[str, str] | None",
                on_problem: object) -> "AccountSource":
    """A ``ChainSource`` of the kinds in ``settings.source``, each opened as
    authkitd opens a single source (userdb at ``userdb``, authdaemond at
    ``authdaemon_socket``, heavy kinds from their settings)."""
    import copy

    from .chain import ChainSource

    members, names = [], []
    for kind in chain_kinds(settings.source):
        member = copy.copy(settings)
        member.source = kind
        member.choose(kind)
        if kind in _PATH_KEYS and not member.chosen_path:
            key = _PATH_KEYS[kind]
            raise ConfigError(f"{settings.config_file}: the chain names {kind} but {key} is not set")
        members.append(open_source(member, environ=environ, on_problem=on_problem, daemon=True))
        names.append(COURIER_MODULES[kind])
    return ChainSource(members, names)


__all__ = ["Settings", "load_settings", "open_source", "parse_config", "read_config", "trusted_environ"]
