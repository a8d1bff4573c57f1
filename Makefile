# authkit: the two commands of the README, and a few helpers.
#   make demo   the main job on the example userdb in examples/ (no root, no services)
#   make test   everything; as root on Debian it first installs the packages the tests run
#   make deb    the Debian package, built in $(DEBBUILD) (outside the tree), checked by lintian
#   make dist   sdist and wheel in dist/ (python -m build), checked by twine

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

# Real peers the integration tests run (Debian 12 package names).  courier-imap
# conflicts with dovecot-imapd (both Conflicts: imap-server): only its .deb is
# fetched, and tests/couriermail.py unpacks it privately; gamin is the one run-time
# dependency of its imapd that courier-pop does not bring in.
DEBIAN_PACKAGES := \
	courier-authlib courier-authlib-userdb courier-authdaemon \
	libgdbm6 python3-gdbm python3-venv whois util-linux \
	ucspi-tcp daemontools xinetd stunnel4 \
	dovecot-core dovecot-imapd qpsmtpd swaks \
	php-cli php-net-socket roundcube-plugins poppass-cgi \
	hyperfine procps time acl openssl systemd \
	courier-pop gamin \
	slapd ldap-utils courier-authlib-ldap \
	postgresql courier-authlib-postgresql python3-psycopg \
	debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools \
	fakeroot lintian

.PHONY: all demo test deps venv unit integration fuzz bench clean
.PHONY: deb dist

all: test

deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  missing=$$(for p in $(DEBIAN_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:" $$missing; \
	    apt-get update -q >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	      -o Dpkg::Options::=--force-confold $$missing >/dev/null; \
	  fi; \
	  ls /var/cache/apt/archives/courier-imap_*.deb >/dev/null 2>&1 || \
	    apt-get install -y -q --download-only --no-install-recommends courier-imap >/dev/null || true; \
	else echo "not root or not Debian: skipping package install (integration tests that need them will skip)"; fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip >/dev/null
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

test: deps venv
	$(PY) -m pytest -q -p no:cacheprovider tests

unit: venv
	$(PY) -m pytest -q tests/unit

integration: deps venv
	$(PY) -m pytest -q -m integration tests

demo:
	@sh examples/demo.sh

fuzz: venv
	AUTHKIT_FUZZ_SECONDS=$${AUTHKIT_FUZZ_SECONDS:-600} $(PY) -m pytest -q tests/fuzz

bench: deps venv
	$(VENV)/bin/pip install -q -e '.[test,bench]'
	$(PY) bench/bench_import.py
	$(PY) bench/bench_courierpasswd.py
	$(PY) bench/bench_userdb_scale.py
	$(PY) bench/bench_install.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# Debian package: the tracked files (as they are in the work tree) are copied to
# $(DEBBUILD)/src and built there, so the tree stays clean; the .deb lands in $(DEBBUILD).
DEBBUILD ?= $(or $(TMPDIR),/tmp)/authkit-deb
deb:
	rm -rf '$(DEBBUILD)/src' && mkdir -p '$(DEBBUILD)/src'
	if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	  git ls-files -z | tar --null -T - -cf - | tar -xf - -C '$(DEBBUILD)/src'; \
	else tar --exclude=./.venv --exclude=./.git --exclude=./debian/authkit -cf - . | tar -xf - -C '$(DEBBUILD)/src'; fi
	cd '$(DEBBUILD)/src' && dpkg-buildpackage -us -uc -b
	lintian --fail-on error '$(DEBBUILD)'/authkit_*_all.deb
	@ls '$(DEBBUILD)'/authkit_*_all.deb

dist: venv
	$(PY) -m build --no-isolation --outdir dist .
	$(VENV)/bin/twine check dist/*
