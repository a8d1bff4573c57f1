"""``authkit``: the administrator's command, Courier's userdb tools in one.

Subcommands (docs/authkit.1 is the contract):

* ``userdb NAME set FIELD[=VALUE]...`` / ``unset FIELD...`` / ``del``, and
  ``userdb show [NAME]``: Courier's ``userdb`` script (its lock file, its refusal
  of ``|`` and newlines, a value read from stdin for a field given without
  ``=``), keeping comments, other lines and the record's field order, and keeping
  an existing compiled pair current for the one record changed;
* ``pw [--scheme S]``: Courier's ``userdbpw``;
* ``makeuserdb``: Courier's ``makeuserdb`` (authkit.userdb.compile);
* ``test [-s SERVICE] NAME [PASSWORD [NEWPASSWORD]]``: Courier's ``authtest``;
* ``enumerate [-o] [-s]``: Courier's ``authenumerate``;
* ``check [--compiled]``: report malformed lines (``file:line``), duplicate names,
  incomplete records, and (``--compiled``) disagreement with the compiled pair.

Exit status: 0 success; 1 rejected (authentication failed, no such account,
``check`` found problems); 2 usage error or input authkit refuses (bad field or
value, malformed userdb); 111 temporary failure (I/O, lock timeout, authdaemond
unreachable).  Every error is one line on stderr: ``authkit: <what>``.

Not on the per-login path: this module may import argparse.
"""

from __future__ import annotations

import os
import sys

from ..errors import AuthError, Misuse, Rejected, TemporaryFailure, UnknownUser

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Sequence

    from ..config import Settings
    from ..source import AccountSource

PROG = "authkit"
DEFAULT_USERDB = "/etc/courier/userdb"
HMAC_SCHEMES = ("hmac-md5", "hmac-sha1", "hmac-sha256")


def _out(text: str) -> None:
    sys.stdout.buffer.write(text.encode("utf-8", "surrogateescape"))


def _err(text: str) -> None:
    sys.stderr.buffer.write(text.encode("utf-8", "backslashreplace"))
    sys.stderr.flush()


# ------------------------------------------------------------------ settings


def _settings(args: "argparse.Namespace", require_source: bool = False) -> "Settings":
    """The settings and source of every program (authkit.config.load_settings:
    --config, the AUTHKIT_* variables, the config file, Courier's defaults),
    with --userdb chosen on top.  Only ``test`` and ``enumerate`` need a
    source (``require_source``)."""
    from ..config import load_settings

    userdb = getattr(args, "sub_userdb", None) or args.userdb
    return load_settings(args.config, userdb=userdb, require_source=require_source)


def _userdb_path(args: "argparse.Namespace") -> str:
    """The text userdb of ``userdb``, ``makeuserdb`` and ``check``: the chosen
    source's when it is a userdb (--userdb first), else the config's
    ``userdb``, else Courier's /etc/courier/userdb."""
    return _settings(args).userdb or DEFAULT_USERDB


def _source(settings: "Settings") -> "AccountSource":
    """The account source of ``test``/``enumerate`` (a userdb or authdaemond)."""
    from ..config import open_source

    return open_source(settings)


# ------------------------------------------------------------------ userdb


def _read_value(name: str, field: str) -> str:
    """A field value from stdin (Courier's ``userdb NAME set FIELD``): prompted
    for on a terminal (without echo for ``...pw`` fields), else one line."""
    if sys.stdin.isatty():
        prompt = f"{name}.{field}: "
        if field.endswith("pw"):
            import getpass

            return getpass.getpass(prompt)
        _err(prompt)
        line = sys.stdin.readline()
    else:
        line = sys.stdin.buffer.readline().decode("utf-8", "surrogateescape")
    if not line:
        raise Misuse(f"no value for {field} on standard input")
    return line[:-1] if line.endswith("\n") else line


def _split_target(root: str, target: str) -> tuple[str, str | None]:
    """``[path/]NAME`` -> (NAME, file path or None), Courier's rule: the part
    before the last ``/`` is a file under a userdb directory."""
    directory, slash, name = target.rpartition("/")
    if not slash:
        return target, None
    if not name:
        raise Misuse(f"no account name in {target!r}")
    if not os.path.isdir(root):
        raise Misuse(f"{target!r} names a file of a userdb directory, but {root} is not a directory")
    parts = directory.split("/")
    if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        raise Misuse(f"bad userdb file name {directory!r}")
    return name, os.path.join(root, directory)


