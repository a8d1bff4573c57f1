"""The Courier userdb as an account source.

:class:`UserdbSource` answers from the compiled pair ``<userdb>.dat`` +
``<userdb>shadow.dat`` when ``<userdb>.dat`` exists (that is what Courier's
authdaemond reads, so authkit gives the same answers), else from the text userdb
(a file or a directory).  Password fields live only in the shadow file of a compiled
userdb; a missing shadow file means no password, as in Courier.

Lookups are exact and case-sensitive.  A refused password check (unknown user,
wrong password, no password, wrong CRAM response) costs one dummy hash
verification when there was nothing to verify, and then lasts at least
``refusal_floor`` seconds from its start (authkit.policy.wait_out_refusal), so
that an unknown user and a wrong password take the same time whatever the
stored schemes cost (issue 17: before, an unknown user cost a sha512-crypt and
a wrong password the stored scheme, from DES at 0.01 ms to bcrypt at 70 ms).

Password changes are decided here (old password, policy, which fields change)
and written by :mod:`authkit.userdb.edit` inside its locked change (lock,
rewrite, rename, then bring the compiled pair up to date); edit knows nothing of
this module.
"""

from __future__ import annotations

import os
from time import monotonic

from ..errors import BadPassword, Misuse, Rejected, TemporaryFailure, UnknownUser
from ..policy import REFUSAL_FLOOR, wait_out_refusal
from ..source import AccountSource
from . import compiled_paths
from .text import (
    InvalidRecord,
    decode,
    encode,
    first_values,
    is_account_name,
    make_account,
    parse_fields,
    split_compiled,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Iterator

    from ..account import Account

# A sha512-crypt hash of a random password nobody knows, verified when the user is
# unknown or has no password, so that those cases cost what a wrong password costs.
_DUMMY_HASH = (
    "$6$/XfRdOoB2XQcs.Z4$WzK5NOZnDSS12k.9rBnD2VEOV8bNW1IpC/AzyoaMiwev4LE8/"
    "ub6aoom4sWK6OLYKcXqf3ehwZazaJifjf46E."
)


def dummy_verify(password: bytes) -> None:
    """Spend the time of one sha512-crypt verification and throw the result away."""
    from ..schemes import verify_password

    verify_password(password or b"x", _DUMMY_HASH)


class UserdbSource(AccountSource):
    """Accounts from a Courier userdb.

    Args:
        path: the text userdb (file or directory), e.g. ``/etc/courier/userdb``.
            The compiled pair is looked for at ``<path>.dat`` and
            ``<path>shadow.dat``; either may exist without the text.
        default_options: Courier's DEFAULTOPTIONS, merged into ``options`` the way
            authdaemond does ("" for none).
        hash_scheme: the scheme of new hashes written by :meth:`change_password`.
        on_problem: called as ``on_problem(path, lineno, message)`` for each
            malformed line met while reading text; it never receives a secret.
        refusal_floor: seconds a refused password check lasts at least
            (authkit.policy.REFUSAL_FLOOR by default; 0: no floor).
    """

    def __init__(
        self,
        path: str,
        *,
        default_options: str = "",
        hash_scheme: str = "sha512-crypt",
        on_problem: "Callable[[str, int, str], None] | None" = None,
        refusal_floor: float | None = None,
    ) -> None:
        self.path = path
        self.dat_path, self.shadow_path = compiled_paths(path)
        self.default_options = default_options
        self.hash_scheme = hash_scheme
        self.on_problem = on_problem
        self.refusal_floor = REFUSAL_FLOOR if refusal_floor is None else refusal_floor
        self.description = f"userdb {path}"

    # -- reading ---------------------------------------------------------------

    def uses_compiled(self) -> bool:
        """True when answers come from ``<path>.dat`` (it exists)."""
        return os.path.exists(self.dat_path)

    def _compiled_record(self, name: str) -> tuple[str, str | None] | None:
        from . import gdbm

        key = encode(name)
        try:
            with gdbm.open_reader(self.dat_path) as db:
                main = db.get(key)
        except FileNotFoundError:
            return None
        if main is None:
            return None
        shadow = None
        try:
            with gdbm.open_reader(self.shadow_path) as db:
                shadow = db.get(key)
        except FileNotFoundError:
            shadow = None
        return decode(main), (None if shadow is None else decode(shadow))

    def _text_record(self, name: str) -> tuple[str, str | None] | None:
        # only for a text userdb: logins on the compiled pair skip the text modules
        from .find import find_record

        found = find_record(self.path, encode(name))  # streamed: memory flat in the file's size
        if found is None:
            return None
        return split_compiled(decode(found[4]), found[1])

    def record(self, name: str) -> tuple[str, str | None] | None:
        """The raw ``(main, shadow)`` field strings of ``name`` as Courier's compiled
        files hold them (computed from the text when there are none), or None
        (also for a name :func:`~authkit.userdb.text.is_account_name` refuses)."""
        if not is_account_name(name):
            return None
        if self.uses_compiled():
            return self._compiled_record(name)
        return self._text_record(name)

    def _account(self, name: str, service: str) -> "Account":
        found = self.record(name)
        if found is None:
            raise UnknownUser(f"no such user in {self.description}")
        main, shadow = found
        values = first_values(parse_fields(main))
        passwords = first_values(parse_fields(shadow)) if shadow else {}
        try:
            return make_account(name, values, passwords, service, self.default_options)
        except InvalidRecord as exc:
            if self.on_problem is not None:
                self.on_problem(self.path, 0, f"account {name!r}: {exc}")
            raise UnknownUser(f"no usable record in {self.description}") from None

    def lookup(self, name: str, service: str = "login") -> "Account":
        return self._account(name, service)

    def authenticate(self, name: str, password: bytes, service: str = "login") -> "Account":
        started = monotonic()
        try:
            return self._check_password(name, password, service)
        except (UnknownUser, BadPassword):
            wait_out_refusal(started, self.refusal_floor)
            raise

    def _check_password(self, name: str, password: bytes, service: str) -> "Account":
        """:meth:`authenticate` without the refusal floor (a change checks the
        old password under its locks and waits out a refusal after releasing
        them)."""
        from ..schemes import verify_password

        try:
            account = self._account(name, service)
        except UnknownUser:
            dummy_verify(password)
            raise
        stored = account.password_for(service)
        if not password or not stored:
            dummy_verify(password)
            raise BadPassword("no password for this service" if not stored else "empty password")
        if not verify_password(password, stored):
            raise BadPassword("password mismatch")
        return account

    def authenticate_cram(
        self, challenge: bytes, name: str, response_hex: str, algorithm: str, service: str = "login"
    ) -> "Account":
        from ..account import CRAM_ALGORITHMS

        if algorithm not in CRAM_ALGORITHMS:
            raise Misuse(f"unknown CRAM algorithm {algorithm!r} (md5, sha1, sha256)")
        from ..schemes.hmacstate import verify_cram

        started = monotonic()
        try:
            account = self._account(name, service)
        except UnknownUser:
            wait_out_refusal(started, self.refusal_floor)
            raise
        secret = account.hmac_secret_for(service, algorithm)
        if not secret or not verify_cram(secret, algorithm, challenge, response_hex):
            wait_out_refusal(started, self.refusal_floor)
            raise BadPassword("CRAM response mismatch")
        return account

    def enumerate(self) -> "Iterator[Account]":
        if self.uses_compiled():
            yield from self._enumerate_compiled()
            return
        from . import files

        seen: set[str] = set()
        for path, location, lineno, name, fields in files.iter_lines(self.path, self.on_problem):
            if name in seen:
                if self.on_problem is not None:
                    self.on_problem(path, lineno, f"duplicate account {name!r} ignored")
                continue
            seen.add(name)
            main, shadow = split_compiled(fields, location)
            values = first_values(parse_fields(main))
            passwords = first_values(parse_fields(shadow)) if shadow else {}
            try:
                yield make_account(name, values, passwords, "login", self.default_options)
            except InvalidRecord as exc:
                if self.on_problem is not None:
                    self.on_problem(path, lineno, f"account {name!r}: {exc}")

    def _enumerate_compiled(self) -> "Iterator[Account]":
        from . import gdbm

        try:
            db = gdbm.open_reader(self.dat_path)
        except FileNotFoundError:
            raise TemporaryFailure(f"cannot read {self.dat_path}: file vanished") from None
        with db:
            for key in db.keys():
                value = db.get(key)
                if value is None:
                    continue
                values = first_values(parse_fields(decode(value)))
                try:
                    yield make_account(decode(key), values, {}, "login", self.default_options)
                except InvalidRecord:
                    continue  # Courier's ENUMERATE skips records without home/uid/gid

    # -- writing ---------------------------------------------------------------

    def change_password(
        self, name: str, old: bytes, new: bytes, service: str = "login",
        *, check_account: "Callable[[Account], None] | None" = None,
    ) -> "Account":
        """Courier's PASSWD for a userdb (authuserdbpwd.c), decided inside the one
        locked change (:func:`authkit.userdb.edit.update_record`): ``old`` is
        verified there, once, against the account as Courier sees it;
        ``check_account(account)``, if given, is then called with that account
        (e.g. the uid policy, :func:`authkit.policy.check_uid`) and may raise to
        refuse.  The field :meth:`Account.password_field_for` names (the one
        ``old`` was checked against) gets a new hash in ``hash_scheme``, and each
        ``[<service>-]hmac-<alg>pw`` field that held the state of ``old`` gets the
        state of ``new``.

        Stricter than Courier: the old password must match the password for the
        service (Courier also accepts a match of an HMAC field alone and then
        changes only that field).  Raises ``UnknownUser``, ``BadPassword``,
        ``PolicyRefused`` or ``TemporaryFailure``; nothing is written unless
        everything checks out."""
        from ..account import CRAM_ALGORITHMS
        from ..errors import PolicyRefused
        from ..schemes import make_password_hash
        from ..schemes.hmacstate import hmac_state
        from .edit import update_record

        if not new or b"\0" in new or b"\n" in new or b"\r" in new:
            raise PolicyRefused("the new password holds bytes that cannot be stored")

        def decide(_values: dict[str, str]) -> "list[tuple[str, str]]":
            # Under the locks, after the compiled record was made to agree with
            # the text: the old password is checked as Courier sees the account.
            account = self._check_password(name, old, service)  # UnknownUser / BadPassword
            if check_account is not None:
                check_account(account)
            field = account.password_field_for(service)
            if field is None:
                raise BadPassword("the record has no password field for this service")
            changes = [(field, make_password_hash(new, self.hash_scheme))]
            for algorithm in CRAM_ALGORITHMS:
                old_state = None
                for hmac_field in (f"{service}-hmac-{algorithm}pw", f"hmac-{algorithm}pw"):
                    stored = account.passwords.get(hmac_field)
                    if stored is not None:
                        if old_state is None:
                            old_state = hmac_state(old, algorithm)
                        if stored == old_state:
                            changes.append((hmac_field, hmac_state(new, algorithm)))
            return changes

        started = monotonic()
        try:
            update_record(self.path, name, check=decide)
        except Rejected:  # unknown, wrong old password, or refused by check_account
            wait_out_refusal(started, self.refusal_floor)  # (after the locks are released)
            raise
        return self._account(name, service)


__all__ = ["UserdbSource", "dummy_verify"]
