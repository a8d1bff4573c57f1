"""authkitd's signals (docs/authkitd.8, SIGNALS): SIGHUP re-reads the
configuration, a bad new one keeps the old one and says why; SIGTERM ends with
exit 0 (its in-flight case is in test_authkitd_faults)."""

from __future__ import annotations

import signal

import pytest
from authkitdlab import Authkitd, lab_config
from stacktools import pre_reply as pre


pytestmark = pytest.mark.integration


def test_sighup_reloads_and_a_bad_config_keeps_the_old_one(courier_lab):
    lab = courier_lab
    lab.add_user("andrew@example.com", "andrew-secret", options="disableimap=1")
    lab.makeuserdb()
    kitd = Authkitd(lab.root / "kitd", lab.socket_path, lab_config(lab)).start()
    try:
        assert b"OPTIONS=disableimap=1\n" in pre(lab.socket_path, "andrew@example.com")
        kitd.config_path.write_text(lab_config(lab, "default_options = wbnodsn=1\n"))
        kitd.signal(signal.SIGHUP)
        assert kitd.wait_for_log("configuration reloaded")
        assert b"OPTIONS=disableimap=1,wbnodsn=1\n" in pre(lab.socket_path, "andrew@example.com")
        kitd.config_path.write_text("source = userdb\nuserdb = /nonexistent\nno_such_key = 1\n")
        kitd.signal(signal.SIGHUP)
        assert kitd.wait_for_log("reload failed, keeping the old configuration")
        assert "no_such_key" in kitd.log()
        assert b"OPTIONS=disableimap=1,wbnodsn=1\n" in pre(lab.socket_path, "andrew@example.com")
        # its own socket as the new source: refused too, old one kept
        kitd.config_path.write_text(f"source = authdaemon\nauthdaemon_socket = {lab.socket_path}\n")
        kitd.signal(signal.SIGHUP)
        assert kitd.wait_for_log("own socket")
        assert pre(lab.socket_path, "andrew@example.com").endswith(b"\n.\n")
        proc = kitd.proc
        kitd.signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        kitd.stop()
