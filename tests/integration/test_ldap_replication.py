"""Failover across ldap_uri: a provider slapd and a syncrepl consumer of it,
``ldap_uri = <provider>, <consumer>``.  The provider is killed (SIGKILL) while
logins run in several threads: they go on through the consumer with no
rejection and no temporary failure; with both down every answer is a temporary
failure (111).  A server that accepts connections but never answers (SIGSTOP)
costs at most about ``ldap_timeout`` per try, then the next server answers."""

from __future__ import annotations

import threading
import time

import pytest

from authkit.config import Settings, parse_config
from authkit.errors import AuthError, TemporaryFailure
from authkit.ldap.source import LdapSource

import ldapdirectory as d
import slapdlab

pytestmark = pytest.mark.integration

LOGINS = [(name, pw) for name, pw in d.PASSWORDS.items()
          if name.split("@")[0] in ("ssha", "crypt6", "sha512", "smd5", "rich")]


@pytest.fixture
def replicas(tmp_path):
    reasons = slapdlab.missing_requirements()
    if reasons:
        pytest.skip("slapd lab unavailable: " + "; ".join(reasons))
    provider = slapdlab.SlapdLab(tmp_path / "provider", provider=True, name="provider")
    consumer = None
    try:
        provider.start()
        people = d.people()
        provider.populate(people)
        consumer = slapdlab.SlapdLab(tmp_path / "consumer", consumer_of=provider, name="consumer")
        consumer.start()
        consumer.wait_for_count(len(people), timeout=60)
        yield provider, consumer
    finally:
        if consumer is not None:
            consumer.close()
        provider.close()


def _source(uris: "list[str]", **kw: object) -> LdapSource:
    values = d.settings(uris, **kw)  # type: ignore[arg-type]
    values["LDAP_TIMEOUT"] = "2"
    return LdapSource.from_settings(Settings(**parse_config(d.authkit_conf(values))))


@pytest.mark.parametrize("authbind", [False, True], ids=["search", "authbind"])
def test_killing_the_provider_mid_run_loses_no_login(replicas, authbind: bool) -> None:
    provider, consumer = replicas
    source = _source([provider.uri, consumer.uri], authbind=authbind)
    outcomes: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    done_before_kill = threading.Semaphore(0)

    def worker(offset: int) -> None:
        i = offset
        while not stop.is_set():
            name, pw = LOGINS[i % len(LOGINS)]
            i += 1
            try:
                source.authenticate(name, pw.encode(), "imap")
                result = "ok"
            except AuthError as exc:
                result = f"{type(exc).__name__}: {exc}"
            with lock:
                outcomes.append(result)
            done_before_kill.release()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        for _ in range(40):  # logins are flowing through the provider
            assert done_before_kill.acquire(timeout=30)
        provider.kill()
        with lock:
            at_kill = len(outcomes)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with lock:
                if len(outcomes) >= at_kill + 80:
                    break
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert len(outcomes) >= at_kill + 80, "logins stopped after the provider died"
    failures = [o for o in outcomes if o != "ok"]
    assert not failures, failures[:5]
    # all pooled connections now lead to the consumer
    assert {c.authkit_uri for c in source._search_pool._idle} <= {consumer.uri}
    # both down: a temporary failure, for every kind of request
    consumer.kill()
    for call in (lambda: source.authenticate("ssha@example.com", b"Ssha-Pass-1"),
                 lambda: source.lookup("ssha@example.com"),
                 lambda: list(source.enumerate())):
        with pytest.raises(TemporaryFailure) as caught:
            call()
        assert caught.value.exit_code == 111
    source.close()


def test_a_server_that_never_answers_costs_one_timeout(replicas) -> None:
    provider, consumer = replicas
    source = _source([provider.uri, consumer.uri])
    assert source.lookup("ssha@example.com").uid > 5000  # a pooled connection to the provider
    provider.pause()
    try:
        started = time.monotonic()
        assert source.authenticate("ssha@example.com", b"Ssha-Pass-1").uid > 5000
        elapsed = time.monotonic() - started
        assert elapsed < 2 * 2 + 5, elapsed  # one receive timeout, one connect timeout
        alone = _source([provider.uri])
        started = time.monotonic()
        with pytest.raises(TemporaryFailure):
            alone.lookup("ssha@example.com")
        assert time.monotonic() - started < 2 * 2 + 5
    finally:
        provider.resume()
