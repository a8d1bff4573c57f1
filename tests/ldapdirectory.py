"""The test directory shared by tests/integration/test_ldap_*.py and bench_ldap.

* :data:`ACCOUNTS`: one CourierMailAccount per stored-password format (each
  hash made by the real tool, see :func:`slapdlab.hash_password`), plus entries
  with a clear password, both kinds, none, options and quota, several mail
  values, no uid (so uid 0), and names holding filter metacharacters;
* :func:`people`: the :class:`slapdlab.Person` entries for them;
* :func:`authldaprc`: Courier's authldaprc text for a slapd lab, and
  :func:`authkit_conf` the same settings as authkit.conf ``ldap_*`` keys, so that
  Courier's authdaemond (authmodulelist="authldap") and authkit read one directory
  the same way;
* :func:`populated_slapd`: a module fixture's slapd holding :func:`people`;
* :func:`start_courier_authldap`: write authldaprc into a CourierLab's etc (its
  /etc/courier) and start authdaemond with only authldap.
"""

from __future__ import annotations

import os
from pathlib import Path

from slapdlab import PEOPLE, ROOT_DN, ROOT_PW, Person, hash_password

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterator

DOMAIN = "example.com"

#: uid -> (stored scheme for userPassword or None, password)
FORMATS = {
    "ssha": ("SSHA", "Ssha-Pass-1"),
    "sha": ("SHA", "Sha-Pass-1"),
    "md5": ("MD5", "Md5-Pass-1"),
    "smd5": ("SMD5", "Smd5-Pass-1"),
    "sha256": ("SHA256", "Sha256-Pass-1"),
    "sha512": ("SHA512", "Sha512-Pass-1"),
    "crypt6": ("sha512-crypt", "Crypt6-Pass-1"),
    "crypt5": ("sha256-crypt", "Crypt5-Pass-1"),
    "crypt1": ("md5-crypt", "Crypt1-Pass-1"),
    "yescrypt": ("yescrypt", "Yescrypt-Pass-1"),
    "bcrypt": ("bcrypt", "Bcrypt-Pass-1"),
    "des": ("des-crypt", "DesPass1"),
}

#: Logins with their right password, and what each tests.
PASSWORDS = {f"{uid}@{DOMAIN}": pw for uid, (_s, pw) in FORMATS.items()}
PASSWORDS.update({
    f"clear@{DOMAIN}": "Clear-Pass-1",         # clearPassword only
    f"both@{DOMAIN}": "Both-Clear-1",          # clear wins over userPassword
    f"multi@{DOMAIN}": "Multi-Pass-1",         # two mail values
    f"alias@{DOMAIN}": "Multi-Pass-1",
    f"rich@{DOMAIN}": "Rich-Pass-1",           # options, quota, cn with comma
    f"star*@{DOMAIN}": "Star-Pass-1",          # filter metacharacters
    f"paren(x)@{DOMAIN}": "Paren-Pass-1",
    f"back\\slash@{DOMAIN}": "Back-Pass-1",
    f"jurgen@{DOMAIN}": "Jurgen-Pass-1",       # description holds a non-ASCII name
})
NO_PASSWORD = f"nopw@{DOMAIN}"
ZERO_UID = f"zero@{DOMAIN}"  # no uidNumber and no global uid: uid 0


def people() -> "list[Person]":
    """The entries of the test directory (hashes made fresh by the real tools)."""
    out = []
    n = 0

    def person(uid: str, mail: "str | list[str]", **attrs: "str | list[str]") -> Person:
        nonlocal n
        n += 1
        attrs.setdefault("uidNumber", str(5000 + n))
        attrs.setdefault("gidNumber", str(6000 + n))
        attrs.setdefault("cn", f"User {uid}")
        attrs.setdefault("mailbox", f"/home/vmail/{uid}/Maildir")
        return Person(uid, mail, f"/home/vmail/{uid}", **attrs)

    for uid, (scheme, password) in FORMATS.items():
        out.append(person(uid, f"{uid}@{DOMAIN}", userPassword=hash_password(password, scheme)))
    out.append(person("clear", f"clear@{DOMAIN}", clearPassword="Clear-Pass-1"))
    out.append(person("both", f"both@{DOMAIN}", clearPassword="Both-Clear-1",
                      userPassword=hash_password("Both-Crypt-1", "SSHA")))
    out.append(person("multi", [f"multi@{DOMAIN}", f"alias@{DOMAIN}"],
                      userPassword=hash_password("Multi-Pass-1", "SSHA")))
    out.append(person("rich", f"rich@{DOMAIN}", userPassword=hash_password("Rich-Pass-1", "SSHA"),
                      quota="1000000S", disableimap="0", disablepop3="1", sharedgroup="staff",
                      defaultdelivery="| /usr/bin/maildrop", cn="Rich User, Room 42"))
    out.append(person("star", f"star*@{DOMAIN}", userPassword=hash_password("Star-Pass-1", "SSHA")))
    out.append(person("paren", f"paren(x)@{DOMAIN}", userPassword=hash_password("Paren-Pass-1", "SSHA")))
    out.append(person("back", f"back\\slash@{DOMAIN}", userPassword=hash_password("Back-Pass-1", "SSHA")))
    out.append(person("jurgen", f"jurgen@{DOMAIN}", description=f"j\u00fcrgen@{DOMAIN}",
                      userPassword=hash_password("Jurgen-Pass-1", "SSHA")))
    out.append(person("nopw", NO_PASSWORD))
    zero = person("zero", ZERO_UID, userPassword=hash_password("Zero-Pass-1", "SSHA"))
    del zero.attrs["uidNumber"]
    out.append(zero)
    return out


