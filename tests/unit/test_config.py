"""authkit.config: choosing the account source and reading the config file."""

import socket

import pytest

from authkit.config import load_settings, parse_config
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
    assert (settings.source_kind, settings.source_path, settings.min_uid) == ("userdb", "/from/file", 7)


def test_authdaemon_env_beats_userdb_env():
    settings = load_settings(None, {"AUTHKIT_AUTHDAEMON": "/s", "AUTHKIT_USERDB": "/u", "AUTHKIT_CONFIG": ""})
    assert (settings.source_kind, settings.source_path) == ("authdaemon", "/s")


def test_userdb_env_with_policy_from_authkit_config(tmp_path):
    conf = tmp_path / "a.conf"
    conf.write_text("authdaemon_socket = /ignored\nmin_password_length = 12\n")
    settings = load_settings(None, {"AUTHKIT_USERDB": "/u", "AUTHKIT_CONFIG": str(conf)})
    assert (settings.source_kind, settings.source_path) == ("userdb", "/u")
    assert settings.min_password_length == 12


def test_authkit_config_env_decides_when_no_source_env(tmp_path):
    conf = tmp_path / "a.conf"
    conf.write_text("authdaemon_socket = /run/x/socket\n")
    settings = load_settings(None, {"AUTHKIT_CONFIG": str(conf)})
    assert (settings.source_kind, settings.source_path) == ("authdaemon", "/run/x/socket")


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
        assert (settings.source_kind, settings.source_path) == ("authdaemon", path)
    finally:
        server.close()


def test_courier_defaults_fall_back_to_userdb_then_fail(tmp_path, monkeypatch):
    import authkit.config as config

    monkeypatch.setattr(config, "DEFAULT_CONFIG", str(tmp_path / "none.conf"))
    monkeypatch.setattr(config, "DEFAULT_SOCKETS", (str(tmp_path / "nosock"),))
    monkeypatch.setattr(config, "DEFAULT_USERDBS", (str(tmp_path / "a"), str(tmp_path / "b")))
    (tmp_path / "b.dat").write_bytes(b"")
    settings = load_settings(None, {})
    assert (settings.source_kind, settings.source_path) == ("userdb", str(tmp_path / "b"))
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
