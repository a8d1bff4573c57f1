"""The userdb source against fixtures made by Courier's own tools, and against
Courier's own authdaemond reading the same files (issue: core library).

Every password format of courier-authlib.md section 3 is made by the tool that makes
it in the field (userdbpw, authpasswd, mkpasswd), stored with Courier's ``userdb``
script, compiled with Courier's ``makeuserdb``, then checked through authkit's
text reader, its compiled reader alone, and a userdb directory, and compared with
the verdict of Courier's authdaemond on the very same files."""

from __future__ import annotations

import hmac as std_hmac
import os
import shutil
import subprocess

import pytest

from authkit.errors import BadPassword, TemporaryFailure, UnknownUser
from authkit.userdb.source import UserdbSource

pytestmark = pytest.mark.integration

AUTHPASSWD = "/usr/sbin/authpasswd"


def _tool(argv: list[str], password: str, twice: bool = False) -> str:
    data = (password + "\n") * (2 if twice else 1)
    return subprocess.run(argv, input=data.encode(), capture_output=True, check=True).stdout.decode().strip()


def make_accounts(lab) -> dict[str, tuple[str, str]]:
    """name -> (field, stored value); every password is ``pw-<short name>``."""
    if not shutil.which("mkpasswd") or not os.path.exists(AUTHPASSWD):
        pytest.skip("needs mkpasswd (whois) and authpasswd (courier-authdaemon)")
    made: dict[str, str] = {
        "descrypt": lab.userdbpw("pw-descrypt"),
        "md5crypt": lab.userdbpw("pw-md5crypt", "-md5"),
        "md5crypt5": _tool([AUTHPASSWD], "pw-md5crypt5", twice=True),
        "md5": _tool([AUTHPASSWD, "MD5"], "pw-md5", twice=True),
        "md5raw": _tool([AUTHPASSWD, "MD5RAW"], "pw-md5raw", twice=True),
        "sha": _tool([AUTHPASSWD, "SHA"], "pw-sha", twice=True),
        "ssha": _tool([AUTHPASSWD, "SSHA"], "pw-ssha", twice=True),
        "sha256": _tool([AUTHPASSWD, "SHA256"], "pw-sha256", twice=True),
        "sha512": _tool([AUTHPASSWD, "SHA512"], "pw-sha512", twice=True),
        "sha256crypt": _tool(["mkpasswd", "-m", "sha256crypt", "--stdin"], "pw-sha256crypt"),
        "sha512crypt": _tool(["mkpasswd", "-m", "sha512crypt", "--stdin"], "pw-sha512crypt"),
        "bcrypt": _tool(["mkpasswd", "-m", "bcrypt", "-R", "5", "--stdin"], "pw-bcrypt"),
        "yescrypt": _tool(["mkpasswd", "-m", "yescrypt", "--stdin"], "pw-yescrypt"),
    }
    made["cryptprefix"] = "{CRYPT}" + _tool(["mkpasswd", "-m", "sha512crypt", "--stdin"], "pw-cryptprefix")
    made["lowerprefix"] = "{sha}" + _tool([AUTHPASSWD, "SHA"], "pw-lowerprefix", twice=True)[5:]
    accounts = {}
    for short, stored in made.items():
        accounts[f"{short}@example.org"] = ("systempw", stored)
    return accounts


def fill(lab, accounts) -> None:
    for name, (field, stored) in accounts.items():
        lab.add_user(name, **{field: stored})
    # the seed's shape: a service password beside systempw, and CRAM secrets
    lab.add_user("andrew@example.com", "andrew-secret", gecos="Andrew Example,Room 1,555-0100",
                 mail="/home/vmail/andrew/Maildir", quota="10000000S", options="disableshared=1",
                 imappw=lab.userdbpw("andrew-imap"),
                 **{"hmac-md5pw": lab.userdbpw("andrew-secret", "-hmac-md5"),
                    "hmac-sha1pw": lab.userdbpw("andrew-secret", "-hmac-sha1"),
                    "hmac-sha256pw": lab.userdbpw("andrew-secret", "-hmac-sha256"),
                    "pop3-hmac-md5pw": lab.userdbpw("andrew-pop3", "-hmac-md5")})
    lab.add_user("imaponly@example.org", "imap-only", pw_field="imappw")


def check_every_format(source: UserdbSource, accounts) -> None:
    for name in accounts:
        password = "pw-" + name.split("@")[0]
        assert source.authenticate(name, password.encode(), "login").address == name, name
        with pytest.raises(BadPassword):
            source.authenticate(name, b"pw-wrong", "login")
    with pytest.raises(UnknownUser):
        source.authenticate("nobody@example.org", b"pw-nobody", "login")


def test_every_format_through_text_compiled_alone_and_directory(courier_lab_factory, tmp_path):
    lab = courier_lab_factory()
    accounts = make_accounts(lab)
    fill(lab, accounts)
    check_every_format(UserdbSource(str(lab.userdb_path)), accounts)

    lab.makeuserdb()
    compiled_only = tmp_path / "compiled"
    compiled_only.mkdir()
    for name in ("userdb.dat", "userdbshadow.dat"):
        shutil.copy2(lab.etc_dir / name, compiled_only / name)
    source = UserdbSource(str(compiled_only / "userdb"))  # no text file at all
    assert source.uses_compiled()
    check_every_format(source, accounts)

    dirlab = courier_lab_factory(layout="dir")
    fill(dirlab, accounts)
    check_every_format(UserdbSource(str(dirlab.userdb_path)), accounts)
    dirlab.makeuserdb()
    source = UserdbSource(str(dirlab.userdb_path))
    assert source.uses_compiled()
    check_every_format(source, accounts)
    assert source.lookup("md5@example.org").source_location == "example.org/"


