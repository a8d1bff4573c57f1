"""authkit.userdb.source: lookups and logins against userdb text files and
directories (the compiled pair is covered in the Courier integration tests).

Hashes are made by authkit here; tests/integration has the same checks on
fixtures made by Courier's own tools."""

import os

import pytest

from authkit.errors import BadPassword, Misuse, TemporaryFailure, UnknownUser
from authkit.schemes import make_password_hash
from authkit.schemes.hmacstate import hmac_state
from authkit.userdb.source import UserdbSource


def write_userdb(path, lines):
    path.write_bytes(b"".join(line.encode() + b"\n" for line in lines))
    os.chmod(path, 0o600)
    return path


@pytest.fixture
def userdb(tmp_path):
    sha = make_password_hash(b"pw-andrew", "sha512-crypt")
    imap = make_password_hash(b"andrew-imap", "md5-crypt")
    return write_userdb(
        tmp_path / "userdb",
        [
            "# the seed installation's accounts",
            f"andrew@example.com\tuid=5000|gid=5000|home=/home/vmail/andrew|gecos=Andrew Example,Room 1|systempw={sha}|imappw={imap}",
            "broken line without tab",
            f"hmaconly@example.org\tuid=5000|gid=5000|home=/h|hmac-md5pw={hmac_state(b'secret', 'md5')}",
            "nohome@example.org\tuid=5000|gid=5000|systempw=x",
            "andrew@example.com\tuid=1|gid=1|home=/second|systempw=x",
        ],
    )


def test_lookup_is_exact_and_case_sensitive(userdb):
    source = UserdbSource(str(userdb))
    account = source.lookup("andrew@example.com")
    assert (account.uid, account.home, account.fullname) == (5000, "/home/vmail/andrew", "Andrew Example")
    with pytest.raises(UnknownUser):
        source.lookup("Andrew@Example.com")
    with pytest.raises(UnknownUser):
        source.lookup("andrew@example.com\r")


def test_first_record_of_a_name_wins(userdb):
    assert UserdbSource(str(userdb)).lookup("andrew@example.com").uid == 5000


def test_service_password_then_systempw(userdb):
    source = UserdbSource(str(userdb))
    assert source.authenticate("andrew@example.com", b"andrew-imap", "imap").uid == 5000
    with pytest.raises(BadPassword):
        source.authenticate("andrew@example.com", b"pw-andrew", "imap")
    assert source.authenticate("andrew@example.com", b"pw-andrew", "pop3").uid == 5000


def test_unknown_user_and_wrong_password_are_distinct_rejections(userdb):
    source = UserdbSource(str(userdb))
    with pytest.raises(UnknownUser):
        source.authenticate("nobody@example.com", b"pw", "login")
    with pytest.raises(BadPassword):
        source.authenticate("andrew@example.com", b"wrong", "login")


def test_empty_password_never_matches(userdb):
    with pytest.raises(BadPassword):
        UserdbSource(str(userdb)).authenticate("andrew@example.com", b"", "login")


def test_record_without_home_is_invisible(userdb):
    with pytest.raises(UnknownUser):
        UserdbSource(str(userdb)).lookup("nohome@example.org")


def test_hmac_only_user_cram_ok_login_fails(userdb):
    import hmac as std_hmac

    source = UserdbSource(str(userdb))
    challenge = b"<1896.697170952@lab.example>"
    digest = std_hmac.new(b"secret", challenge, "md5").hexdigest()
    assert source.authenticate_cram(challenge, "hmaconly@example.org", digest, "md5", "imap").uid == 5000
    with pytest.raises(BadPassword):
        source.authenticate_cram(challenge, "hmaconly@example.org", "0" * 32, "md5", "imap")
    with pytest.raises(BadPassword):
        source.authenticate("hmaconly@example.org", b"secret", "imap")
    with pytest.raises(Misuse):
        source.authenticate_cram(challenge, "hmaconly@example.org", digest, "sha512", "imap")


def test_malformed_line_is_reported_and_hides_nothing(userdb):
    problems = []
    source = UserdbSource(str(userdb), on_problem=lambda *p: problems.append(p))
    names = [account.address for account in source.enumerate()]
    assert names == ["andrew@example.com", "hmaconly@example.org"]
    assert (str(userdb), 3, "no TAB between the name and the fields") in problems
    assert any(p[1] == 6 and "duplicate" in p[2] for p in problems)
    assert any(p[1] == 5 and "nohome@example.org" in p[2] for p in problems)


def test_directory_layout_sets_source_location(tmp_path):
    root = tmp_path / "userdb"
    (root / "example.org").mkdir(parents=True)
    (root / ".lock.example.com").write_text("")
    write_userdb(root / "example.com", ["a@example.com\tuid=1|gid=1|home=/a"])
    write_userdb(root / "example.org" / "sub", ["b@example.org\tuid=2|gid=2|home=/b"])
    source = UserdbSource(str(root))
    assert source.lookup("a@example.com").source_location == "example.com/"
    assert source.lookup("b@example.org").source_location == "example.org/sub/"
    assert sorted(a.address for a in source.enumerate()) == ["a@example.com", "b@example.org"]


