"""authkit.pgsql.source without a server: configuration, the refusals decided
before any connection, an unreachable server, and Courier's column reading.
(The behaviour against a real server is in tests/integration/test_pgsql_*.py.)"""

from __future__ import annotations

import pytest

pytest.importorskip("psycopg", reason="psycopg not installed (test extra)")

from authkit.config import Settings, parse_config  # noqa: E402
from authkit.errors import ConfigError, Misuse, PolicyRefused, TemporaryFailure  # noqa: E402
from authkit.pgsql import source as pgsource  # noqa: E402
from authkit.pgsql.query import PgsqlQueries  # noqa: E402
from authkit.pgsql.source import PgsqlSource  # noqa: E402

NOWHERE = "host=/nonexistent-authkit-test port=5432 dbname=mail user=courier"


def _settings(**values: object) -> Settings:
    values.setdefault("source", "pgsql")
    return Settings(**values)


def test_from_settings_reads_the_pgsql_keys_of_a_config_file() -> None:
    values = parse_config(
        "source = pgsql\n"
        "pgsql_connection = host=/run/postgresql dbname=mail\n"
        "pgsql_user = courier\npgsql_password = s3cret\n"
        "pgsql_clear_pwfield = clear\npgsql_default_domain = example.com\n"
        "pgsql_where_clause = server='mail1'\npgsql_statement_timeout = 2.5\npgsql_pool_size = 2\n")
    source = PgsqlSource.from_settings(Settings(**values))
    assert source.description == "pgsql mail on /run/postgresql"
    assert "s3cret" not in source.description and "s3cret" not in repr(source)
    assert source.statement_timeout == 2.5
    assert source.queries.select("alice", "imap").params == ("alice@example.com",)
    assert "server='mail1'" in source.queries.select("alice", "imap").sql
    source.close()


@pytest.mark.parametrize("values, message", [
    ({"pgsql_connection": "host='unterminated"}, "pgsql_connection"),
    ({"pgsql_connect_timeout": 0.0}, "pgsql_connect_timeout"),
    ({"pgsql_statement_timeout": -1.0}, "pgsql_statement_timeout"),
    ({"pgsql_user_table": "passwd; DROP TABLE x"}, "pgsql_user_table"),
    ({"pgsql_crypt_pwfield": "", "pgsql_clear_pwfield": ""}, "pgsql_clear_pwfield"),
    ({"pgsql_select_clause": "SELECT '$(newpass)'"}, "unknown variable"),
])
def test_bad_settings_are_config_errors(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PgsqlSource.from_settings(_settings(**values))


def test_an_unreachable_server_is_a_temporary_failure_naming_it() -> None:
    source = PgsqlSource(NOWHERE + " password=hunter2", PgsqlQueries(), connect_timeout=2)
    for call in (lambda: source.lookup("alice"), lambda: source.authenticate("alice", b"pw"),
                 lambda: source.change_password("alice", b"old", b"new-pass"),
                 lambda: list(source.enumerate())):
        with pytest.raises(TemporaryFailure, match="cannot connect") as info:
            call()
        assert "hunter2" not in str(info.value)
        assert "/nonexistent-authkit-test" in str(info.value)


def test_refusals_decided_before_asking_the_server() -> None:
    source = PgsqlSource(NOWHERE, PgsqlQueries(clear_field="clear"), connect_timeout=2)
    with pytest.raises(PolicyRefused):
        source.change_password("alice", b"old", b"new\0pass")
    with pytest.raises(PolicyRefused):
        source.change_password("alice", b"old", b"")
    with pytest.raises(PolicyRefused):
        source.change_password("alice", b"old", b"\xffnot-utf8")
    with pytest.raises(Misuse):
        source.authenticate_cram(b"<1@x>", "alice", "00", "md4")
    with pytest.raises(pgsource.BadPassword):
        source.authenticate("alice", b"")


def test_no_way_to_change_a_password_held_in_an_expression() -> None:
    source = PgsqlSource(NOWHERE, PgsqlQueries(crypt_field="'{MD5}' || hash"), connect_timeout=2)
    with pytest.raises(TemporaryFailure, match="pgsql_chpass_clause"):
        source.change_password("alice", b"old", b"new-pass")


@pytest.mark.parametrize("value, text", [(None, ""), (True, "t"), (False, "f"), (5000, "5000"),
                                          ("x", "x"), (b"caf\xc3\xa9", "café")])
def test_columns_read_as_courier_reads_them(value: object, text: str) -> None:
    assert pgsource._text(value) == text


@pytest.mark.parametrize("value, number", [(5000, 5000), ("5000", 5000), (" 7 ", 7), (0, 0),
                                            ("abc", None), ("", None), (None, None), (-1, None),
                                            ("12345678901", None), (2**32, None), (True, None),
                                            ("٣", None)])
def test_uid_and_gid_must_be_decimal_numbers(value: object, number: "int | None") -> None:
    assert pgsource._number(value) == number
