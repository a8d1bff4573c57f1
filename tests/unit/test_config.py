"""authkit.config: choosing the account source and reading the config file."""

import os
import socket
from pathlib import Path

import pytest

from authkit.config import Settings, load_settings, parse_config
from authkit.errors import ConfigError


def test_config_file_values_are_typed():
    values = parse_config("# c\nuserdb = /x/userdb\nmin_uid = 500\nbad_pass_delay = 0.5\n")
    assert values == {"userdb": "/x/userdb", "min_uid": 500, "bad_pass_delay": 0.5}


@pytest.mark.parametrize(
    "text, message",
    [
        ("nonsense\n", "f.conf:1: expected 'key = value'"),
        ("userdb = /x\ncolour = red\n", "f.conf:2: unknown setting 'colour'"),
        ("min_uid = lots\n", "f.conf:1: min_uid must be a number"),
    ],
)
def test_malformed_config_names_file_and_line(text, message):
    with pytest.raises(ConfigError) as info:
        parse_config(text, "f.conf")
    assert str(info.value) == message


def test_config_option_beats_environment(tmp_path):
    conf = tmp_path / "a.conf"
    conf.write_text("userdb = /from/file\nmin_uid = 7\n")
    settings = load_settings(str(conf), {"AUTHKIT_AUTHDAEMON": "/sock", "AUTHKIT_USERDB": "/env"})
    assert (settings.chosen_source, settings.chosen_path, settings.min_uid) == ("userdb", "/from/file", 7)


def test_authdaemon_env_beats_userdb_env():
    settings = load_settings(None, {"AUTHKIT_AUTHDAEMON": "/s", "AUTHKIT_USERDB": "/u", "AUTHKIT_CONFIG": ""})
    assert (settings.chosen_source, settings.chosen_path) == ("authdaemon", "/s")


def test_userdb_env_with_policy_from_authkit_config(tmp_path):
    conf = tmp_path / "a.conf"
    conf.write_text("authdaemon_socket = /ignored\nmin_password_length = 12\n")
    settings = load_settings(None, {"AUTHKIT_USERDB": "/u", "AUTHKIT_CONFIG": str(conf)})
    assert (settings.chosen_source, settings.chosen_path) == ("userdb", "/u")
    assert settings.min_password_length == 12


def test_authkit_config_env_decides_when_no_source_env(tmp_path):
    conf = tmp_path / "a.conf"
    conf.write_text("authdaemon_socket = /run/x/socket\n")
    settings = load_settings(None, {"AUTHKIT_CONFIG": str(conf)})
    assert (settings.chosen_source, settings.chosen_path) == ("authdaemon", "/run/x/socket")


def test_config_naming_no_source_is_an_error(tmp_path):
    conf = tmp_path / "a.conf"
    conf.write_text("min_uid = 1\n")
    with pytest.raises(ConfigError, match="names no account source"):
        load_settings(str(conf), {})


def test_unreadable_config_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(str(tmp_path / "missing.conf"), {})


def test_courier_defaults_prefer_a_live_socket(tmp_path, monkeypatch):
    import authkit.config as config

    path = str(tmp_path / "socket")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    try:
        monkeypatch.setattr(config, "DEFAULT_CONFIG", str(tmp_path / "none.conf"))
        monkeypatch.setattr(config, "DEFAULT_SOCKETS", (str(tmp_path / "nosock"), path))
        monkeypatch.setattr(config, "DEFAULT_USERDBS", (str(tmp_path / "userdb"),))
        (tmp_path / "userdb").write_text("")
        settings = load_settings(None, {})
        assert (settings.chosen_source, settings.chosen_path) == ("authdaemon", path)
    finally:
        server.close()


def test_courier_defaults_fall_back_to_userdb_then_fail(tmp_path, monkeypatch):
    import authkit.config as config

    monkeypatch.setattr(config, "DEFAULT_CONFIG", str(tmp_path / "none.conf"))
    monkeypatch.setattr(config, "DEFAULT_SOCKETS", (str(tmp_path / "nosock"),))
    monkeypatch.setattr(config, "DEFAULT_USERDBS", (str(tmp_path / "a"), str(tmp_path / "b")))
    (tmp_path / "b.dat").write_bytes(b"")
    settings = load_settings(None, {})
    assert (settings.chosen_source, settings.chosen_path) == ("userdb", str(tmp_path / "b"))
    (tmp_path / "b.dat").unlink()
    with pytest.raises(ConfigError, match="no account source"):
        load_settings(None, {})


