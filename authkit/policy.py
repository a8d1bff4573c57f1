"""Password-change policy shared by courierpassd, ``courierpasswd -c`` and
``authkit test``: what a new password must satisfy before any source is asked.

Courier itself checks none of this; poppassd running as root under PAM checks
nothing either (poppassd.md section 2.1), so authkit enforces it here.
"""

from __future__ import annotations

from .errors import PolicyRefused

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .account import Account
    from .config import Settings


def check_new_password(old: bytes, new: bytes, settings: "Settings") -> None:
    """Raise ``PolicyRefused`` (with a message safe to show the user) unless
    ``new`` is at least ``min_password_length`` and at most
    ``max_password_length`` bytes, differs from ``old`` and holds no control
    byte (which the poppassd dialogue and the userdb could not carry)."""
    if len(new) < settings.min_password_length:
        raise PolicyRefused(f"New password too short (min {settings.min_password_length})")
    if len(new) > settings.max_password_length:
        raise PolicyRefused(f"New password too long (max {settings.max_password_length})")
    if new == old:
        raise PolicyRefused("New password must differ from the old one")
    if any(byte < 0x20 or byte == 0x7F for byte in new):
        raise PolicyRefused("New password holds control characters")


def check_uid(account: "Account", settings: "Settings") -> None:
    """Raise ``PolicyRefused`` when the account's uid is below ``min_uid``
    (system accounts are never changed through authkit).  A change hands it to
    the source as ``check_account=lambda account: check_uid(account, settings)``
    (see ``AccountSource.change_password``) rather than authenticating first."""
    if account.uid < settings.min_uid:
        raise PolicyRefused("account uid below the minimum")


#: Seconds a refused password check takes at least (the ``refusal_floor``
#: setting's default).  Above the costliest verification of the shipped schemes
#: (bcrypt cost 10: 65-80 ms here, yescrypt: 20-60 ms) with room for a loaded machine.
REFUSAL_FLOOR = 0.25


def wait_out_refusal(started: float, floor: float) -> None:
    """Sleep until ``floor`` seconds have passed since ``started`` (a
    ``time.monotonic()`` value taken before the account was looked up), so that
    a refusal costs the same whether the user is unknown, the password wrong
    (whatever the stored scheme costs, up to ``floor``), or the account refused
    by policy after a right password.  Successes are never delayed."""
    import time

    left = started + floor - time.monotonic()
    if left > 0:
        time.sleep(left)


__all__ = ["REFUSAL_FLOOR", "check_new_password", "check_uid", "wait_out_refusal"]
