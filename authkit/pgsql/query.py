"""Courier authpgsql's queries as SQL text plus bound parameters (sans-I/O).

:class:`PgsqlQueries` is built once from the authpgsqlrc-style settings and then
hands out :class:`Statement` values (``sql`` with psycopg ``%s`` placeholders,
``params`` in order) for the three things authpgsql asks the database:

* :meth:`~PgsqlQueries.select`: the account row, ten columns in Courier's order
  ``username, cryptpw, clearpw, uid, gid, home, maildir, quota, fullname,
  options``;
* :meth:`~PgsqlQueries.chpass`: the UPDATE of a password change;
* :meth:`~PgsqlQueries.enumerate`: ``name, uid, gid, home, maildir, options``.

What Courier builds (authpgsqllib.cpp) and how this differs:

* the default SELECT is ``SELECT <login>, <crypt>, <clear>, <uid>, <gid>, <home>,
  <maildir or, for service "courier", defaultdelivery>, <quota>, <name>,
  <options> FROM <table> WHERE <login> = '<name>' AND (<where clause>)``; a
  field left unset is the empty literal ``''``; the name gets
  ``@DEFAULT_DOMAIN`` when it has no ``@``.  Here the name is a bound parameter.
* a custom clause has ``$(local_part)``, ``$(domain)`` (the part after the first
  ``@``, else DEFAULT_DOMAIN) and ``$(service)`` (SELECT), ``$(newpass)`` and
  ``$(newpass_crypt)`` (CHPASS); ENUMERATE gets local_part ``*`` and service
  ``enumerate``.  Courier pastes the escaped value in; here every ``$(name)``
  becomes a placeholder: ``'$(name)'`` turns into ``%s``, a literal mixing text
  and variables (``'$(local_part)@$(domain)'``) into a ``||`` concatenation of
  its pieces, a bare ``$(name)`` into ``%s``.  An unknown ``$(name)`` is a
  ``ConfigError`` (Courier silently expands it to nothing).
* field names that are plain or dotted identifiers are quoted (folded to lower
  case first, as PostgreSQL folds unquoted names, so the meaning is Courier's and
  a reserved word such as ``user`` stays a column); the table must be such a
  name.  Any other field value is an SQL expression written by the site (Courier
  documents ``'disableimap=' || disableimap`` for the options field) and, like
  the WHERE clause and the custom clauses, is checked to be one statement with
  closed quotes and comments and no ``$(...)`` where none is allowed.

What it is not: an SQL parser.  Site-written SQL is trusted text from the
configuration; only values that come from a client travel as parameters.
``%`` in site SQL is doubled for psycopg.
"""

from __future__ import annotations

import re

from ..errors import ConfigError

#: The variables each custom clause may use (Courier's set for each).
SELECT_VARIABLES = frozenset(("local_part", "domain", "service"))
CHPASS_VARIABLES = frozenset(("local_part", "domain", "newpass", "newpass_crypt"))
ENUMERATE_VARIABLES = frozenset(("local_part", "domain", "service"))
_NONE: frozenset = frozenset()

_PART = r'(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")'
_IDENTIFIER = re.compile(rf"{_PART}(?:\.{_PART})*\Z")
_PARTS = re.compile(_PART)
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")


class UnsendableValue(ValueError):
    """A value PostgreSQL text cannot hold (a NUL character)."""


class Statement:
    """One SQL statement: ``sql`` (psycopg placeholders) and ``params`` (a tuple).
    Its ``repr`` never shows the parameters (they may be passwords)."""

    __slots__ = ("sql", "params")

    def __init__(self, sql: str, params: tuple) -> None:
        self.sql = sql
        self.params = params

    def __repr__(self) -> str:
        return f"Statement({self.sql!r}, <{len(self.params)} parameters>)"


class Template:
    """Site SQL compiled once: ``sql`` with ``%s`` placeholders and the variable
    ``names`` they stand for, in order."""

    __slots__ = ("sql", "names")

    def __init__(self, sql: str, names: tuple) -> None:
        self.sql = sql
        self.names = names

    def bind(self, values: "dict[str, str]") -> Statement:
        params = tuple(values[name] for name in self.names)
        for value in params:
            if "\0" in value:
                raise UnsendableValue("a value holds a NUL character")
        return Statement(self.sql, params)


def _ident_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_$"