#: authldaprc key -> value, for both Courier and authkit (authkit key: lower case).
def settings(uris: "list[str]", *, authbind: bool = False, tls: bool = False,
             binddn: bool = True, **extra: str) -> "dict[str, str]":
    values = {
        "LDAP_URI": ", ".join(uris),
        "LDAP_BASEDN": PEOPLE,
        "LDAP_TIMEOUT": "5",
        "LDAP_MAIL": "mail",
        "LDAP_FILTER": "(objectClass=CourierMailAccount)",
        "LDAP_HOMEDIR": "homeDirectory",
        "LDAP_MAILDIR": "mailbox",
        "LDAP_DEFAULTDELIVERY": "defaultdelivery",
        "LDAP_FULLNAME": "cn",
        "LDAP_CLEARPW": "clearPassword",
        "LDAP_CRYPTPW": "userPassword",
        "LDAP_UID": "uidNumber",
        "LDAP_GID": "gidNumber",
        "LDAP_MAILDIRQUOTA": "quota",
        "LDAP_AUXOPTIONS": "disableimap=disableimap,disablepop3=disablepop3,sharedgroup=sharedgroup",
        "LDAP_AUTHBIND": "1" if authbind else "0",
        "LDAP_TLS": "1" if tls else "0",
        "LDAP_DEREF": "never",
    }
    if binddn:
        values.update({"LDAP_BINDDN": ROOT_DN, "LDAP_BINDPW": ROOT_PW})
    values.update(extra)
    return values


def authldaprc(values: "dict[str, str]") -> str:
    """Courier's authldaprc for ``values`` (LDAP_INITBIND=1 when a bind DN is set),
    ending with the ``##NAME: MARKER:0`` line Courier's parser requires."""
    lines = [f"{key}\t{value}" for key, value in values.items()
             if not key.startswith("LDAP_TLS_CACERT")]
    if "LDAP_BINDDN" in values:
        lines.append("LDAP_INITBIND\t1")
    lines.append("LDAP_PROTOCOL_VERSION\t3")  # authkit speaks v3 only; slapd refuses v2 binds
    lines.append("##NAME: MARKER:0")
    return "\n".join(lines) + "\n"


def authkit_conf(values: "dict[str, str]", **more: str) -> str:
    """The same settings as authkit.conf (``source = ldap`` and ``ldap_*``)."""
    lines = ["source = ldap"]
    lines += [f"{key.lower()} = {value}" for key, value in values.items()]
    lines += [f"{key} = {value}" for key, value in more.items()]
    return "\n".join(lines) + "\n"


def start_courier_authldap(lab: object, values: "dict[str, str]", env: "dict[str, str] | None" = None) -> None:
    """Write ``values`` as the lab's authldaprc (its /etc/courier/authldaprc) and
    start authdaemond with authmodulelist="authldap".  ``env`` adds variables to
    authdaemonrc (exported to the daemon, e.g. LDAPTLS_CACERT)."""
    rc = Path(lab.etc_dir) / "authldaprc"  # type: ignore[attr-defined]
    rc.write_text(authldaprc(values))
    os.chmod(rc, 0o640)
    lab.write_authdaemonrc(authmodulelist="authldap", **(env or {}))  # type: ignore[attr-defined]
    lab.start_daemon()  # type: ignore[attr-defined]


def populated_slapd(tmp_path_factory: object) -> "Iterator[object]":
    """The body of a module-scoped pytest fixture: a started
    :class:`slapdlab.SlapdLab` holding :func:`people`, closed afterwards; the
    test is skipped when slapd is missing.  Use as
    ``yield from ldapdirectory.populated_slapd(tmp_path_factory)``."""
    import pytest
    import slapdlab

    reasons = slapdlab.missing_requirements()
    if reasons:
        pytest.skip("slapd lab unavailable: " + "; ".join(reasons))
    lab = slapdlab.SlapdLab(tmp_path_factory.mktemp("slapd"))  # type: ignore[attr-defined]
    try:
        lab.start()
        lab.populate(people())
        yield lab
    finally:
        lab.close()
