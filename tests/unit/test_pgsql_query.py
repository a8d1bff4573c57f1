"""authkit.pgsql.query: Courier authpgsql's queries as SQL text with bound
parameters (sans-I/O; no server needed)."""

from __future__ import annotations

import pytest

from authkit.errors import ConfigError
from authkit.pgsql.query import (
    CHPASS_VARIABLES,
    SELECT_VARIABLES,
    PgsqlQueries,
    UnsendableValue,
    compile_sql,
    field_sql,
    quote_identifier,
    split_login,
)


def test_default_select_is_courier_column_order_with_the_name_bound() -> None:
    q = PgsqlQueries(clear_field="clear", name_field="name", maildir_field="maildir",
                     quota_field="quota", options_field="options", where_clause="server='a'")
    st = q.select("alice@example.com", "imap")
    assert st.sql == ('SELECT "id", "crypt", "clear", "uid", "gid", "home", "maildir", "quota", '
                      '"name", "options" FROM "passwd" WHERE "id" = %s AND (server=\'a\')')
    assert st.params == ("alice@example.com",)


def test_unset_fields_are_the_empty_literal_and_no_where_clause_is_1_eq_1() -> None:
    st = PgsqlQueries().select("a", "imap")
    assert st.sql == ("SELECT \"id\", \"crypt\", '', \"uid\", \"gid\", \"home\", '', '', '', '' "
                      'FROM "passwd" WHERE "id" = %s AND (1=1)')


def test_service_courier_reads_defaultdelivery_instead_of_maildir() -> None:
    q = PgsqlQueries(maildir_field="maildir", defaultdelivery_field="defaultdelivery")
    assert '"maildir"' in q.select("a", "imap").sql
    assert '"defaultdelivery"' in q.select("a", "courier").sql
    assert '"maildir"' not in q.select("a", "courier").sql


def test_default_domain_is_appended_to_a_name_without_at_only() -> None:
    q = PgsqlQueries(default_domain="example.com")
    assert q.select("alice", "imap").params == ("alice@example.com",)
    assert q.select("alice@other.org", "imap").params == ("alice@other.org",)


def test_lock_adds_for_update_to_the_default_select() -> None:
    assert PgsqlQueries().select("a", "imap", lock=True).sql.endswith(" FOR UPDATE")


@pytest.mark.parametrize("name", ["o'hara", "back\\slash", "100%_x", "é@ü.de", "a'); DROP TABLE passwd; --"])
def test_client_values_never_enter_the_sql_text(name: str) -> None:
    q = PgsqlQueries(select_clause="SELECT id FROM t WHERE l = '$(local_part)' AND d = '$(domain)'",
                     chpass_clause="UPDATE t SET c = '$(newpass_crypt)', p = '$(newpass)' "
                                   "WHERE l = '$(local_part)'",
                     enumerate_clause="SELECT id, uid, gid, home, '', '' FROM t")
    for st in (q.select(name, "imap"), q.chpass(name, name, name), PgsqlQueries().select(name, "x"),
               PgsqlQueries().chpass(name, name, name)):
        assert name.split("@")[0] not in st.sql
        assert st.params


def test_a_nul_in_a_value_cannot_be_sent() -> None:
    with pytest.raises(UnsendableValue):
        PgsqlQueries().select("a\0b", "imap")
    with pytest.raises(UnsendableValue):
        PgsqlQueries(select_clause="SELECT '$(local_part)'").select("a\0b", "imap")
    with pytest.raises(UnsendableValue):
        PgsqlQueries(clear_field="clear").chpass("a", "new\0", "x")


def test_quoted_variable_becomes_one_placeholder() -> None:
    t = compile_sql("SELECT * FROM p WHERE l = '$(local_part)' AND s = '$(service)'", "x",
                    SELECT_VARIABLES)
    assert t.sql == "SELECT * FROM p WHERE l = %s AND s = %s"
    assert t.names == ("local_part", "service")


def test_variables_inside_a_longer_literal_become_a_concatenation() -> None:
    t = compile_sql("WHERE id = '$(local_part)@$(domain)' AND x = 'it''s'", "x", SELECT_VARIABLES)
    assert t.sql == "WHERE id = (CAST(%s AS text) || '@' || CAST(%s AS text)) AND x = 'it''s'"
    assert t.names == ("local_part", "domain")


def test_a_bare_variable_is_a_placeholder_too() -> None:
    assert compile_sql("WHERE uid = $(local_part)", "x", SELECT_VARIABLES).sql == "WHERE uid = %s"


def test_percent_is_doubled_for_psycopg_everywhere_but_placeholders() -> None:
    t = compile_sql("SELECT 1 WHERE a LIKE 'x%' AND b = '$(local_part)' -- 100%", "x", SELECT_VARIABLES)
    assert t.sql == "SELECT 1 WHERE a LIKE 'x%%' AND b = %s -- 100%%"


def test_dollar_quotes_comments_and_identifiers_are_left_alone() -> None:
    text = 'SELECT $q$ $(x) $q$, "we""ird", $1 /* $(y) */ FROM t'
    assert compile_sql(text, "x", _none := frozenset()).sql == text
    assert _none == frozenset()


def test_unknown_variable_is_a_config_error_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"\$\(newpass\).*local_part"):
        compile_sql("SELECT '$(newpass)'", "pgsql_select_clause", SELECT_VARIABLES)
    with pytest.raises(ConfigError, match="no \\$"):
        compile_sql("server = $(domain)", "pgsql_where_clause")
    # Courier expands no variable in PGSQL_WHERE_CLAUSE: inside quotes it is text
    assert compile_sql("s = '$(domain)'", "pgsql_where_clause").sql == "s = '$(domain)'"


