"""SlapdLab: a private OpenLDAP slapd for one test, with Courier's authldap schema.

Debian's ``slapd`` runs as the test's user (root) from a private cn=config
directory that ``slaptest`` converts from a generated ``slapd.conf``
(core, cosine, nis, inetorgperson, misc and Courier's ``authldap.schema`` from
courier-authlib-ldap), with an mdb database under the lab's directory (created
empty by ``slapadd``, which slaptest needs).  It
listens on ``ldapi://`` (a socket in a short private directory under /tmp),
``ldap://127.0.0.1:<free port>`` and, given a certificate, ``ldaps://127.0.0.1:<free
port>`` (StartTLS on the plain port too).  Nothing of the machine's /etc/ldap or
running slapd is used or touched.

* ``provider=True`` loads syncprov; ``consumer_of=<lab>`` makes this lab a
  syncrepl (refreshAndPersist) consumer of another lab's plain URI;
* :meth:`populate` adds the suffix, ``ou=people`` and one entry per
  :class:`Person`, through ``ldapadd`` as the root DN;
* :func:`hash_password` makes stored values with the real tools
  (``slappasswd`` for the {SCHEME}s, ``mkpasswd`` for crypt(3) formats);
* :func:`make_ca` makes a CA and a server certificate for 127.0.0.1 with openssl.

Readiness waits are bounded: :meth:`start` returns once an anonymous base search
answers on the plain port, and raises ``SlapdError`` with slapd's log otherwise.
ACLs: password attributes readable only by the root DN (and usable by
``anonymous auth`` binds), writable by ``self``; everything else readable.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

SLAPD = "/usr/sbin/slapd"
SLAPTEST = "/usr/sbin/slaptest"
SLAPADD = "/usr/sbin/slapadd"
SLAPPASSWD = "/usr/sbin/slappasswd"
LDAPADD = "/usr/bin/ldapadd"
LDAPMODIFY = "/usr/bin/ldapmodify"
LDAPSEARCH = "/usr/bin/ldapsearch"
MKPASSWD = "/usr/bin/mkpasswd"
OPENSSL = "/usr/bin/openssl"
SCHEMA_DIR = Path("/etc/ldap/schema")
AUTHLDAP_SCHEMA = Path("/usr/share/doc/courier-authlib-ldap/authldap.schema")
MODULE_DIR = Path("/usr/lib/ldap")

SUFFIX = "o=authkit"
PEOPLE = f"ou=people,{SUFFIX}"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PW = "admin-secret"

REQUIRED = (SLAPD, SLAPTEST, SLAPADD, SLAPPASSWD, LDAPADD, LDAPMODIFY, LDAPSEARCH, MKPASSWD, OPENSSL,
            str(AUTHLDAP_SCHEMA), str(MODULE_DIR / "back_mdb.so"))


def missing_requirements() -> list[str]:
    """Why a lab cannot run here (empty when it can)."""
    reasons = [f"{path} not found (slapd, ldap-utils, whois, openssl, courier-authlib-ldap)"
               for path in REQUIRED if not os.path.exists(path)]
    if os.geteuid() != 0:
        reasons.append("not running as root")
    return reasons


class SlapdError(RuntimeError):
    """slapd could not be configured or started, or a tool failed."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(argv: list[str], input: bytes | None = None, timeout: float = 60) -> str:
    proc = subprocess.run(argv, input=input, capture_output=True, timeout=timeout,
                          stdin=None if input is not None else subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SlapdError(f"{argv[0]} exited {proc.returncode}: "
                         f"{proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout.decode(errors="replace")


# ----------------------------------------------------------------- passwords

_SLAPPASSWD_SCHEMES = {"SSHA", "SHA", "MD5", "SMD5", "SHA256", "SSHA256", "SHA512", "SSHA512"}
_MKPASSWD_METHODS = {"sha512-crypt": "sha512crypt", "sha256-crypt": "sha256crypt",
                     "md5-crypt": "md5crypt", "bcrypt": "bcrypt", "yescrypt": "yescrypt",
                     "des-crypt": "descrypt"}


def hash_password(password: str, scheme: str) -> str:
    """A ``userPassword`` value for ``password`` made by the real tool:
    ``slappasswd -h {SCHEME}`` (pw-sha2 module for the SHA-2 ones), or
    ``{CRYPT}`` + ``mkpasswd -m <method>`` for a crypt(3) scheme name."""
    if scheme.upper() in _SLAPPASSWD_SCHEMES:
        argv = [SLAPPASSWD, "-h", "{" + scheme.upper() + "}", "-s", password]
        if "SHA2" in scheme.upper() or "SHA5" in scheme.upper():
            argv[1:1] = ["-o", f"module-path={MODULE_DIR}", "-o", "module-load=pw-sha2.la"]
        return _run(argv).strip()
    method = _MKPASSWD_METHODS[scheme]
    return "{CRYPT}" + _run([MKPASSWD, "-m", method, "--stdin"], input=password.encode() + b"\n").strip()


# ----------------------------------------------------------------- TLS

def make_ca(directory: Path, name: str = "authkit test CA") -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1/localhost signed by it, made
    with openssl under ``directory``: paths ``ca``, ``cert``, ``key``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca.key", "ca.pem", "server.key",
                                                          "server.csr", "server.pem"))
    ext = directory / "san.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                   "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=serverAuth\n")
    _run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key),
          "-out", str(ca), "-days", "2", "-subj", f"/CN={name}"])
    _run([OPENSSL, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
          "-subj", "/CN=127.0.0.1"])
    _run([OPENSSL, "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
          "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext)])
    os.chmod(key, 0o600)
    return {"ca": ca, "cert": cert, "key": key}


# ----------------------------------------------------------------- entries

class Person:
    """One CourierMailAccount entry ``uid=<uid>,ou=people,o=authkit``; ``attrs``
    are further attributes (values as str or list of str)."""

    def __init__(self, uid: str, mail: "str | list[str]", home: str, **attrs: "str | list[str]") -> None:
        self.uid = uid
        self.mail = mail
        self.home = home
        self.attrs = attrs

    @property
    def dn(self) -> str:
        return f"uid={self.uid},{PEOPLE}"

    def ldif(self) -> str:
        lines = [f"dn: {self.dn}", "objectClass: top", "objectClass: account",
                 "objectClass: CourierMailAccount", f"uid: {self.uid}"]
        values = {"mail": self.mail, "homeDirectory": self.home, **self.attrs}
        for name, value in values.items():
            for item in value if isinstance(value, list) else [value]:
                lines.append(_ldif_line(name, item))
        return "\n".join(lines) + "\n"


def _ldif_line(name: str, value: str) -> str:
    """``name: value``, or ``name:: base64`` when LDIF needs it (non-ASCII,
    control bytes, a leading space/colon/less-than)."""
    raw = value.encode("utf-8", "surrogateescape")
    safe = raw.isascii() and all(32 <= b < 127 for b in raw) and not raw[:1] in (b" ", b":", b"<")
    if safe and not raw.endswith(b" "):
        return f"{name}: {value}"
    import base64

    return f"{name}:: {base64.b64encode(raw).decode()}"


# ----------------------------------------------------------------- the lab

class SlapdLab:
    """One private slapd under ``root`` (see module doc).  Use as a context
    manager or call :meth:`close`."""

    def __init__(self, root: Path, *, tls: "dict[str, Path] | None" = None, provider: bool = False,
                 consumer_of: "SlapdLab | None" = None, name: str = "slapd") -> None:
        self.root = Path(root)
        self.name = name
        self.tls = tls
        self.provider = provider
        self.consumer_of = consumer_of
        self.root.mkdir(parents=True, exist_ok=True)
        self.conf_path = self.root / "slapd.conf"
        self.config_dir = self.root / "slapd.d"
        self.db_dir = self.root / "db"
        self.log_path = self.root / "slapd.log"
        self.pid_path = self.root / "slapd.pid"
        # ldapi socket paths are limited to ~107 bytes: keep it short
        self._sock_dir = Path(tempfile.mkdtemp(prefix="slapd-", dir="/tmp"))
        self.socket_path = self._sock_dir / "ldapi"
        self.port = 0
        self.tls_port = 0
        self._proc: subprocess.Popen | None = None
        self._write_config()

    # URIs
    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_uri(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    @property
    def ldapi_uri(self) -> str:
        return "ldapi://" + quote(str(self.socket_path), safe="")

    def _write_config(self) -> None:
        schemas = [SCHEMA_DIR / f"{n}.schema" for n in ("core", "cosine", "nis", "inetorgperson", "misc")]
        schemas.append(AUTHLDAP_SCHEMA)
        modules = ["back_mdb", "pw-sha2"] + (["syncprov"] if self.provider else [])
        lines = [f"include {path}" for path in schemas]
        lines += [f"modulepath {MODULE_DIR}", *(f"moduleload {m}" for m in modules),
                  f"pidfile {self.pid_path}", "sizelimit unlimited", "loglevel stats"]
        if self.tls:
            lines += [f"TLSCACertificateFile {self.tls['ca']}",
                      f"TLSCertificateFile {self.tls['cert']}",
                      f"TLSCertificateKeyFile {self.tls['key']}"]
        rootpw = _run([SLAPPASSWD, "-h", "{SSHA}", "-s", ROOT_PW]).strip()
        lines += ["database config", "database mdb", f'suffix "{SUFFIX}"', f'rootdn "{ROOT_DN}"',
                  f"rootpw {rootpw}", f"directory {self.db_dir}", "maxsize 67108864",
                  "index objectClass eq", "index mail eq", "index uid eq",
                  "access to attrs=userPassword,clearPassword by self write by anonymous auth by * none",
                  "access to * by * read"]
        if self.provider:
            lines += ["overlay syncprov", "syncprov-checkpoint 100 1"]
        if self.consumer_of is not None:
            if not self.consumer_of.port:
                raise SlapdError("start the provider before making its consumer")
            lines += [f"syncrepl rid=001 provider={self.consumer_of.uri} bindmethod=simple "
                      f'binddn="{ROOT_DN}" credentials={ROOT_PW} searchbase="{SUFFIX}" '
                      'type=refreshAndPersist retry="1 +" timeout=5 network-timeout=5']
        self.db_dir.mkdir(exist_ok=True)
        self.conf_path.write_text("\n".join(lines) + "\n")
        if self.config_dir.exists():
            shutil.rmtree(self.config_dir)
        self.config_dir.mkdir()
        # slaptest opens the database read-only: create it (empty) with slapadd first
        _run([SLAPADD, "-f", str(self.conf_path), "-b", SUFFIX, "-l", "/dev/null"])
        _run([SLAPTEST, "-f", str(self.conf_path), "-F", str(self.config_dir)])

    # ------------------------------------------------------------- process

    def start(self, timeout: float = 30) -> None:
        """Start slapd (same ports as before on a restart) and wait until it answers."""
        if self._proc is not None and self._proc.poll() is None:
            raise SlapdError("slapd already running")
        if not self.port:
            self.port = free_port()
            self.tls_port = free_port() if self.tls else 0
        urls = [self.ldapi_uri, f"{self.uri}/"] + ([f"{self.ldaps_uri}/"] if self.tls else [])
        with open(self.log_path, "ab") as log:
            # -d: stay in the foreground (debug level 0, the loglevel goes to the log)
            self._proc = subprocess.Popen(
                [SLAPD, "-d", "0", "-h", " ".join(urls), "-F", str(self.config_dir)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise SlapdError(f"{self.name} exited {self._proc.returncode}: {self.log()[-2000:]}")
            probe = subprocess.run([LDAPSEARCH, "-x", "-H", self.uri, "-b", "", "-s", "base",
                                    "-o", "nettimeout=2", "-l", "2", "1.1"],
                                   capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
            if probe.returncode == 0:
                return
            time.sleep(0.05)
        self.kill()
        raise SlapdError(f"{self.name} did not answer within {timeout}s: {self.log()[-2000:]}")

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise SlapdError("not started")
        return self._proc.pid

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM and wait (SIGKILL after ``timeout``)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def kill(self) -> None:
        """SIGKILL now (a crash: connections drop without a goodbye)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()  # SIGKILL ends a stopped (paused) process too
            proc.wait(10)

    def pause(self) -> None:
        """SIGSTOP: the ports stay open, nothing answers."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            try:
                self.resume()
            except OSError:
                pass
        self.stop()
        shutil.rmtree(self._sock_dir, ignore_errors=True)

    def __enter__(self) -> "SlapdLab":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------- data

    def _tool(self, tool: str, ldif: str, *extra: str) -> str:
        return _run([tool, "-x", "-H", self.ldapi_uri, "-D", ROOT_DN, "-w", ROOT_PW, *extra],
                    input=ldif.encode("utf-8", "surrogateescape"))

    def add(self, ldif: str) -> None:
        """``ldapadd`` of ``ldif`` as the root DN over ldapi."""
        self._tool(LDAPADD, ldif)

    def modify(self, ldif: str) -> None:
        """``ldapmodify`` of ``ldif`` as the root DN over ldapi."""
        self._tool(LDAPMODIFY, ldif)

    def populate(self, people: "list[Person]") -> None:
        """The suffix, ``ou=people`` and ``people``."""
        base = (f"dn: {SUFFIX}\nobjectClass: top\nobjectClass: organization\no: authkit\n\n"
                f"dn: {PEOPLE}\nobjectClass: top\nobjectClass: organizationalUnit\nou: people\n")
        self.add(base + "\n" + "\n".join(p.ldif() for p in people))

    def set_password(self, person_dn: str, attribute: str, value: str) -> None:
        self.modify(f"dn: {person_dn}\nchangetype: modify\nreplace: {attribute}\n"
                    f"{_ldif_line(attribute, value)}\n")

    def get(self, dn: str, attribute: str) -> "list[str]":
        """The values of ``attribute`` of ``dn`` (as the root DN), via ldapsearch."""
        out = _run([LDAPSEARCH, "-x", "-LLL", "-o", "ldif-wrap=no", "-H", self.ldapi_uri,
                    "-D", ROOT_DN, "-w", ROOT_PW, "-b", dn, "-s", "base", attribute])
        values = []
        for line in out.splitlines():
            name, sep, value = line.partition(": ")
            if name.lower() == attribute.lower() and sep:
                values.append(value)
            elif name.lower() == attribute.lower() + ":":
                import base64

                values.append(base64.b64decode(value.strip()).decode("utf-8", "surrogateescape"))
        return values

    def count(self, filter_text: str = "(objectClass=CourierMailAccount)") -> int:
        """How many entries under the suffix match (as the root DN); 0 while
        the suffix does not exist yet (a consumer before its first refresh)."""
        proc = subprocess.run([LDAPSEARCH, "-x", "-LLL", "-H", self.ldapi_uri, "-D", ROOT_DN,
                               "-w", ROOT_PW, "-b", SUFFIX, filter_text, "1.1"],
                              capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        if proc.returncode == 32:  # noSuchObject
            return 0
        if proc.returncode != 0:
            raise SlapdError(f"ldapsearch exited {proc.returncode}: {proc.stderr.decode(errors='replace')}")
        return sum(1 for line in proc.stdout.decode().splitlines() if line.startswith("dn:"))

    def wait_for_count(self, expected: int, timeout: float = 30,
                       filter_text: str = "(objectClass=CourierMailAccount)") -> None:
        """Wait (bounded) until ``expected`` entries match: a consumer caught up."""
        deadline = time.monotonic() + timeout
        seen = -1
        while time.monotonic() < deadline:
            seen = self.count(filter_text)
            if seen == expected:
                return
            time.sleep(0.05)
        raise SlapdError(f"{self.name}: {seen} entries after {timeout}s, expected {expected}")
