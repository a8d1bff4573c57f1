"""The LDAP account source (Courier's authldap), over ldap3.

Importing this package imports nothing; :mod:`authkit.ldap.source` imports
ldap3 and is opened only by authkitd (``authkit.config.open_source(daemon=True)``
with ``source = ldap``).  :mod:`authkit.ldap.filters` and
:mod:`authkit.ldap.mapping` are sans-I/O.
"""