def test_open_source_builds_authdaemon_client_from_settings_and_environment(tmp_path):
    from authkit.config import open_source

    conf = tmp_path / "a.conf"
    conf.write_text("authdaemon_socket = /s\nauthdaemon_read_timeout = 5\ndefdomain = @example.com\n")
    environ = {"TCPREMOTEIP": "192.0.2.7", "DOMAINSEP": "@%"}
    source = open_source(config_path=str(conf), environ=environ)
    assert (source.socket_path, source.read_timeout, source.defdomain) == ("/s", 5.0, "@example.com")
    assert (source.remote_ip, source.domainsep) == ("192.0.2.7", "@%")
    assert open_source(config_path=str(conf), environ={}).remote_ip == ""


def test_open_source_builds_userdb_source_with_policy_settings(tmp_path):
    from authkit.config import open_source

    conf = tmp_path / "a.conf"
    conf.write_text("userdb = /u\nhash_scheme = SSHA\ndefault_options = wbnoimages=1\n")
    source = open_source(config_path=str(conf), environ={})
    assert (source.path, source.hash_scheme, source.default_options) == ("/u", "SSHA", "wbnoimages=1")


def test_authkit_variables_are_ignored_when_real_and_effective_ids_differ(tmp_path, monkeypatch):
    """Issue 17 item 8: a setuid or setgid install must not let the invoking user
    name the source (AUTHKIT_USERDB, AUTHKIT_AUTHDAEMON) or the file (AUTHKIT_CONFIG)."""
    import os

    import authkit.config as config

    good = tmp_path / "good.conf"
    good.write_text("userdb = /good/userdb\n")
    evil = tmp_path / "evil.conf"
    evil.write_text("userdb = /evil/userdb\nmin_password_length = 1\n")
    monkeypatch.setattr(config, "DEFAULT_CONFIG", str(good))
    environ = {"AUTHKIT_USERDB": "/evil/u", "AUTHKIT_AUTHDAEMON": "/evil/s", "AUTHKIT_CONFIG": str(evil),
               "TCPREMOTEIP": "192.0.2.7"}
    assert load_settings(None, environ).chosen_path == "/evil/s"
    for getter in ("geteuid", "getegid"):
        with monkeypatch.context() as patch:
            patch.setattr(os, getter, lambda: 12345)
            settings = load_settings(None, environ)
            assert (settings.chosen_path, settings.config_file) == ("/good/userdb", str(good)), getter
            assert settings.min_password_length == 8
            assert config.trusted_environ(environ) == {"TCPREMOTEIP": "192.0.2.7"}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make real and effective uid differ")
