"""The poppassd dialogue state machine (authkit.poppassd), without sockets.

Each row of the dialogue table in spec poppassd.md section 2.1 (captured from
Debian's poppassd 1.8.5) is a test below, named ``test_row_<n>_...``; where
courierpassd deliberately differs from 1.8.5 the test says so (see
docs/courierpassd.8, DIALOGUE).  Every client input is fed whole, byte by byte and
with CRLF and bare LF line ends (``feed`` / the ``mode`` fixture), like h11's
``tr()``.
"""

from __future__ import annotations

import pytest

from authkit.config import Settings
from authkit.poppassd import (
    BAD_PASSWORD,
    BYE,
    CHANGED,
    ABORTED,
    CLOSED,
    LINE_TOO_LONG,
    LOW_UID,
    MAX_LINE,
    NEW_PASSWORD_PLEASE,
    OLD_PASSWORD_INCORRECT,
    PASSWORD_CHANGED,
    PASSWORD_PLEASE,
    PASSWORD_REQUIRED,
    POLICY,
    PROTOCOL_ERROR,
    QUIT_REQUIRED,
    SERVER_ERROR,
    TEMPFAIL,
    TIMED_OUT,
    TIMEOUT,
    TRANSITIONS,
    UNKNOWN_USER,
    USERNAME_REQUIRED,
    WANT_QUIT,
    ChangePassword,
    Close,
    Delay,
    PoppassdProtocolError,
    PoppassdSession,
    Reply,
    VerifyOld,
    greeting,
    password_too_long,
    split_command,
    username_too_long,
)

OLD = b"Old-Passw0rd-1"
NEW = b"New-Passw0rd-2"


def make(**overrides: object) -> PoppassdSession:
    session = PoppassdSession(Settings(**overrides), "0.1.0")
    assert session.start() == [greeting("0.1.0")]
    return session


