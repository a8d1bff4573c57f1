"""ldaps:// and StartTLS (ldap_tls = 1) against a slapd whose certificate a CA
made here with openssl signed; a certificate the configured CA did not sign is
a temporary failure, never a rejection.  Courier's authldap (LDAPTLS_CACERT in
authdaemonrc, LDAP_TLS for StartTLS) is asked alongside."""

from __future__ import annotations

import time

import pytest

from authkit.authdaemon.source import AuthdaemonSource
from authkit.config import Settings, parse_config
from authkit.errors import BadPassword, TemporaryFailure
from authkit.ldap.source import LdapSource

import ldapdirectory as d
import slapdlab

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tls_slapd(tmp_path_factory: pytest.TempPathFactory):
    reasons = slapdlab.missing_requirements()
    if reasons:
        pytest.skip("slapd lab unavailable: " + "; ".join(reasons))
    root = tmp_path_factory.mktemp("tls")
    ca = slapdlab.make_ca(root / "ca")
    wrong = slapdlab.make_ca(root / "wrong-ca", name="some other CA")
    lab = slapdlab.SlapdLab(root / "slapd", tls=ca)
    try:
        lab.start()
        lab.populate(d.people())
        yield lab, ca["ca"], wrong["ca"]
    finally:
        lab.close()


def _source(values: "dict[str, str]", cacert) -> LdapSource:
    conf = d.authkit_conf(values, ldap_tls_cacert=str(cacert))
    return LdapSource.from_settings(Settings(**parse_config(conf)))


@pytest.mark.parametrize("mode", ["ldaps", "starttls"])
def test_tls_logins_with_the_right_ca(tls_slapd, mode: str) -> None:
    lab, ca, _wrong = tls_slapd
    values = (d.settings([lab.ldaps_uri]) if mode == "ldaps"
              else d.settings([lab.uri], tls=True))
    source = _source(values, ca)
    try:
        assert source.authenticate("ssha@example.com", b"Ssha-Pass-1", "imap").uid > 5000
        with pytest.raises(BadPassword):
            source.authenticate("ssha@example.com", b"Ssha-Pass-2", "imap")
        conn = source._search_pool._idle[0]
        assert conn.tls_started if mode == "starttls" else conn.server.ssl
        assert conn.socket.version().startswith("TLS")
    finally:
        source.close()


@pytest.mark.parametrize("mode", ["ldaps", "starttls"])
def test_a_certificate_from_another_ca_is_a_temporary_failure(tls_slapd, mode: str) -> None:
    lab, _ca, wrong = tls_slapd
    values = (d.settings([lab.ldaps_uri]) if mode == "ldaps"
              else d.settings([lab.uri], tls=True))
    source = _source(values, wrong)
    started = time.monotonic()
    for call in (lambda: source.lookup("ssha@example.com"),
                 lambda: source.authenticate("ssha@example.com", b"Ssha-Pass-1"),
                 lambda: source.authenticate("nobody@example.com", b"Ssha-Pass-1"),
                 lambda: source.change_password("ssha@example.com", b"Ssha-Pass-1", b"New-Pass-12")):
        with pytest.raises(TemporaryFailure) as caught:
            call()
        assert "certificate" in str(caught.value).lower() or "ssl" in str(caught.value).lower(), caught.value
    assert time.monotonic() - started < 30
    assert lab.get(f"uid=ssha,{slapdlab.PEOPLE}", "userPassword")[0].startswith("{SSHA}")


def test_courier_authldap_agrees_over_ldaps_and_starttls(tls_slapd, courier_lab) -> None:
    lab, ca, wrong = tls_slapd
    for values in (d.settings([lab.ldaps_uri]), d.settings([lab.uri], tls=True)):
        courier_lab.stop_daemon()
        d.start_courier_authldap(courier_lab, values, env={"LDAPTLS_CACERT": str(ca)})
        courier = AuthdaemonSource(courier_lab.socket_path, remote_ip="")
        ours = _source(values, ca)
        assert (courier.authenticate("crypt6@example.com", b"Crypt6-Pass-1", "imap")
                == ours.authenticate("crypt6@example.com", b"Crypt6-Pass-1", "imap"))
        ours.close()
