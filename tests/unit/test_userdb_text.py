"""authkit.userdb.text: the userdb line format, without files."""

import pytest

from authkit.account import Account
from authkit.userdb.text import (
    InvalidRecord,
    MalformedLine,
    edit_fields,
    first_values,
    format_line,
    is_password_field,
    make_account,
    parse_fields,
    split_compiled,
    split_line,
)

# The record of courier-authlib.md section 2 (made there by Courier's userdb script).
ANDREW = (
    "uid=5000|quota=10000000S|gecos=Andrew Example,Room 1,555-0100|options=disableshared=1"
    "|gid=5000|home=/home/vmail/example.com/andrew|mail=/home/vmail/example.com/andrew/Maildir"
    "|hmac-md5pw=c932c8cb|imappw=6QnNp7Xr7cRaM|systempw=$1$KOxTc4e0$pC03/FgvLXyUWihHPLTvM/"
)


def test_comment_and_blank_lines_are_not_records():
    assert split_line(b"") is None
    assert split_line(b"# andrew@example.com\tuid=1") is None


def test_only_the_first_tab_splits():
    assert split_line(b"a@b\tgecos=x\ty|uid=1") == (b"a@b", b"gecos=x\ty|uid=1")


def test_line_without_tab_is_malformed():
    with pytest.raises(MalformedLine):
        split_line(b"notab-line")


def test_empty_name_is_malformed():
    with pytest.raises(MalformedLine):
        split_line(b"\tuid=1")


def test_value_may_hold_equals_and_field_without_equals_is_empty():
    pairs = parse_fields("options=disableshared=1,wbnoimages=1|weirdpw|uid=5")
    assert pairs == [("options", "disableshared=1,wbnoimages=1"), ("weirdpw", ""), ("uid", "5")]


def test_first_occurrence_of_a_field_wins():
    assert first_values(parse_fields("uid=1|uid=2"))["uid"] == "1"


def test_password_fields_are_named_pw_and_have_a_value():
    assert is_password_field("systempw=x")
    assert is_password_field("pop3-hmac-md5pw=00")
    assert not is_password_field("weirdpw")  # no '=': makeuserdb keeps it in userdb.dat
    assert not is_password_field("pw-notes=x")


def test_split_compiled_matches_makeuserdb_shape():
    main, shadow = split_compiled(ANDREW, "")
    assert main.endswith("|mail=/home/vmail/example.com/andrew/Maildir|_=")
    assert "pw=" not in main
    assert shadow == "hmac-md5pw=c932c8cb|imappw=6QnNp7Xr7cRaM|systempw=$1$KOxTc4e0$pC03/FgvLXyUWihHPLTvM/"


def test_split_compiled_directory_location_and_no_shadow():
    main, shadow = split_compiled("uid=1|gid=1|home=/h", "example.com/")
    assert main == "uid=1|gid=1|home=/h|_=example.com/"
    assert shadow is None


def test_make_account_maps_courier_fields():
    main, shadow = split_compiled(ANDREW, "")
    account = make_account(
        "andrew@example.com", first_values(parse_fields(main)), first_values(parse_fields(shadow)), "imap"
    )
    assert account == Account(
        address="andrew@example.com",
        uid=5000,
        gid=5000,
        home="/home/vmail/example.com/andrew",
        maildir="/home/vmail/example.com/andrew/Maildir",
        quota="10000000S",
        fullname="Andrew Example",
        options="disableshared=1",
    )
    assert account.encrypted_password == "6QnNp7Xr7cRaM"  # imappw for service imap
    assert account.password_for("pop3").startswith("$1$")  # systempw otherwise


def test_make_account_merges_default_options_like_courier():
    values = {"uid": "1", "gid": "1", "home": "/h", "options": "disablewebmail=1,group=tmda"}
    account = make_account("t", values, {}, default_options="disableshared=0,wbnoimages=1,group=staff")
    assert account.options == "disablewebmail=1,group=tmda,disableshared=0,wbnoimages=1"


@pytest.mark.parametrize("missing", ["home", "uid", "gid"])
def test_record_lacking_home_uid_or_gid_is_invisible(missing):
    values = {"uid": "1", "gid": "1", "home": "/h"}
    del values[missing]
    with pytest.raises(InvalidRecord):
        make_account("x", values, {})


def test_non_numeric_uid_is_refused_not_read_as_root():
    with pytest.raises(InvalidRecord):
        make_account("x", {"uid": "abc", "gid": "1", "home": "/h"}, {})


def test_edit_keeps_order_and_other_bytes():
    assert edit_fields("a=1|systempw=old|b=2", [("systempw", "new")]) == "a=1|systempw=new|b=2"


def test_edit_appends_new_fields_in_argument_order_and_unsets():
    assert edit_fields("a=1|b=2", [("d", "4"), ("c", "3")], ["a"]) == "b=2|d=4|c=3"


def test_edit_drops_shadowed_duplicates_so_the_new_value_is_read():
    edited = edit_fields("x=1|x=2", [("x", "3")])
    assert first_values(parse_fields(edited))["x"] == "3"
    assert edited == "x=3"


@pytest.mark.parametrize("value", ["a|b", "a\nb", "a\rb", "a\0b"])
def test_edit_refuses_values_that_would_inject_fields_or_lines(value):
    with pytest.raises(ValueError):
        edit_fields("a=1", [("systempw", value)])


@pytest.mark.parametrize("name", ["", "a|b", "a=b", "a\tb", "a\nb"])
def test_edit_refuses_bad_field_names(name):
    with pytest.raises(ValueError):
        edit_fields("a=1", [(name, "v")])


def test_non_utf8_bytes_round_trip():
    parts = split_line(b"\xffuser\tuid=1|gecos=\xfe")
    from authkit.userdb.text import decode

    name, fields = decode(parts[0]), decode(parts[1])
    assert format_line(name, fields) == b"\xffuser\tuid=1|gecos=\xfe\n"


def test_a_field_given_twice_takes_its_last_value_whether_new_or_existing():
    assert edit_fields("a=1", [("a", "2"), ("a", "3")]) == "a=3"
    assert edit_fields("a=1", [("b", "2"), ("b", "3")]) == "a=1|b=3"


def test_split_compiled_keeps_inner_empty_fields_like_perl_split():
    # makeuserdb's split(/\|/) keeps inner empty fields and drops trailing ones;
    # the text reader, the editor and the compiler share this one rule
    assert split_compiled("|a=1||b=2||", "") == ("|a=1||b=2|_=", None)
    assert split_compiled("", "x/") == ("_=x/", None)