@pytest.mark.parametrize("text, message", [
    ("SELECT 'abc", "unterminated '"),
    ('SELECT "abc', "unterminated \""),
    ("SELECT 1 /* x", "unterminated /"),
    ("SELECT 1; DELETE FROM passwd", "one SQL statement"),
    ("SELECT '$(local_part'", "without"),
    ("SELECT E'$(local_part)'", "plain"),
    ("SELECT U&'$(local_part)'", "plain"),
    ("SELECT N'$(local_part)'", "plain"),
])
def test_malformed_site_sql_is_a_config_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        compile_sql(text, "pgsql_select_clause", SELECT_VARIABLES)


def test_one_trailing_semicolon_is_dropped() -> None:
    assert compile_sql("SELECT 1;  ", "x").sql == "SELECT 1"


def test_identifiers_are_quoted_after_folding_like_postgresql() -> None:
    assert quote_identifier("Passwd", "t") == '"passwd"'
    assert quote_identifier('mail."Users"', "t") == '"mail"."Users"'
    assert quote_identifier("user", "t") == '"user"'
    with pytest.raises(ConfigError):
        quote_identifier("passwd; DROP", "pgsql_user_table")
    with pytest.raises(ConfigError):
        PgsqlQueries(user_table="popbox, domain")


def test_a_field_that_is_not_a_name_is_the_sites_expression() -> None:
    assert field_sql("'disableimap=' || disableimap", "f") == "'disableimap=' || disableimap"
    assert field_sql("", "f") == "''"
    with pytest.raises(ConfigError):
        field_sql("x; DROP TABLE passwd", "f")


def test_courier_refuses_to_load_without_table_or_password_field() -> None:
    with pytest.raises(ConfigError, match="pgsql_user_table"):
        PgsqlQueries(user_table="")
    with pytest.raises(ConfigError, match="pgsql_crypt_pwfield"):
        PgsqlQueries(crypt_field="", clear_field="")
    # all three custom clauses: the field settings are not needed
    PgsqlQueries(user_table="", crypt_field="", select_clause="SELECT 1",
                 chpass_clause="UPDATE t SET a = 1", enumerate_clause="SELECT 1")


def test_default_chpass_sets_only_the_configured_password_columns() -> None:
    st = PgsqlQueries(clear_field="clear").chpass("bob", "new", "$6$x")
    assert st.sql == 'UPDATE "passwd" SET "clear" = %s, "crypt" = %s WHERE "id" = %s AND (1=1)'
    assert st.params == ("new", "$6$x", "bob")
    st = PgsqlQueries(crypt_field="", clear_field="clear", default_domain="d.org").chpass("bob", "new", "")
    assert st.sql == 'UPDATE "passwd" SET "clear" = %s WHERE "id" = %s AND (1=1)'
    assert st.params == ("new", "bob@d.org")
    assert not PgsqlQueries(crypt_field="", clear_field="clear").chpass_needs_crypt


def test_custom_chpass_binds_newpass_and_its_hash() -> None:
    q = PgsqlQueries(chpass_clause="UPDATE popbox SET clearpw='$(newpass)', password_hash="
                                   "'$(newpass_crypt)' WHERE local_part='$(local_part)' "
                                   "AND domain_name='$(domain)'", default_domain="d.org")
    st = q.chpass("bob", "pw", "$6$h")
    assert st.sql.count("%s") == 4
    assert st.params == ("pw", "$6$h", "bob", "d.org")
    assert set(CHPASS_VARIABLES) == {"local_part", "domain", "newpass", "newpass_crypt"}


def test_an_expression_password_field_needs_a_chpass_clause() -> None:
    q = PgsqlQueries(crypt_field="'{MD5}' || hash")
    assert "pgsql_chpass_clause" in q.chpass_problem
    q = PgsqlQueries(crypt_field="'{MD5}' || hash", chpass_clause="UPDATE t SET h = '$(newpass_crypt)'")
    assert q.chpass_problem == ""


def test_enumerate_default_and_custom() -> None:
    assert PgsqlQueries(where_clause="a=1").enumerate().sql == (
        "SELECT \"id\", \"uid\", \"gid\", \"home\", '', '' FROM \"passwd\" WHERE (a=1)")
    st = PgsqlQueries(enumerate_clause="SELECT n FROM t WHERE d = '$(domain)' AND s='$(service)' "
                                       "AND l <> '$(local_part)'", default_domain="d.org").enumerate()
    assert st.params == ("d.org", "enumerate", "*")


def test_split_login_is_at_the_first_at_sign() -> None:
    assert split_login("a@b@c", "d") == ("a", "b@c")
    assert split_login("a", "d") == ("a", "d")
    assert split_login("a@", "d") == ("a", "")


def test_statement_repr_hides_parameters() -> None:
    st = PgsqlQueries(clear_field="clear").chpass("bob", "hunter2", "$6$x")
    assert "hunter2" not in repr(st)


def test_an_escape_string_ends_at_its_real_closing_quote() -> None:
    t = compile_sql("SELECT E'it\\'s 100%', '$(local_part)'", "x", SELECT_VARIABLES)
    assert t.sql == "SELECT E'it\\'s 100%%', %s"
    assert t.names == ("local_part",)
