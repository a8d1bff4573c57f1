"""Import a heavy optional dependency of an account source (ldap3, psycopg).

Only the heavy sources (authkit.ldap, authkit.pgsql) call this, in authkitd:
the per-login programs never import it.
"""

from __future__ import annotations

from .errors import ConfigError


def import_heavy(module: str, *, kind: str, what: str, debian: str, extra: str):
    """Return the top-level package *module*, imported.

    If it is not importable, the system site-packages are added to ``sys.path``
    and the import tried once more: under ``python3 -IS`` (bin/authkitd)
    Debian's package (*debian*, e.g. ``python3-ldap3``) is in dist-packages,
    which ``-S`` leaves off.  If it is still missing, :class:`ConfigError`
    (111) names the PyPI extra (``pip install 'authkit[extra]'``) and the
    Debian package; *kind* is the ``source =`` value, *what* the dependency's
    name as the message gives it.
    """
    try:
        return __import__(module)
    except ImportError:
        import site

        site.addsitepackages(None)  # type: ignore[arg-type]
    try:
        return __import__(module)
    except ImportError:
        raise ConfigError(f"source = {kind} needs {what}: pip install 'authkit[{extra}]', "
                          f"or Debian's {debian}") from None
