"""authkitd's parts without sockets: the Responder (request -> reply bytes), the
failure-delay Penalty, the source chain, the lookup cache, rehash's weakness
rule, the config's chain syntax and the CLI's argument parsing.  Fakes stand in
for sources here; tests/integration/test_authkitd_*.py use real peers."""

from __future__ import annotations

import pytest

from authkit.account import Account
from authkit.authdaemon import server
from authkit.authdaemon.protocol import login_request
from authkit.cache import CachingSource
from authkit.chain import ChainSource
from authkit.cli.authkitd import UsageError, parse_args
from authkit.config import parse_config
from authkit.daemon import Penalty, Responder, penalty_key
from authkit.errors import BadPassword, ConfigError, TemporaryFailure, UnknownUser
from authkit.rehash import is_weak
from authkit.schemes import make_password_hash
from authkit.source import AccountSource

ANDREW = Account(address="andrew@example.com", uid=5000, gid=5000, home="/h",
                 fullname="Andrew,Room", options="a=1", encrypted_password="$6$x")


class Fake(AccountSource):
    """Knows ``users`` (name -> password); counts lookups; ``broken`` raises
    TemporaryFailure for everything."""

    def __init__(self, users: dict, broken: bool = False, description: str = "fake") -> None:
        self.users, self.broken, self.lookups, self.description = users, broken, 0, description
        self.changed: list = []

    def _check(self, name: str) -> None:
        if self.broken:
            raise TemporaryFailure("down")
        if name not in self.users:
            raise UnknownUser(name)

    def lookup(self, name, service="login"):
        self.lookups += 1
        self._check(name)
        return ANDREW.replace(address=name)

    def authenticate(self, name, password, service="login"):
        self._check(name)
        if self.users[name] != password:
            raise BadPassword("no")
        return ANDREW.replace(address=name)

    def change_password(self, name, old, new, service="login"):
        self.authenticate(name, old, service)
        self.users[name] = new
        self.changed.append(name)
        return ANDREW.replace(address=name)

    def enumerate(self):
        if self.broken:
            raise TemporaryFailure("down")
        for name in self.users:
            yield ANDREW.replace(address=name)


def answer(source, data: bytes, modules=None, **kwargs) -> server.Request:
    responder = Responder(source, modules or {"authuserdb": source}, **kwargs)
    return responder.answer(server.parse_request(data))


def test_responder_replies():
    fake = Fake({"andrew@example.com": b"pw"})
    ok = answer(fake, login_request("imap", "andrew@example.com", b"pw"), default_options="b=2")
    assert ok.result == "ok" and ok.guess
    assert ok.reply == (b"UID=5000\nGID=5000\nHOME=/h\nADDRESS=andrew@example.com\nNAME=Andrew\n"
                        b"PASSWD=$6$x\nPASSWD2=pw\nOPTIONS=a=1,b=2\n.\n")
    bad = answer(fake, login_request("imap", "andrew@example.com", b"pX"))
    assert (bad.reply, bad.result, bad.guess) == (b"FAIL\n", "fail", True)
    assert answer(fake, b"PRE . imap nobody\n").reply == b"FAIL\n"
    assert answer(fake, b"PRE authldap imap andrew@example.com\n").reply == b"FAIL\n"
    assert answer(fake, b"PRE authuserdb imap andrew@example.com\n").reply.endswith(b"\n.\n")
    assert answer(fake, b"PASSWD login\tandrew@example.com\tpw\tnew\n").reply == b"OK\n"
    assert answer(fake, b"ENUMERATE\n").reply == (
        b"# authuserdb\n\nandrew@example.com\t5000\t5000\t/h\t\ta=1\n.\n")


def test_responder_temporary_failures_close_without_a_reply():
    down = Fake({}, broken=True)
    for data in (b"PRE . imap x\n", login_request("imap", "x", b"y"), b"PASSWD s\tx\ty\tz\n"):
        outcome = answer(down, data)
        assert (outcome.reply, outcome.result) == (b"", "tempfail"), data
    # an aborted enumeration: no final "." line
    assert answer(down, b"ENUMERATE\n").reply == b""


def test_responder_refuses_a_value_with_a_newline():
    class Evil(Fake):
        def lookup(self, name, service="login"):
            return ANDREW.replace(fullname="x\nUID=0")

    outcome = answer(Evil({"a": b"p"}), b"PRE . imap a\n")
    assert outcome.reply == b"" and outcome.result == "error"


def test_penalty_doubles_caps_resets_and_is_per_address():
    penalty = Penalty(2.0, 15.0)
    assert penalty.delay("192.0.2.1", 0) == 0
    waits = []
    for n in range(6):
        penalty.failed("192.0.2.1", float(n))
        waits.append(penalty.delay("192.0.2.1", float(n)))
    assert waits == [2, 4, 8, 15, 15, 15]
    assert penalty.delay("192.0.2.2", 5) == 0
    assert penalty.delay("", 5) == 0 and penalty.failed("", 5) == 0
    penalty.succeeded("192.0.2.1")
    assert penalty.delay("192.0.2.1", 6) == 0
    penalty.failed("192.0.2.3", 0)
    assert penalty.delay("192.0.2.3", 4000) == 0  # forgotten after an hour
    assert Penalty(0, 15).delay("192.0.2.1", 0) == 0