def cmd_userdb(args: "argparse.Namespace") -> int:
    root = _userdb_path(args)
    words = list(args.words)
    if not words:
        raise Misuse("usage: authkit userdb NAME set|unset|del ... | authkit userdb show [NAME]")
    if words[0] == "show" and (len(words) == 1 or words[1] not in ("set", "unset", "del")):
        if len(words) > 2:
            raise Misuse("usage: authkit userdb show [NAME]")
        return _show(root, words[1] if len(words) == 2 else None)
    if len(words) < 2:
        raise Misuse("usage: authkit userdb NAME set|unset|del ...")
    target, verb, items = words[0], words[1], words[2:]
    from ..userdb.text import FORBIDDEN_IN_VALUES, is_account_name

    for item in items:
        if FORBIDDEN_IN_VALUES.intersection(item):
            raise Misuse("Invalid field or value.")
    name, file_path = _split_target(root, target)
    if not is_account_name(name):
        raise Misuse("Invalid account name.")
    from ..userdb import edit

    if verb == "set":
        if not items:
            raise Misuse("usage: authkit userdb NAME set FIELD[=VALUE]...")
        pairs = []
        for item in items:
            field, eq, value = item.partition("=")
            if not eq:
                value = _read_value(name, field)
                if FORBIDDEN_IN_VALUES.intersection(value):
                    raise Misuse("Invalid value.")
            _check_field(field)
            pairs.append((field, value))
        found = edit.locate(root, name) if os.path.exists(root) else None
        if found is not None:
            if file_path is not None and os.path.abspath(found[0]) != os.path.abspath(file_path):
                raise Misuse(f"account {name!r} is in {found[0]}, not {file_path}")
            _edit(edit.update_record, root, name, pairs)
        else:
            if file_path is None and os.path.isdir(root):
                raise Misuse(f"{root} is a directory: name the file, as in "
                             f"'authkit userdb example.com/{name} set ...'")
            _edit(edit.add_record, root, name, pairs, file_path)
        return 0
    if verb == "unset":
        if not items:
            raise Misuse("usage: authkit userdb NAME unset FIELD...")
        for field in items:
            _check_field(field)
        _edit(edit.update_record, root, name, (), items)
        return 0
    if verb == "del":
        if items:
            raise Misuse("usage: authkit userdb NAME del")
        edit.delete_record(root, name)
        return 0
    raise Misuse(f"unknown userdb action {verb!r} (set, unset, del, or 'userdb show [NAME]')")


def _check_field(field: str) -> None:
    from ..userdb.text import check_field_name

    try:
        check_field_name(field)
    except ValueError:
        raise Misuse("Invalid field or value.") from None


def _edit(function: object, *call_args: object) -> None:
    """Call an edit function, mapping its ValueError to Misuse."""
    try:
        function(*call_args)  # type: ignore[operator]
    except ValueError as exc:
        raise Misuse(str(exc)) from None


def _show(root: str, target: str | None) -> int:
    """``userdb -show``: every name (one a line) or one record's fields (one a line)."""
    from ..userdb import files
    from ..userdb.text import decode, encode

    if target is None:
        for _path, _loc, _lineno, name, _fields in files.iter_lines(root):
            _out(name + "\n")
        return 0
    from ..userdb.find import find_line, find_record

    name, file_path = _split_target(root, target)
    key = encode(name)
    if file_path and not os.path.isfile(file_path):
        raise TemporaryFailure(f"cannot read userdb {file_path}: No such file or directory")
    found = find_line(file_path, key) if file_path else find_record(root, key)
    if found is not None:
        fields = decode(found[-1])
        _out("".join(item + "\n" for item in fields.split("|") if item))
        return 0
    raise UnknownUser(f"no account {name!r} in {root}")


# ------------------------------------------------------------------ pw


def _read_new_password() -> bytes:
    """userdbpw's dialogue: on a terminal ``Password:`` and ``Reenter password:``
    without echo; otherwise one line of stdin."""
    if sys.stdin.isatty():
        import getpass

        first = getpass.getpass("Password: ")
        second = getpass.getpass("Reenter password: ")
        if first != second:
            raise Rejected("Passwords don't match.")
        password = first.encode("utf-8", "surrogateescape")
    else:
        line = sys.stdin.buffer.readline()
        password = line[:-1] if line.endswith(b"\n") else line
    if not password:
        raise Misuse("empty password")
    return password


def cmd_pw(args: "argparse.Namespace") -> int:
    scheme = args.scheme or _settings(args).hash_scheme
    password = _read_new_password()
    if scheme.lower() in HMAC_SCHEMES:
        from ..schemes.hmacstate import hmac_state

        value = hmac_state(password, scheme.lower()[5:])
    else:
        from ..schemes import make_password_hash

        try:
            value = make_password_hash(password, scheme)
        except ValueError as exc:
            raise Misuse(str(exc)) from None
    _out(value + "\n")
    return 0