def _variable(text: str, start: int, what: str, allowed: frozenset) -> "tuple[str, int]":
    end = text.find(")", start + 2)
    if end < 0:
        raise ConfigError(f"{what}: '$(' without ')'")
    name = text[start + 2:end]
    if name not in allowed:
        known = ", ".join(f"$({n})" for n in sorted(allowed)) or "none"
        raise ConfigError(f"{what}: unknown variable $({name}) (known here: {known})")
    return name, end + 1


def _literal(text: str, start: int, what: str, allowed: frozenset,
             estring: bool, prefixed: bool) -> "tuple[list, int]":
    """The pieces of the '...' literal at ``start`` (strings in SQL quoting, and
    variable names as 1-tuples) and the index after its closing quote.
    ``estring``: backslash escapes (E'...'); ``prefixed``: any prefix (E, U&,
    B, X, N), where no variable may stand."""
    pieces: list = []
    buf: list[str] = []
    i, n = start + 1, len(text)
    while True:
        if i >= n:
            raise ConfigError(f"{what}: unterminated '...' literal")
        ch = text[i]
        if estring and ch == "\\":
            buf.append(text[i:i + 2])
            i += 2
            continue
        if ch == "'":
            if text.startswith("''", i):
                buf.append("''")
                i += 2
                continue
            break
        if text.startswith("$(", i) and allowed:
            if prefixed:
                raise ConfigError(f"{what}: put $(...) in a plain '...' literal, "
                                  "not E'...', U&'...' or another prefixed one")
            name, i = _variable(text, i, what, allowed)
            if buf:
                pieces.append("".join(buf))
                buf = []
            pieces.append((name,))
            continue
        buf.append(ch)
        i += 1
    if buf:
        pieces.append("".join(buf))
    return pieces, i + 1


