#!/usr/bin/python3 -IS
"""A scripted poppassd client: change one password and print the dialogue.

    poppassd-client.py HOST PORT USER OLDPASS NEWPASS

Sends what SquirrelMail's change_pass and Roundcube's poppassd driver send
(lower-case commands, CRLF): ``user``, ``pass``, ``newpass``, ``quit``.  Prints
each line as ``S: ...`` (server) or ``C: ...`` (client).  Like those clients it
stops at the first reply that is not 2xx/3xx.

Exit status: 0 when the server answered ``newpass`` with a 2xx reply, 1 when it
refused, 111 when the connection failed.  Standard library only; the example
passwords it is given in ``make demo`` are public (examples/README.md).
"""

from __future__ import annotations

import socket
import sys


def dialogue(host: str, port: int, user: str, old: str, new: str, timeout: float = 30.0) -> int:
    """Run the dialogue against HOST:PORT, printing it; return the exit status."""
    try:
        conn = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        print(f"cannot connect to {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 111
    with conn, conn.makefile("rwb") as stream:

        def reply() -> str:
            line = stream.readline().decode("utf-8", "replace").rstrip("\r\n")
            print(f"S: {line}" if line else "S: (connection closed)")
            return line

        def send(line: str) -> None:
            print(f"C: {line}")
            stream.write(line.encode() + b"\r\n")
            stream.flush()

        if not reply().startswith("2"):
            return 1
        for command, accept in ((f"user {user}", "23"), (f"pass {old}", "23"), (f"newpass {new}", "2")):
            send(command)
            answer = reply()
            if not answer or answer[0] not in accept:
                return 1
        send("quit")
        reply()
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 6 or not argv[2].isdigit():
        print("usage: poppassd-client.py HOST PORT USER OLDPASS NEWPASS", file=sys.stderr)
        return 2
    return dialogue(argv[1], int(argv[2]), argv[3], argv[4], argv[5])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