# ------------------------------------------------------------------ makeuserdb


class _ProgressBar:
    """A one-line progress bar on stderr (only used when stderr is a terminal)."""

    def __init__(self) -> None:
        self.shown = False

    def __call__(self, done: int, total: int, records: int) -> None:
        fraction = done / total if total else 1.0
        width = 30
        filled = int(fraction * width)
        bar = "#" * filled + "." * (width - filled)
        _err(f"\rmakeuserdb: [{bar}] {fraction * 100:5.1f}%  {records:,} accounts")
        self.shown = True

    def end(self) -> None:
        if self.shown:
            _err("\n")


def cmd_makeuserdb(args: "argparse.Namespace") -> int:
    from ..userdb.compile import compile_userdb

    root = _userdb_path(args)
    bar = _ProgressBar() if sys.stderr.isatty() and not args.quiet else None
    try:
        result = compile_userdb(root, progress=bar, parallel=not args.single_process)
    finally:
        if bar is not None:
            bar.end()
    if args.verbose:
        _err(f"makeuserdb: {result.records} accounts ({result.shadow_records} with passwords) "
             f"in {result.seconds:.2f} s\n")
    return 0


# ------------------------------------------------------------------ test / enumerate


def _none(value: object) -> str:
    return str(value) if value not in (None, "") else "(none)"


def cmd_test(args: "argparse.Namespace") -> int:
    """authtest: lookup (NAME), login (NAME PASSWORD) or change (NAME OLD NEW)."""
    service = args.service
    settings = _settings(args, require_source=True)
    source = _source(settings)
    try:
        try:
            if args.newpassword is not None:
                _change(source, args.name, _b(args.password), _b(args.newpassword), service, settings)
                _err("Password change succeeded.\n")
                return 0
            if args.password is not None:
                account = source.authenticate(args.name, _b(args.password), service)
            else:
                account = source.lookup(args.name, service)
        except Rejected as exc:
            _err(f"Authentication FAILED: {_reason(exc)}\n")
            return 1
    finally:
        source.close()
    _out("Authentication succeeded.\n\n"
         f"     Authenticated: {account.address}  (uid {account.uid}, gid {account.gid})\n"
         f"    Home Directory: {_none(account.home)}\n"
         f"           Maildir: {_none(account.maildir)}\n"
         f"             Quota: {_none(account.quota)}\n"
         f"Encrypted Password: {_none(account.encrypted_password)}\n"
         f"Cleartext Password: {_none(args.password)}\n"
         f"           Options: {_none(account.options)}\n")
    return 0


def _change(source: "AccountSource", name: str, old: bytes, new: bytes, service: str,
            settings: "Settings") -> None:
    """A password change under the policy courierpassd and ``courierpasswd -c``
    apply (authkit.policy): the new password first, then the old one, then the
    uid.  Raises ``Rejected`` (``PolicyRefused`` for the policy) or
    ``TemporaryFailure``."""
    from ..policy import check_new_password, check_uid

    check_new_password(old, new, settings)
    check_uid(source.authenticate(name, old, service), settings)
    source.change_password(name, old, new, service)


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _reason(exc: Rejected) -> str:
    from ..errors import BadPassword, PolicyRefused

    if isinstance(exc, UnknownUser):
        return "unknown user"
    if isinstance(exc, PolicyRefused):
        return f"refused: {exc}"
    if isinstance(exc, BadPassword):
        return "password mismatch"
    return "rejected"


def cmd_enumerate(args: "argparse.Namespace") -> int:
    """authenumerate: ``name uid gid home maildir [options]``, tab-separated;
    entries with uid 0 or gid 0 dropped; ``-s`` drops ``disableshared`` ones."""
    source = _source(_settings(args, require_source=True))
    write = sys.stdout.buffer.write
    try:
        for account in source.enumerate():
            if account.uid == 0 or account.gid == 0:
                continue
            if args.skip_disabled:
                flag = account.option("disableshared")
                if flag is not None and _atoi(flag):
                    continue
            line = f"{account.address}\t{account.uid}\t{account.gid}\t{account.home}\t{account.maildir}"
            if args.options:
                line += "\t" + account.options
            write(_b(line + "\n"))
    finally:
        source.close()
    return 0


def _atoi(text: str) -> int:
    digits = ""
    for ch in text.strip():
        if not ch.isdigit():
            break
        digits += ch
    return int(digits) if digits else 0


# ------------------------------------------------------------------ check