def compile_sql(text: str, what: str, allowed: frozenset = _NONE) -> Template:
    """Compile site SQL ``text`` (named ``what`` in errors) into a Template,
    turning each ``$(name)`` with ``name`` in ``allowed`` into a placeholder.
    Raises ``ConfigError`` for an unknown variable, an unclosed quote or comment,
    or a second statement (one trailing ``;`` is dropped)."""
    out: list[str] = []
    names: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "'":
            estring = i > 0 and text[i - 1] in "eE" and (i < 2 or not _ident_char(text[i - 2]))
            prefixed = i > 0 and (text[i - 1].isalnum() or text[i - 1] in "&_")
            pieces, end = _literal(text, i, what, allowed, estring, prefixed)
            if not any(isinstance(p, tuple) for p in pieces):
                out.append(text[i:end].replace("%", "%%"))
            elif len(pieces) == 1:
                out.append("%s")
                names.append(pieces[0][0])
            else:
                parts = []
                for piece in pieces:
                    if isinstance(piece, tuple):
                        parts.append("CAST(%s AS text)")
                        names.append(piece[0])
                    else:
                        parts.append("'" + piece.replace("%", "%%") + "'")
                out.append("(" + " || ".join(parts) + ")")
            i = end
        elif ch == '"':
            end = i + 1
            while True:
                end = text.find('"', end)
                if end < 0:
                    raise ConfigError(f'{what}: unterminated "..." identifier')
                if not text.startswith('""', end):
                    break
                end += 2
            out.append(text[i:end + 1].replace("%", "%%"))
            i = end + 1
        elif text.startswith("--", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(text[i:end].replace("%", "%%"))
            i = end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise ConfigError(f"{what}: unterminated /* comment")
            out.append(text[i:end + 2].replace("%", "%%"))
            i = end + 2
        elif text.startswith("$(", i):
            if not allowed:
                raise ConfigError(f"{what}: no $(...) variables are substituted here")
            name, i = _variable(text, i, what, allowed)
            out.append("%s")
            names.append(name)
        elif ch == "$" and (i == 0 or not _ident_char(text[i - 1])) and _DOLLAR_TAG.match(text, i):
            tag = _DOLLAR_TAG.match(text, i).group(0)  # type: ignore[union-attr]
            end = text.find(tag, i + len(tag))
            if end < 0:
                raise ConfigError(f"{what}: unterminated {tag} quote")
            out.append(text[i:end + len(tag)].replace("%", "%%"))
            i = end + len(tag)
        elif ch == ";":
            if text[i + 1:].strip():
                raise ConfigError(f"{what}: one SQL statement only (';' inside)")
            i = n
        elif ch == "%":
            out.append("%%")
            i += 1
        else:
            out.append(ch)
            i += 1
    return Template("".join(out).strip(), tuple(names))


def quote_identifier(name: str, what: str) -> str:
    """``name`` (a plain or dotted identifier, parts maybe "quoted") as quoted
    SQL; unquoted parts folded to lower case.  ``ConfigError`` otherwise."""
    name = name.strip()
    if not _IDENTIFIER.match(name):
        raise ConfigError(f"{what}: {name!r} is not a table or column name")
    parts = []
    for part in _PARTS.findall(name):
        parts.append(part if part.startswith('"') else '"' + part.lower() + '"')
    return ".".join(parts)


def field_sql(value: str, what: str) -> str:
    """The SQL for a field setting: ``''`` when empty, a quoted identifier, or
    the site's expression (checked by :func:`compile_sql`)."""
    value = value.strip()
    if not value:
        return "''"
    if _IDENTIFIER.match(value):
        return quote_identifier(value, what)
    return compile_sql(value, what).sql


def is_identifier(value: str) -> bool:
    return bool(_IDENTIFIER.match(value.strip()))


def split_login(name: str, default_domain: str) -> "tuple[str, str]":
    """Courier's ``$(local_part)`` and ``$(domain)``: around the first ``@``;
    without one, the whole name and ``default_domain``."""
    local, at, domain = name.partition("@")
    return (local, domain) if at else (name, default_domain)


class PgsqlQueries:
    """The statements of one authpgsql configuration.  Arguments are the
    authpgsqlrc settings by their lower-case names without ``pgsql_`` (an empty
    string means unset, as in Courier): ``user_table``, ``login_field``,
    ``crypt_field``, ``clear_field``, ``uid_field``, ``gid_field``,
    ``home_field``, ``maildir_field``, ``defaultdelivery_field``,
    ``name_field``, ``quota_field``, ``options_field``, ``where_clause``,
    ``default_domain``, ``select_clause``, ``chpass_clause``,
    ``enumerate_clause``.

    Raises ``ConfigError`` as Courier refuses to load (no table or no password
    field while a default query is needed) and for SQL that does not compile.
    ``chpass_problem`` is a message when no password change is possible (a
    password field is an expression and there is no CHPASS clause), else "".
    """

    def __init__(self, *, user_table: str = "passwd", login_field: str = "id",
                 crypt_field: str = "crypt", clear_field: str = "", uid_field: str = "uid",
                 gid_field: str = "gid", home_field: str = "home", maildir_field: str = "",
                 defaultdelivery_field: str = "", name_field: str = "", quota_field: str = "",
                 options_field: str = "", where_clause: str = "", default_domain: str = "",
                 select_clause: str = "", chpass_clause: str = "",
                 enumerate_clause: str = "") -> None:
        self.default_domain = default_domain.strip()
        self.chpass_problem = ""
        self._select_custom = (compile_sql(select_clause, "pgsql_select_clause", SELECT_VARIABLES)
                               if select_clause.strip() else None)
        self._chpass_custom = (compile_sql(chpass_clause, "pgsql_chpass_clause", CHPASS_VARIABLES)
                               if chpass_clause.strip() else None)
        self._enumerate_custom = (
            compile_sql(enumerate_clause, "pgsql_enumerate_clause", ENUMERATE_VARIABLES)
            if enumerate_clause.strip() else None)
        self.crypt_configured = bool(crypt_field.strip())
        self.clear_configured = bool(clear_field.strip())
        if self._select_custom and self._chpass_custom and self._enumerate_custom:
            return  # Courier ignores every field setting then
        if not user_table.strip():
            raise ConfigError("pgsql_user_table must be set (Courier's PGSQL_USER_TABLE)")
        if not (self.crypt_configured or self.clear_configured):
            raise ConfigError("set pgsql_crypt_pwfield or pgsql_clear_pwfield (or both)")
        table = quote_identifier(user_table, "pgsql_user_table")
        login = quote_identifier(login_field or "id", "pgsql_login_field")
        crypt = field_sql(crypt_field, "pgsql_crypt_pwfield")
        clear = field_sql(clear_field, "pgsql_clear_pwfield")
        uid = field_sql(uid_field or "uid", "pgsql_uid_field")
        gid = field_sql(gid_field or "gid", "pgsql_gid_field")
        home = field_sql(home_field or "home", "pgsql_home_field")
        maildir = field_sql(maildir_field, "pgsql_maildir_field")
        delivery = field_sql(defaultdelivery_field, "pgsql_defaultdelivery")
        quota = field_sql(quota_field, "pgsql_quota_field")
        fullname = field_sql(name_field, "pgsql_name_field")
        options = field_sql(options_field, "pgsql_auxoptions_field")
        where = compile_sql(where_clause, "pgsql_where_clause").sql if where_clause.strip() else "1=1"

        def select_sql(mail: str) -> str:
            return (f"SELECT {login}, {crypt}, {clear}, {uid}, {gid}, {home}, {mail}, {quota}, "
                    f"{fullname}, {options} FROM {table} WHERE {login} = %s AND ({where})")

        self._select = select_sql(maildir)
        self._select_courier = select_sql(delivery)
        self._enumerate = (f"SELECT {login}, {uid}, {gid}, {home}, {maildir}, {options} "
                           f"FROM {table} WHERE ({where})")
        sets = []
        for setting, value, column in (("pgsql_clear_pwfield", clear_field, clear),
                                       ("pgsql_crypt_pwfield", crypt_field, crypt)):
            if not value.strip():
                continue
            if not is_identifier(value):
                self.chpass_problem = (f"{setting} is an expression: a password change "
                                       "needs pgsql_chpass_clause")
            sets.append(f"{column} = %s")
        self._chpass = f"UPDATE {table} SET {', '.join(sets)} WHERE {login} = %s AND ({where})"
        if self._chpass_custom is not None:
            self.chpass_problem = ""

    def login_name(self, name: str) -> str:
        """The name the default queries compare: ``name@DEFAULT_DOMAIN`` when
        ``name`` has no ``@`` and a default domain is set."""
        if "@" not in name and self.default_domain:
            return f"{name}@{self.default_domain}"
        return name

    def _custom_values(self, name: str) -> "dict[str, str]":
        local, domain = split_login(name, self.default_domain)
        return {"local_part": local, "domain": domain}

    def select(self, name: str, service: str, *, lock: bool = False) -> Statement:
        """The account row of ``name`` for ``service``; ``lock`` adds FOR UPDATE
        to the default query (a custom SELECT is used as written).  Raises
        ``UnsendableValue`` for a NUL in the name or service."""
        if self._select_custom is not None:
            values = self._custom_values(name)
            values["service"] = service
            return self._select_custom.bind(values)
        login = self.login_name(name)
        if "\0" in login:
            raise UnsendableValue("the name holds a NUL character")
        sql = self._select_courier if service == "courier" else self._select
        return Statement(sql + (" FOR UPDATE" if lock else ""), (login,))

    @property
    def chpass_needs_crypt(self) -> bool:
        """True when the change writes a hash (so one must be made)."""
        if self._chpass_custom is not None:
            return "newpass_crypt" in self._chpass_custom.names
        return self.crypt_configured

    def chpass(self, name: str, newpass: str, newpass_crypt: str) -> Statement:
        """The UPDATE that stores the new password of ``name``: Courier's default
        sets the clear field (if configured) and the crypt field (if configured)
        of the rows the SELECT would find.  Raises ``UnsendableValue``."""
        if self._chpass_custom is not None:
            values = self._custom_values(name)
            values["newpass"] = newpass
            values["newpass_crypt"] = newpass_crypt
            return self._chpass_custom.bind(values)
        params = []
        if self.clear_configured:
            params.append(newpass)
        if self.crypt_configured:
            params.append(newpass_crypt)
        params.append(self.login_name(name))
        if any("\0" in value for value in params):
            raise UnsendableValue("a value holds a NUL character")
        return Statement(self._chpass, tuple(params))

    def enumerate(self) -> Statement:
        """Every account: name, uid, gid, home, maildir, options."""
        if self._enumerate_custom is not None:
            return self._enumerate_custom.bind(
                {"local_part": "*", "domain": self.default_domain, "service": "enumerate"})
        return Statement(self._enumerate, ())


__all__ = ["PgsqlQueries", "Statement", "Template", "UnsendableValue", "compile_sql",
           "field_sql", "quote_identifier", "split_login"]