@pytest.fixture(params=["whole", "bytewise"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=[b"\r\n", b"\n"], ids=["crlf", "lf"])
def eol(request: pytest.FixtureRequest) -> bytes:
    return request.param


def feed(session: PoppassdSession, data: bytes, mode: str) -> list:
    """Feed ``data`` whole or one byte at a time; return every action produced."""
    if mode == "whole":
        return session.receive_data(data)
    actions: list = []
    for i in range(len(data)):
        actions += session.receive_data(data[i : i + 1])
    return actions


def to_new_password_step(session: PoppassdSession, mode: str, eol: bytes, user: bytes = b"ppdtest") -> None:
    assert feed(session, b"user " + user + eol, mode) == [PASSWORD_PLEASE]
    assert feed(session, b"pass " + OLD + eol, mode) == [VerifyOld(user.decode(), OLD)]
    assert session.old_password_ok() == [NEW_PASSWORD_PLEASE]


def test_greeting_is_the_courierpassd_banner_nmap_matches() -> None:
    assert greeting("0.1.0").data == b"200 courierpassd v0.1.0 hello, who are you?\r\n"


def test_replies_are_one_crlf_line_with_code_200_or_500() -> None:
    import authkit.poppassd as p

    replies = [v for v in vars(p).values() if isinstance(v, Reply)]
    assert len(replies) >= 12
    for reply in replies:
        assert reply.code in (200, 500)
        assert reply.data.endswith(b"\r\n") and reply.data.count(b"\n") == 1
        assert reply.data.startswith(str(reply.code).encode() + b" ")


# -- the rows of poppassd.md section 2.1 -----------------------------------------


def test_row_1_success_dialogue_commits_before_answering(mode: str, eol: bytes) -> None:
    session = make()
    to_new_password_step(session, mode, eol)
    assert feed(session, b"newpass " + NEW + eol, mode) == [ChangePassword("ppdtest", OLD, NEW)]
    assert session.password_changed() == [PASSWORD_CHANGED]
    assert PASSWORD_CHANGED.data == b"200 Password changed\r\n"
    assert feed(session, b"quit" + eol, mode) == [BYE, Close(CHANGED)]
    assert BYE.data == b"200 Bye\r\n"
    assert session.state == CLOSED and session.outcome == CHANGED


@pytest.mark.parametrize("reason", [BAD_PASSWORD, UNKNOWN_USER, LOW_UID])
def test_row_2_3_17_bad_password_unknown_user_low_uid_same_delay_and_text(mode: str, eol: bytes, reason: str) -> None:
    # 1.8.5 leaks (row 17: no delay for low uid); courierpassd answers all three alike.
    session = make(bad_pass_delay=3)
    assert feed(session, b"user nosuchuser" + eol, mode) == [PASSWORD_PLEASE]
    assert feed(session, b"pass whatever1" + eol, mode) == [VerifyOld("nosuchuser", b"whatever1")]
    actions = session.old_password_refused(reason)
    assert actions == [Delay(3.0), OLD_PASSWORD_INCORRECT, Close(reason)]
    assert OLD_PASSWORD_INCORRECT.data == b"500 Old password is incorrect\r\n"
    assert session.receive_data(b"pass again\r\n") == []


def test_delay_zero_sends_refusal_at_once() -> None:
    session = make(bad_pass_delay=0)
    session.receive_data(b"user a\npass b\n")
    assert session.old_password_refused(BAD_PASSWORD) == [OLD_PASSWORD_INCORRECT, Close(BAD_PASSWORD)]


@pytest.mark.parametrize("keywords", [("USER", "PASS", "NEWPASS", "QUIT"), ("UsEr", "pAsS", "NewPass", "Quit")])
def test_row_4_keywords_in_any_case(mode: str, eol: bytes, keywords: tuple) -> None:
    user, pass_, newpass, quit = (k.encode() for k in keywords)
    session = make()
    assert feed(session, user + b" ppdtest" + eol, mode) == [PASSWORD_PLEASE]
    assert feed(session, pass_ + b" " + OLD + eol, mode) == [VerifyOld("ppdtest", OLD)]
    assert session.old_password_ok() == [NEW_PASSWORD_PLEASE]
    assert feed(session, newpass + b" " + NEW + eol, mode) == [ChangePassword("ppdtest", OLD, NEW)]
    assert session.password_changed() == [PASSWORD_CHANGED]
    assert feed(session, quit + eol, mode) == [BYE, Close(CHANGED)]


@pytest.mark.parametrize("first", [b"help", b"", b"user", b"user   ", b"pass x", b"newpass x", b"userx y"])
def test_row_5_anything_but_user_with_a_name_first_is_username_required(mode: str, eol: bytes, first: bytes) -> None:
    session = make()
    assert feed(session, first + eol, mode) == [USERNAME_REQUIRED, Close(PROTOCOL_ERROR, _detail(first))]


def _detail(first: bytes) -> str:
    keyword = split_command(first)[0]
    return f"{keyword or 'empty line'} in WANT_USER"


def test_row_5_quit_first_is_answered_bye_unlike_1_8_5(mode: str, eol: bytes) -> None:
    # 1.8.5 answers "500 Username required."; courierpassd honours quit at any step.
    session = make()
    assert feed(session, b"quit" + eol, mode) == [BYE, Close(ABORTED, "quit")]


def test_row_6_username_longer_than_64_is_refused_never_truncated(mode: str, eol: bytes) -> None:
    session = make()
    assert feed(session, b"user " + b"u" * 64 + eol, mode) == [PASSWORD_PLEASE]
    assert session.user == "u" * 64
    session = make()
    actions = feed(session, b"user " + b"u" * 70 + eol, mode)
    assert actions == [username_too_long(64), Close(PROTOCOL_ERROR, "username too long")]
    assert actions[0].data == b"500 Username too long (max 64)\r\n"


def test_username_limit_counts_characters_not_bytes(mode: str) -> None:
    session = make()
    assert feed(session, "user {}\n".format("é" * 64).encode(), mode) == [PASSWORD_PLEASE]


@pytest.mark.parametrize("line", [b"pass", b"pass ", b"pass \t "])
def test_row_7_pass_without_argument_is_password_required(mode: str, eol: bytes, line: bytes) -> None:
    session = make()
    feed(session, b"user ppdtest" + eol, mode)
    assert feed(session, line + eol, mode)[0] == PASSWORD_REQUIRED
    assert session.state == CLOSED


def test_row_8_newpass_at_the_pass_step_is_password_required(mode: str, eol: bytes) -> None:
    session = make()
    feed(session, b"user ppdtest" + eol, mode)
    assert feed(session, b"newpass foo" + eol, mode) == [PASSWORD_REQUIRED, Close(PROTOCOL_ERROR, "newpass in WANT_PASS")]


def test_row_9_short_new_password_is_refused_by_policy(mode: str, eol: bytes) -> None:
    # 1.8.5 accepted "ab"; courierpassd enforces min_password_length (8).
    session = make()
    to_new_password_step(session, mode, eol)
    actions = feed(session, b"newpass ab" + eol, mode)
    assert actions == [Reply(500, "New password too short (min 8)"), Close(POLICY, "New password too short (min 8)")]


def test_row_10_new_password_equal_to_old_is_refused(mode: str, eol: bytes) -> None:
    session = make()
    to_new_password_step(session, mode, eol)
    actions = feed(session, b"newpass " + OLD + eol, mode)
    assert actions[0].code == 500 and "differ" in actions[0].text
    assert actions[-1].outcome == POLICY


def test_row_11_argument_is_everything_after_the_one_separator(mode: str, eol: bytes) -> None:
    # 1.8.5's sscanf("pass %128c") drops leading blanks; issue 17 item 4: a password
    # that starts with a blank must be stored as typed, so only one separator goes.
    session = make()
    feed(session, b"user ppdtest" + eol, mode)
    assert feed(session, b"pass \t two words pw " + eol, mode) == [VerifyOld("ppdtest", b"\t two words pw ")]
    session.old_password_ok()
    assert feed(session, b"newpass   New words 2  " + eol, mode) == [
        ChangePassword("ppdtest", b"\t two words pw ", b"  New words 2  ")]


def test_leading_blanks_of_every_argument_are_kept(mode: str, eol: bytes) -> None:
    """Issue 17 item 4: ``newpass  Lead-space-pw1`` stored ``Lead-space-pw1``."""
    session = make()
    assert feed(session, b"user  ppdtest" + eol, mode) == [PASSWORD_PLEASE]
    assert session.user == " ppdtest"
    assert feed(session, b"pass  " + OLD + eol, mode) == [VerifyOld(" ppdtest", b" " + OLD)]
    session.old_password_ok()
    assert feed(session, b"newpass  Lead-space-pw1" + eol, mode) == [
        ChangePassword(" ppdtest", b" " + OLD, b" Lead-space-pw1")]


def test_row_12_eof_after_the_change_is_a_success_without_reply(mode: str, eol: bytes) -> None:
    session = make()
    to_new_password_step(session, mode, eol)
    feed(session, b"newpass " + NEW + eol, mode)
    session.password_changed()
    assert session.receive_data(b"") == [Close(CHANGED)]
    assert session.outcome == CHANGED


def test_row_13_garbage_instead_of_quit_is_quit_required_but_still_changed(mode: str, eol: bytes) -> None:
    session = make()
    to_new_password_step(session, mode, eol)
    feed(session, b"newpass " + NEW + eol, mode)
    session.password_changed()
    assert feed(session, b"garbage" + eol, mode) == [QUIT_REQUIRED, Close(CHANGED)]


def test_row_14_cr_only_line_end_gets_no_reply(mode: str) -> None:
    session = make()
    assert feed(session, b"user x\r", mode) == []
    assert session.receive_data(b"\n") == [PASSWORD_PLEASE]  # the CR belonged to a CRLF


def test_row_15_idle_client_gets_timeout_reply_unlike_1_8_5() -> None:
    session = make()
    session.receive_data(b"user x\n")
    assert session.timeout() == [TIMEOUT, Close(TIMED_OUT)]
    assert session.receive_data(b"pass y\n") == []


def test_timeout_is_ignored_while_the_caller_works() -> None:
    session = make()
    session.receive_data(b"user x\npass y\n")
    assert session.timeout() == []
    assert session.old_password_ok() == [NEW_PASSWORD_PLEASE]


def test_row_16_pipelined_lines_are_all_answered_in_order() -> None:
    session = make()
    actions = session.receive_data(b"user x\r\npass y\r\nnewpass " + NEW + b"\r\nquit\r\n")
    assert actions == [PASSWORD_PLEASE, VerifyOld("x", b"y")]
    assert session.old_password_ok() == [NEW_PASSWORD_PLEASE, ChangePassword("x", b"y", NEW)]
    assert session.password_changed() == [PASSWORD_CHANGED, BYE, Close(CHANGED)]


def test_row_18_passwords_longer_than_128_are_refused_never_truncated(mode: str, eol: bytes) -> None:
    session = make()
    feed(session, b"user x" + eol, mode)
    assert feed(session, b"pass " + b"p" * 128 + eol, mode) == [VerifyOld("x", b"p" * 128)]
    session.old_password_ok()
    actions = feed(session, b"newpass " + b"n" * 150 + eol, mode)
    assert actions == [password_too_long(128), Close(PROTOCOL_ERROR, "password too long")]


def test_max_password_length_bounds_the_new_password_only(mode: str, eol: bytes) -> None:
    """Issue 17 item 11: a long *old* password (set before the limit was lowered,
    or by another tool) was refused, so it could never be changed."""
    session = make()
    feed(session, b"user x" + eol, mode)
    assert feed(session, b"pass " + b"p" * 129 + eol, mode) == [VerifyOld("x", b"p" * 129)]
    assert session.old_password_ok() == [NEW_PASSWORD_PLEASE]
    assert feed(session, b"newpass " + NEW + eol, mode) == [ChangePassword("x", b"p" * 129, NEW)]


def test_row_19_policy_refusal_from_the_source_is_one_500_line() -> None:
    # 1.8.5 sent two 500 lines for a PAM message; courierpassd sends one.
    session = make()
    session.receive_data(b"user x\npass " + OLD + b"\nnewpass " + NEW + b"\n")
    session.old_password_ok()
    actions = session.change_refused("Password has been\r\nalready used")
    assert actions == [Reply(500, "Password has been  already used"), Close(POLICY, "Password has been  already used")]


# -- beyond the table -------------------------------------------------------------


def test_source_down_at_verify_is_server_error_without_delay() -> None:
    session = make(bad_pass_delay=3)
    session.receive_data(b"user x\npass y\n")
    assert session.server_error("socket gone") == [SERVER_ERROR, Close(TEMPFAIL, "socket gone")]
    assert SERVER_ERROR.data == b"500 Server error, password not changed\r\n"


def test_source_down_at_change_is_server_error() -> None:
    session = make()
    session.receive_data(b"user x\npass " + OLD + b"\nnewpass " + NEW + b"\n")
    session.old_password_ok()
    assert session.server_error() == [SERVER_ERROR, Close(TEMPFAIL)]


def test_old_password_gone_at_change_time_is_refused_like_a_bad_password() -> None:
    session = make(bad_pass_delay=1)
    session.receive_data(b"user x\npass " + OLD + b"\nnewpass " + NEW + b"\n")
    session.old_password_ok()
    assert session.old_password_refused(BAD_PASSWORD) == [Delay(1.0), OLD_PASSWORD_INCORRECT, Close(BAD_PASSWORD)]


def test_line_over_1000_bytes_is_refused_before_its_newline_arrives(mode: str) -> None:
    session = make()
    assert feed(session, b"x" * MAX_LINE, mode) == []
    assert feed(session, b"y", mode) == [LINE_TOO_LONG, Close(PROTOCOL_ERROR, "line too long")]


def test_line_of_exactly_1000_bytes_plus_crlf_is_a_line(mode: str) -> None:
    session = make()
    line = b"user " + b"u" * (MAX_LINE - 5)
    assert feed(session, line + b"\r\n", mode)[0] == username_too_long(64)


def test_eof_mid_line_never_acts_on_the_partial_line(mode: str) -> None:
    session = make()
    to_new_password_step(session, mode, b"\n")
    assert feed(session, b"newpass " + NEW, mode) == []
    assert session.receive_data(b"") == [Close(ABORTED, "eof")]


def test_eof_while_the_change_runs_still_reports_it() -> None:
    session = make()
    session.receive_data(b"user x\npass " + OLD + b"\nnewpass " + NEW + b"\n")
    session.old_password_ok()
    assert session.receive_data(b"") == []
    assert session.password_changed() == [PASSWORD_CHANGED, Close(CHANGED)]


def test_quit_before_the_change_is_bye_and_aborted(mode: str) -> None:
    session = make()
    feed(session, b"user x\n", mode)
    assert feed(session, b"QUIT\n", mode) == [BYE, Close(ABORTED, "quit")]


def test_data_after_close_is_ignored() -> None:
    session = make()
    session.receive_data(b"help\n")
    assert session.receive_data(b"user x\n") == []
    assert session.receive_data(b"") == []
    assert session.timeout() == []


def test_verdict_nobody_asked_for_is_a_caller_error() -> None:
    session = make()
    with pytest.raises(PoppassdProtocolError):
        session.old_password_ok()
    with pytest.raises(PoppassdProtocolError):
        session.password_changed()
    with pytest.raises(PoppassdProtocolError):
        session.start()


def test_actions_never_show_passwords_in_repr() -> None:
    assert "s3cret" not in repr(VerifyOld("x", b"s3cret"))
    assert "s3cret" not in repr(ChangePassword("x", b"s3cret", b"n3w-s3cret"))


def test_tab_separates_keyword_and_argument() -> None:
    assert split_command(b"USER\tandrew") == ("user", b"andrew")
    assert split_command(b"newpass  a b ") == ("newpass", b" a b ")
    assert split_command(b"pass\t\tx") == ("pass", b"\tx")
    assert split_command(b"quit") == ("quit", b"")
    assert split_command(b"") == ("", b"")


def test_non_utf8_username_is_carried_losslessly() -> None:
    session = make()
    session.receive_data(b"user \xff\xfe\npass y\n")
    assert session.user.encode("utf-8", "surrogateescape") == b"\xff\xfe"


def test_every_transition_target_is_a_known_state() -> None:
    states = {s for s, _ in TRANSITIONS} | set(TRANSITIONS.values())
    assert states == {"WANT_USER", "WANT_PASS", "VERIFYING", "WANT_NEWPASS", "CHANGING", WANT_QUIT, CLOSED}


def test_every_state_change_goes_through_the_table() -> None:
    """Issue 16: the closing transitions (timeout, shutdown, EOF, protocol errors)
    bypassed TRANSITIONS.  Now only _transition assigns the state (and __init__
    the first one), and every open state has its closing triggers."""
    import inspect

    import authkit.poppassd as module

    source = inspect.getsource(module.PoppassdSession)
    assert source.count("self.state = ") == 2  # __init__ and _transition
    for state in module.OPEN_STATES:
        for trigger in ("error", "eof", "timeout", "shutdown", "quit"):
            assert TRANSITIONS[(state, trigger)] == CLOSED, (state, trigger)
    seen = []
    original = PoppassdSession._transition

    def spy(self, trigger):  # noqa: ANN001
        seen.append((self.state, trigger))
        original(self, trigger)

    PoppassdSession._transition = spy
    try:
        for data, trigger in ((b"user x\n" + b"y" * 2000, "error"), (b"user x\n", "eof"), (b"bogus\n", "error")):
            session = make()
            session.receive_data(data)
            if trigger == "eof":
                session.receive_data(b"")
            assert session.state == CLOSED and seen[-1][1] == trigger
        session = make()
        session.timeout()
        assert seen[-1] == (module.WANT_USER, "timeout")
        session = make()
        session.shutdown()
        assert seen[-1] == (module.WANT_USER, "shutdown")
    finally:
        PoppassdSession._transition = original