def test_penalty_key():
    assert penalty_key("2001:db8:1:2::5") == penalty_key("2001:db8:1:ffff::9")
    assert penalty_key("2001:db8:1::5") != penalty_key("2001:db8:2::5")
    assert penalty_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert penalty_key("192.0.2.1") == "192.0.2.1"


def test_chain_first_that_knows_decides():
    first = Fake({"a": b"1"})
    second = Fake({"a": b"2", "b": b"2"})
    chain = ChainSource([first, second], ["authuserdb", "authldap"])
    assert chain.authenticate("a", b"1").address == "a"
    with pytest.raises(BadPassword):
        chain.authenticate("a", b"2")  # the first knows a: its no stands
    assert chain.authenticate("b", b"2").address == "b"
    with pytest.raises(UnknownUser):
        chain.lookup("c")
    assert [a.address for a in chain.enumerate()] == ["a", "b"]
    broken = ChainSource([Fake({}, broken=True), second])
    with pytest.raises(TemporaryFailure):
        broken.authenticate("b", b"2")  # never answered by a later member


def test_cache_hits_negative_entries_and_invalidation():
    fake = Fake({"a": b"1"})
    stamp = [0]
    cache = CachingSource(fake, 60, lambda: stamp[0])
    cache.lookup("a")
    cache.lookup("a")
    assert fake.lookups == 1
    for _ in range(2):
        with pytest.raises(UnknownUser):
            cache.lookup("b")
    assert fake.lookups == 2
    cache.change_password("a", b"1", b"2")
    cache.lookup("a")
    assert fake.lookups == 3
    stamp[0] = 1
    with pytest.raises(UnknownUser):
        cache.lookup("b")
    assert fake.lookups == 4
    with pytest.raises(TemporaryFailure):  # never cached
        CachingSource(Fake({}, broken=True), 60).lookup("a")


def test_weak_hashes():
    assert is_weak(make_password_hash(b"pw", "md5-crypt"), "sha512-crypt")
    assert is_weak(make_password_hash(b"pw", "des-crypt"), "sha512-crypt")
    assert is_weak(make_password_hash(b"pw", "SHA"), "sha512-crypt")
    assert is_weak(make_password_hash(b"pw", "MD5"), "sha512-crypt")
    assert not is_weak(make_password_hash(b"pw", "SSHA"), "sha512-crypt")
    assert not is_weak(make_password_hash(b"pw", "sha512-crypt"), "sha512-crypt")
    assert not is_weak(make_password_hash(b"pw", "bcrypt"), "sha512-crypt")
    assert is_weak("$6$rounds=1000$abcdefgh$" + "x" * 86, "sha512-crypt")
    assert is_weak(make_password_hash(b"pw", "bcrypt", rounds=5), "bcrypt")
    assert not is_weak("plain-text", "sha512-crypt")


def test_config_chain_syntax():
    assert parse_config("source = userdb, ldap\n")["source"] == "userdb, ldap"
    with pytest.raises(ConfigError):
        parse_config("source = userdb, nosuch\n")
    with pytest.raises(ConfigError):
        parse_config("source = userdb,\n")


def test_cli_arguments():
    assert parse_args(["--config", "f", "--socket=/s", "--stderr", "-v"]) == {
        "config": "f", "socket": "/s", "stderr": True, "verbose": True, "help": False, "version": False}
    assert parse_args(["-V"])["version"] and parse_args(["--help"])["help"]
    for bad in (["--config"], ["--socket="], ["-x"], ["extra"]):
        with pytest.raises(UsageError):
            parse_args(bad)


def test_start_path_stays_lean(tmp_path):
    """What authkitd imports to start serving a userdb (settings, source, the
    preloaded scheme modules, the daemon) holds none of the heavy modules the
    per-login programs avoid (issue 15 wants its start lean too)."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    (tmp_path / "userdb").write_text("a\tuid=5000|gid=5000|home=/h\n")
    (tmp_path / "authkit.conf").write_text(f"userdb = {tmp_path / 'userdb'}\n")
    probe = (
        "import sys, socket; sys.path.insert(0, sys.argv[1])\n"
        "from authkit.cli import authkitd, _log\n"
        "from authkit.daemon import Daemon\n"
        "log = _log.EventLog('authkitd', True)\n"
        "settings, generation = authkitd.open_generation(sys.argv[2], sys.argv[3], log)\n"
        "authkitd._preload()\n"
        "Daemon(socket.socket(socket.AF_UNIX), generation, log)\n"
        "heavy = ('re', 'logging', 'asyncio', 'concurrent.futures', 'argparse', 'typing',\n"
        "         'dataclasses', 'hashlib', 'ldap3', 'psycopg')\n"
        "print(' '.join(name for name in heavy if name in sys.modules))\n")
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    proc = subprocess.run([python, "-IS", "-c", probe, str(repo), str(tmp_path / "authkit.conf"),
                           str(tmp_path / "socket")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", proc.stdout