def test_missing_userdb_is_a_temporary_failure_naming_it(tmp_path):
    path = str(tmp_path / "nothere")
    with pytest.raises(TemporaryFailure, match="nothere"):
        UserdbSource(path).lookup("a")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_userdb_is_a_temporary_failure_naming_it(tmp_path):
    path = write_userdb(tmp_path / "userdb", ["a\tuid=1|gid=1|home=/"])
    os.chmod(path, 0)
    with pytest.raises(TemporaryFailure, match="userdb"):
        UserdbSource(str(path)).lookup("a")


def test_change_password_rewrites_one_field_in_place(userdb):
    source = UserdbSource(str(userdb))
    before = userdb.read_bytes().split(b"\n")
    source.change_password("andrew@example.com", b"andrew-imap", b"N3w-imap-pw", "imap")
    after = userdb.read_bytes().split(b"\n")
    changed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
    assert changed == [1] and len(before) == len(after)
    old_fields = before[1].split(b"|")
    new_fields = after[1].split(b"|")
    assert [f.split(b"=")[0] for f in old_fields] == [f.split(b"=")[0] for f in new_fields]
    assert new_fields[-1].startswith(b"imappw=$6$")
    assert source.authenticate("andrew@example.com", b"N3w-imap-pw", "imap")
    with pytest.raises(BadPassword):
        source.authenticate("andrew@example.com", b"andrew-imap", "imap")
    assert source.authenticate("andrew@example.com", b"pw-andrew", "pop3")  # systempw untouched
    assert oct(os.stat(userdb).st_mode & 0o777) == "0o600"
    assert not (userdb.parent / ".tmp.userdb").exists()


def test_change_password_updates_hmac_fields_holding_the_old_password(tmp_path):
    sha = make_password_hash(b"old-secret", "sha512-crypt")
    userdb = write_userdb(
        tmp_path / "userdb",
        [f"u\tuid=500|gid=500|home=/h|systempw={sha}|hmac-md5pw={hmac_state(b'old-secret', 'md5')}"
         f"|hmac-sha1pw={hmac_state(b'other', 'sha1')}"],
    )
    UserdbSource(str(userdb)).change_password("u", b"old-secret", b"new-secret", "login")
    text = userdb.read_text()
    assert f"hmac-md5pw={hmac_state(b'new-secret', 'md5')}" in text
    assert f"hmac-sha1pw={hmac_state(b'other', 'sha1')}" in text


def test_change_password_with_wrong_old_password_writes_nothing(userdb):
    before = userdb.read_bytes()
    with pytest.raises(BadPassword):
        UserdbSource(str(userdb)).change_password("andrew@example.com", b"wrong", b"whatever1", "login")
    assert userdb.read_bytes() == before


def test_change_password_verifies_the_old_password_once_and_applies_the_policy_inside(tmp_path, monkeypatch):
    """issue 16: the source decides inside the locked change: one verification
    of the old password, then ``check_account`` with the account it opened; a
    refusal there writes nothing."""
    from authkit import schemes
    from authkit.errors import PolicyRefused
    from authkit.policy import check_uid

    sha = make_password_hash(b"old-secret", "sha512-crypt")
    userdb = write_userdb(tmp_path / "userdb", [f"u\tuid=500|gid=500|home=/h|systempw={sha}"])
    calls = []
    real_verify = schemes.verify_password
    monkeypatch.setattr(schemes, "verify_password", lambda *a: calls.append(a) or real_verify(*a))
    seen = []
    source = UserdbSource(str(userdb))
    source.change_password("u", b"old-secret", b"new-secret", check_account=seen.append)
    assert len(calls) == 1 and [a.uid for a in seen] == [500]
    before = userdb.read_bytes()

    class Settings:
        min_uid = 1000

    with pytest.raises(PolicyRefused):
        source.change_password("u", b"new-secret", b"third-secret", check_account=lambda a: check_uid(a, Settings))
    assert userdb.read_bytes() == before


def test_change_password_changes_the_field_the_old_password_was_checked_against(tmp_path):
    """issue 16: the field comes from Account's rule (``imappw`` without ``=`` is
    no password field, so imap logins use systempw), not from a copy of it."""
    sha = make_password_hash(b"old-secret", "sha512-crypt")
    userdb = write_userdb(tmp_path / "userdb", [f"u\tuid=500|gid=500|home=/h|imappw|systempw={sha}"])
    source = UserdbSource(str(userdb))
    source.change_password("u", b"old-secret", b"new-secret", "imap")
    fields = userdb.read_bytes().rstrip(b"\n").split(b"\t")[1].split(b"|")
    assert fields[3] == b"imappw" and fields[4].startswith(b"systempw=$6$")
    assert source.authenticate("u", b"new-secret", "imap") and source.authenticate("u", b"new-secret", "pop3")