def test_a_process_with_differing_real_and_effective_uid_ignores_authkit_variables(tmp_path):
    """The same in a real process: real uid 65534, effective uid 0 (what a setuid
    root wrapper gives)."""
    import json
    import subprocess
    import sys

    good = tmp_path / "good.conf"
    good.write_text("userdb = /good/userdb\n")
    evil = tmp_path / "evil.conf"
    evil.write_text("userdb = /evil/userdb\n")
    evil.chmod(0o644)
    tmp_path.chmod(0o755)
    code = ("import json, authkit.config as c; c.DEFAULT_CONFIG = %r; s = c.load_settings(); "
            "print(json.dumps([s.chosen_path, s.config_file]))" % str(good))
    env = {"PATH": "/usr/bin:/bin", "AUTHKIT_USERDB": "/evil/u", "AUTHKIT_CONFIG": str(evil),
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for ids, expected in (((65534, 0, 0), ["/good/userdb", str(good)]), (None, ["/evil/u", str(evil)])):
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                              preexec_fn=(lambda ids=ids: os.setresuid(*ids)) if ids else None, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == expected, ids


@pytest.mark.parametrize("text, message", [
    ("idle_timeout = inf\n", "f.conf:1: idle_timeout must be a finite number"),
    ("bad_pass_delay = nan\n", "f.conf:1: bad_pass_delay must be a finite number"),
    ("# x\nauthdaemon_read_timeout = 1e400\n", "f.conf:2: authdaemon_read_timeout must be a finite number"),
    ("idle_timeout = -Infinity\n", "f.conf:1: idle_timeout must be a finite number"),
    ("idle_timeout = 0\n", "f.conf:1: idle_timeout must be above 0"),
    ("authdaemon_connect_timeout = -1\n", "f.conf:1: authdaemon_connect_timeout must be above 0"),
    ("bad_pass_delay = -0.5\n", "f.conf:1: bad_pass_delay must be at least 0"),
    ("min_uid = -1\n", "f.conf:1: min_uid must be at least 0"),
    ("max_connections = 0\n", "f.conf:1: max_connections must be at least 1"),
    ("min_password_length = 0\n", "f.conf:1: min_password_length must be at least 1"),
    ("max_username_length = 1.5\n", "f.conf:1: max_username_length must be a number"),
    ("min_uid = \u0661\u0660\u0660\n", "f.conf:1: min_uid must be a number"),
    ("hash_scheme = sha1024-crypt\n", "f.conf:1: hash_scheme must be one of des-crypt, md5-crypt, "
     "sha256-crypt, sha512-crypt, bcrypt, yescrypt, MD5, MD5RAW, SHA, SSHA, SHA256, SHA512"),
    ("userdb = /u\nsource = ldpa\n", "f.conf:2: source must be one of userdb, authdaemon, ldap, pgsql "
     "(or a comma-separated chain of them)"),
    ("source = userdb, ldpa\n", "f.conf:1: source must be one of userdb, authdaemon, ldap, pgsql "
     "(or a comma-separated chain of them)"),
    ("allow_root_ids = maybe\n", "f.conf:1: allow_root_ids must be yes or no"),
    ("rehash_on_login = maybe\n", "f.conf:1: rehash_on_login must be yes or no"),
    ("max_password_length = 6\n", "f.conf:1: max_password_length (6) is below min_password_length (8)"),
    ("max_password_length = 20\nmin_password_length = 21\n",
     "f.conf:2: max_password_length (20) is below min_password_length (21)"),
])
def test_every_value_is_checked_when_the_file_is_read(text, message):
    """Issue 17 item 11: inf/nan were accepted (disabling the delay and the idle
    timeout), a bad hash_scheme surfaced only after a right old password."""
    with pytest.raises(ConfigError) as info:
        parse_config(text, "f.conf")
    assert str(info.value) == message


def test_zero_turns_off_where_documented_and_scheme_names_take_any_case():
    values = parse_config("bad_pass_delay = 0\nmin_uid = 0\nhash_scheme = SHA512-CRYPT\n"
                          "allow_root_ids = Yes\nidle_timeout = 0.5\nmax_password_length = 8\n"
                          "rehash_on_login = yes\n")
    assert values == {"bad_pass_delay": 0.0, "min_uid": 0, "hash_scheme": "SHA512-CRYPT",
                      "allow_root_ids": True, "idle_timeout": 0.5, "max_password_length": 8,
                      "rehash_on_login": True}


@pytest.mark.parametrize("key", ["bad_pass_delay", "min_uid", "refusal_floor", "failure_delay",
                                 "failure_delay_max", "cache_ttl", "pgsql_statement_timeout"])
def test_zero_is_accepted_for_each_key_whose_man_page_says_0_turns_it_off(key):
    """authkit.conf(5) says 0 disables these; refusal_floor = 0 was refused
    ("must be above 0") although the page says "0 disables the floor"."""
    assert parse_config(f"{key} = 0\n")[key] == 0


def test_every_default_passes_its_own_check():
    from authkit.config import _SCHEMA

    for key, (kind, default) in _SCHEMA.items():
        text = {bool: lambda v: "yes" if v else "no"}.get(kind, str)(default)
        assert parse_config(f"{key} = {text}\n")[key] == default, key


def test_the_chosen_source_has_one_name_and_its_path_lives_in_its_own_key():
    """issue 16: ``source`` is what the file says, ``chosen_source`` the kind
    chosen; the path is the kind's own key, ``chosen_path`` only reads it."""
    settings = Settings(source="userdb, ldap").choose("authdaemon", "/run/s")
    assert (settings.source, settings.chosen_source, settings.authdaemon_socket) == (
        "userdb, ldap", "authdaemon", "/run/s")
    assert settings.chosen_path == "/run/s"
    with pytest.raises(AttributeError):
        settings.chosen_path = "/elsewhere"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        Settings().choose("ldap", "/no/path/for/ldap")
    assert not hasattr(settings, "source_kind") and not hasattr(settings, "source_path")
    assert Settings().rehash_on_login is False
