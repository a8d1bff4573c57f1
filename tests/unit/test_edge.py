"""authkit.cli._edge: the getopt, write_all and exit status the lean programs
share (issue 16: each had its own)."""

from __future__ import annotations

import os

import pytest

from authkit.cli._edge import COMMON_OPTIONS, exit_status, getopt, write_all
from authkit.errors import BadPassword, ConfigError, Misuse, PolicyRefused, TemporaryFailure, UnknownUser

OPTIONS = {"-s": ("service", True), "--service": ("service", True), "-c": ("change", False),
           "-v": ("verbose", False), **COMMON_OPTIONS}


@pytest.mark.parametrize("argv, found, operands", [
    (["-cv", "-simap", "x"], [("change", True), ("verbose", True), ("service", "imap")], ["x"]),
    (["-s", "imap", "--config=/c", "--stderr"], [("service", "imap"), ("config", "/c"), ("stderr", True)], []),
    (["--service", "pop3", "--", "-c"], [("service", "pop3")], ["-c"]),
    (["-cs", "imap"], [("change", True), ("service", "imap")], []),
    (["a", "-c", "b"], [("change", True)], ["a", "b"]),
    (["-"], [], ["-"]),
])
def test_gnu_shapes(argv: list, found: list, operands: list) -> None:
    assert getopt(argv, OPTIONS) == (found, operands)


def test_without_permute_the_first_operand_ends_the_options() -> None:
    assert getopt(["-c", "prog", "-v", "--", "x"], OPTIONS, permute=False) == (
        [("change", True)], ["prog", "-v", "--", "x"])
    assert getopt(["--", "--", "x"], OPTIONS, permute=False) == ([], ["--", "x"])


@pytest.mark.parametrize("argv, message", [
    (["-x"], "unknown option -x"), (["--bogus"], "unknown option --bogus"),
    (["--serv", "x"], "unknown option --serv"), (["-s"], "option -s needs a value"),
    (["--service"], "option --service needs a value"), (["--stderr=yes"], "option --stderr takes no value"),
])
def test_misuse(argv: list, message: str) -> None:
    with pytest.raises(Misuse) as info:
        getopt(argv, OPTIONS)
    assert str(info.value) == message


def test_exit_status_comes_from_the_error_class() -> None:
    assert [exit_status(e) for e in (UnknownUser(), BadPassword(), PolicyRefused(), Misuse(),
                                     TemporaryFailure(), ConfigError(), ValueError())] == [1, 1, 1, 2, 111, 111, 111]


def test_write_all_writes_everything_through_a_pipe() -> None:
    r, w = os.pipe()
    data = b"x" * 200_000  # more than a pipe takes at once: a reader drains it
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(w)
        got = b""
        while chunk := os.read(r, 65536):
            got += chunk
        os._exit(0 if got == data else 1)
    os.close(r)
    write_all(w, data)
    os.close(w)
    assert os.waitpid(pid, 0)[1] == 0