def courier_says(lab, service: str, name: str, password: str) -> bool:
    return lab.authtest("-s", service, name, password).returncode == 0


@pytest.mark.parametrize("layout", ["file", "dir"])
def test_service_selection_agrees_with_authdaemond(courier_lab_factory, layout):
    lab = courier_lab_factory(layout=layout)
    fill(lab, {})
    lab.makeuserdb()
    lab.start_daemon()
    source = UserdbSource(str(lab.userdb_path))
    cases = [
        ("imap", "andrew@example.com", "andrew-imap"),
        ("imap", "andrew@example.com", "andrew-secret"),
        ("pop3", "andrew@example.com", "andrew-secret"),
        ("pop3", "andrew@example.com", "andrew-imap"),
        ("login", "andrew@example.com", "andrew-secret"),
        ("imap", "imaponly@example.org", "imap-only"),
        ("pop3", "imaponly@example.org", "imap-only"),
        ("imap", "Andrew@Example.com", "andrew-imap"),
        ("imap", "nobody@example.com", "andrew-imap"),
    ]
    for service, name, password in cases:
        try:
            ours = bool(source.authenticate(name, password.encode(), service))
        except (BadPassword, UnknownUser):
            ours = False
        assert ours == courier_says(lab, service, name, password), (service, name, password)


def cram_request(service: str, algorithm: str, challenge: bytes, name: str, digest: str) -> bytes:
    import binascii

    data = (
        f"{service}\ncram-{algorithm}\n".encode()
        + binascii.b2a_base64(challenge, newline=False) + b"\n"
        + binascii.b2a_base64(f"{name} {digest}".encode(), newline=False) + b"\n"
    )
    return b"AUTH %d\n" % len(data) + data


def test_cram_agrees_with_authdaemond_for_all_algorithms(courier_lab):
    lab = courier_lab
    fill(lab, {})
    lab.makeuserdb()
    lab.start_daemon()
    source = UserdbSource(str(lab.userdb_path))
    challenge = b"<1896.697170952@lab.example>"
    cases = []
    for algorithm in ("md5", "sha1", "sha256"):
        for service in ("imap", "pop3"):
            for secret in ("andrew-secret", "andrew-pop3", "wrong"):
                cases.append((algorithm, service, secret))
    for algorithm, service, secret in cases:
        digest = std_hmac.new(secret.encode(), challenge, algorithm).hexdigest()
        reply = lab.request(cram_request(service, algorithm, challenge, "andrew@example.com", digest))
        courier = reply.endswith(b".\n") and b"UID=5000" in reply
        try:
            ours = bool(source.authenticate_cram(challenge, "andrew@example.com", digest, algorithm, service))
        except BadPassword:
            ours = False
        assert ours == courier, (algorithm, service, secret, reply)
    # pop3 has its own md5 secret; sha1/sha256 fall back to hmac-<alg>pw
    digest = std_hmac.new(b"andrew-pop3", challenge, "md5").hexdigest()
    assert source.authenticate_cram(challenge, "andrew@example.com", digest, "md5", "pop3")


def test_lookup_agrees_with_authdaemond_pre(courier_lab_factory):
    lab = courier_lab_factory(defaultoptions="disableshared=0,wbnoimages=1")
    fill(lab, {})
    lab.makeuserdb()
    lab.start_daemon()
    source = UserdbSource(str(lab.userdb_path), default_options="disableshared=0,wbnoimages=1")
    reply = lab.request(b"PRE . imap andrew@example.com\n").decode()
    courier = dict(line.split("=", 1) for line in reply.splitlines() if "=" in line)
    account = source.lookup("andrew@example.com", "imap")
    assert courier == {
        "UID": str(account.uid), "GID": str(account.gid), "HOME": account.home,
        "ADDRESS": account.address, "NAME": account.fullname, "MAILDIR": account.maildir,
        "QUOTA": account.quota, "PASSWD": account.encrypted_password, "OPTIONS": account.options,
    }


def test_corrupt_compiled_userdb_is_temporary_failure_naming_the_file(courier_lab):
    lab = courier_lab
    fill(lab, {})
    lab.makeuserdb()
    data = bytearray(lab.dat_path.read_bytes())
    data[0:64] = b"\x00" * 64
    lab.dat_path.write_bytes(bytes(data))
    with pytest.raises(TemporaryFailure, match="userdb.dat"):
        UserdbSource(str(lab.userdb_path)).authenticate("andrew@example.com", b"andrew-secret", "login")


def test_change_through_authkit_is_seen_by_running_authdaemond(courier_lab_factory):
    for layout in ("file", "dir"):
        lab = courier_lab_factory(layout=layout)
        fill(lab, {})
        lab.makeuserdb()
        lab.start_daemon()
        source = UserdbSource(str(lab.userdb_path))
        assert courier_says(lab, "login", "andrew@example.com", "andrew-secret")
        source.change_password("andrew@example.com", b"andrew-secret", b"N3w-andrew-pw", "login")
        assert courier_says(lab, "login", "andrew@example.com", "N3w-andrew-pw"), layout
        assert not courier_says(lab, "login", "andrew@example.com", "andrew-secret"), layout
        # the imap password and the CRAM secret of the old password moved with it
        assert courier_says(lab, "imap", "andrew@example.com", "andrew-imap")
        challenge = b"<1.2@x>"
        digest = std_hmac.new(b"N3w-andrew-pw", challenge, "sha256").hexdigest()
        reply = lab.request(cram_request("login", "sha256", challenge, "andrew@example.com", digest))
        assert b"UID=5000" in reply, layout
