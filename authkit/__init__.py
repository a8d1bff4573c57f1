"""authkit: Courier authlib-compatible authentication in Python.

Read accounts from a Courier userdb (text, directory or the compiled
``userdb.dat``/``userdbshadow.dat`` pair) or from a running Courier authdaemond,
verify every password format Courier accepts, and change passwords the way
Courier does.  See docs/library.md.

    >>> import authkit
    >>> source = authkit.open_source()              # doctest: +SKIP
    >>> account = source.authenticate("andrew@example.com", b"secret", "imap")

The names below are loaded on first use, so that ``import authkit`` stays cheap
for the per-login programs (no dataclasses, typing, logging or argparse here).
"""

__version__ = "0.1.0"

_LAZY = {
    "Account": "authkit.account",
    "AccountSource": "authkit.source",
    "AuthError": "authkit.errors",
    "Rejected": "authkit.errors",
    "UnknownUser": "authkit.errors",
    "BadPassword": "authkit.errors",
    "PolicyRefused": "authkit.errors",
    "Misuse": "authkit.errors",
    "TemporaryFailure": "authkit.errors",
    "ConfigError": "authkit.errors",
    "UnsupportedScheme": "authkit.errors",
    "open_source": "authkit.config",
    "load_settings": "authkit.config",
    "Settings": "authkit.config",
    "UserdbSource": "authkit.userdb.source",
    "verify_password": "authkit.schemes",
    "make_password_hash": "authkit.schemes",
    "identify_scheme": "authkit.schemes",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> object:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'authkit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return __all__