def cmd_check(args: "argparse.Namespace") -> int:
    """Report every problem as ``file:line: what``; exit 1 if any."""
    from ..userdb.compile import check_text, verify_compiled

    root = _userdb_path(args)
    problems = 0
    for message in check_text(root):
        _err(message + "\n")
        problems += 1
    from ..userdb.journal import pending

    for marker in pending(root):
        _err(f"{marker}: an interrupted authkit change is pending (the next change or makeuserdb "
             "finishes or undoes it, or says why it cannot)\n")
        problems += 1
    if args.compiled:
        for message in verify_compiled(root):
            _err(message + "\n")
            problems += 1
    return 1 if problems else 0


# ------------------------------------------------------------------ main


def build_parser() -> "argparse.ArgumentParser":
    """The argument parser (kept apart so docs and tests can render it)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog=PROG, description="Manage a Courier userdb and test Courier-compatible authentication.")
    parser.add_argument("--config", metavar="FILE", help="authkit configuration file")
    parser.add_argument("--userdb", metavar="PATH",
                        help="the text userdb (file or directory; default: the configuration's, "
                             "else /etc/courier/userdb)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("userdb", help="edit or show userdb records (Courier's userdb)",
                       usage="authkit userdb [--userdb PATH] [PATH/]NAME set FIELD[=VALUE]...\n"
                             "       authkit userdb [--userdb PATH] [PATH/]NAME unset FIELD...\n"
                             "       authkit userdb [--userdb PATH] [PATH/]NAME del\n"
                             "       authkit userdb [--userdb PATH] show [[PATH/]NAME]",
                       description="A FIELD given without =VALUE reads its value from standard "
                                   "input (prompted on a terminal, without echo for ...pw fields). "
                                   "'|' and newlines are refused in fields and values.")
    p.add_argument("--userdb", dest="sub_userdb", metavar="PATH", help=argparse.SUPPRESS)
    p.add_argument("words", nargs=argparse.REMAINDER, help="NAME ACTION FIELDS... or show [NAME]")
    p.set_defaults(func=cmd_userdb)

    p = sub.add_parser("pw", help="print a password hash or HMAC secret (Courier's userdbpw)",
                       description="Reads the password twice without echo on a terminal, "
                                   "else one line of standard input; prints the value to store.")
    from ..schemes import SCHEMES

    p.add_argument("--scheme", metavar="S", choices=[*SCHEMES, *HMAC_SCHEMES],
                   type=lambda s: next((c for c in (*SCHEMES, *HMAC_SCHEMES) if c.lower() == s.lower()), s),
                   help="one of: " + ", ".join((*SCHEMES, *HMAC_SCHEMES))
                        + " (default: hash_scheme of the configuration, sha512-crypt)")
    p.set_defaults(func=cmd_pw)

    p = sub.add_parser("makeuserdb", help="compile userdb.dat and userdbshadow.dat (Courier's makeuserdb)")
    p.add_argument("--userdb", dest="sub_userdb", metavar="PATH", help="the text userdb to compile")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar even on a terminal")
    p.add_argument("-v", "--verbose", action="store_true", help="print counts and time on stderr")
    p.add_argument("--single-process", action="store_true",
                   help="write both files from one process (default: two)")
    p.set_defaults(func=cmd_makeuserdb)

    p = sub.add_parser("test", help="look up, log in or change a password (Courier's authtest)")
    p.add_argument("-s", dest="service", default="login", metavar="SERVICE",
                   help="service name (default: login)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("password", metavar="PASSWORD", nargs="?")
    p.add_argument("newpassword", metavar="NEWPASSWORD", nargs="?")
    p.set_defaults(func=cmd_test)

    p = sub.add_parser("enumerate", help="list accounts (Courier's authenumerate)")
    p.add_argument("-o", dest="options", action="store_true", help="add the options column")
    p.add_argument("-s", dest="skip_disabled", action="store_true",
                   help="skip accounts with the disableshared option")
    p.set_defaults(func=cmd_enumerate)

    p = sub.add_parser("check", help="report malformed lines, duplicates and incomplete records")
    p.add_argument("--userdb", dest="sub_userdb", metavar="PATH", help="the text userdb to check")
    p.add_argument("--compiled", action="store_true",
                   help="also check that userdb.dat/userdbshadow.dat agree with the text")
    p.set_defaults(func=cmd_check)
    return parser


def main(argv: "Sequence[str] | None" = None) -> int:
    """Run ``authkit``; returns the exit status (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except AuthError as exc:
        from ..printable import printable

        _err(f"{PROG}: {printable(str(exc))}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        _err(f"{PROG}: interrupted\n")
        return 130
    except OSError as exc:
        _err(f"{PROG}: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "") + "\n")
        return TemporaryFailure.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
