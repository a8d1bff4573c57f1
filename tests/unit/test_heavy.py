"""authkit._heavy.import_heavy: the heavy sources' import of ldap3/psycopg."""

import sys

import pytest

from authkit._heavy import import_heavy
from authkit.errors import ConfigError


def test_import_heavy_returns_an_importable_package():
    assert import_heavy("json", kind="x", what="json", debian="python3", extra="x") is sys.modules["json"]


def test_import_heavy_missing_names_the_pypi_extra_and_the_debian_package(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # addsitepackages appends to it
    with pytest.raises(ConfigError) as info:
        import_heavy("authkit_no_such_dependency", kind="ldap", what="ldap3",
                     debian="python3-ldap3", extra="ldap")
    assert str(info.value) == ("source = ldap needs ldap3: pip install 'authkit[ldap]', "
                               "or Debian's python3-ldap3")
    assert info.value.exit_code == 111
