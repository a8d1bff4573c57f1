"""After a change through courierpassd, Courier's own authdaemond (real, in a
CourierLab, see tests/courierlab.py) accepts the new password and refuses the old
one, on the single-file and the directory userdb layouts, without makeuserdb being
run again.  The userdb is made by Courier's ``userdb``/``userdbpw -md5`` and compiled
by Courier's ``makeuserdb`` first; authdaemond keeps running during the change.
Also: courierpassd using authdaemond itself as the source (its PASSWD command).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from authkitdlab import use_authkitd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_courierpassd_cli import BIN  # noqa: E402

pytestmark = pytest.mark.integration

OLD, NEW = "Courier-Old-1", "Courier-New-2"


def courierpassd(config: Path, user: str, old: str, new: str, *args: str) -> subprocess.CompletedProcess:
    script = f"user {user}\r\npass {old}\r\nnewpass {new}\r\nquit\r\n".encode()
    return subprocess.run([sys.executable, str(BIN), "--config", str(config), "--stderr", *args],
                          input=script, capture_output=True, timeout=60)


def config_for(lab, **extra: object) -> Path:  # noqa: ANN001
    path = lab.root / "authkit.conf"
    body = {"bad_pass_delay": 0, **extra}
    path.write_text("".join(f"{k} = {v}\n" for k, v in body.items()))
    return path


@pytest.mark.parametrize("layout", ["file", "dir"])
def test_running_authdaemond_accepts_the_new_password_at_once(courier_lab_factory, layout: str) -> None:
    lab = courier_lab_factory(layout=layout)
    lab.add_user("andrew@example.com", OLD)
    lab.add_user("andrew@example.com", OLD, pw_field="hmac-md5pw", pw_flags=("-hmac-md5",))
    lab.add_user("other@example.org", "Other-Pass-9")
    lab.makeuserdb()
    lab.start_daemon()
    assert lab.authtest("-s", "imap", "andrew@example.com", OLD).returncode == 0
    text_before = {p: p.read_bytes() for p in ([lab.userdb_path] if layout == "file" else lab.userdb_path.iterdir())}

    proc = courierpassd(config_for(lab, userdb=lab.userdb_path), "andrew@example.com", OLD, NEW)
    assert proc.stdout.endswith(b"200 Password changed\r\n200 Bye\r\n"), proc.stderr
    assert proc.returncode == 0

    assert lab.authtest("-s", "imap", "andrew@example.com", NEW).returncode == 0
    assert lab.authtest("-s", "imap", "andrew@example.com", OLD).returncode != 0
    assert lab.authtest("-s", "imap", "other@example.org", "Other-Pass-9").returncode == 0
    # the HMAC secret that held the old password now holds the new one (as Courier's PASSWD does)
    assert lab.userdbpw(NEW, "-hmac-md5") in lab.shadow_path.read_bytes().decode("latin-1")
    # only andrew's line changed; the other file (dir layout) is byte for byte the same
    for path, before in text_before.items():
        after = path.read_bytes()
        if b"andrew@example.com" in before:
            assert after != before
            assert [l for l in after.splitlines() if not l.startswith(b"andrew@")] == \
                   [l for l in before.splitlines() if not l.startswith(b"andrew@")]
        else:
            assert after == before
    # and Courier's own makeuserdb, rebuilding from the text, agrees
    lab.makeuserdb()
    assert lab.authtest("-s", "imap", "andrew@example.com", NEW).returncode == 0


@pytest.mark.parametrize("daemon", ["courier", "authkitd"])
def test_through_authdaemond_source_uses_courier_passwd(courier_lab, daemon: str) -> None:
    lab = courier_lab
    if daemon == "authkitd":  # authkitd on the lab's socket (tests/authkitdlab.py)
        use_authkitd(lab)
    lab.add_user("andrew@example.com", OLD)
    lab.makeuserdb()
    lab.start_daemon()
    config = config_for(lab, authdaemon_socket=lab.socket_path, min_uid=100)
    wrong = courierpassd(config, "andrew@example.com", "Wrong-Pass-1", NEW)
    assert wrong.stdout.endswith(b"500 Old password is incorrect\r\n")
    proc = courierpassd(config, "andrew@example.com", OLD, NEW)
    assert proc.stdout.endswith(b"200 Password changed\r\n200 Bye\r\n"), proc.stderr
    assert lab.authtest("-s", "login", "andrew@example.com", NEW).returncode == 0
    assert lab.authtest("-s", "login", "andrew@example.com", OLD).returncode != 0
