"""Accounts in PostgreSQL, with the semantics of Courier's ``authpgsql`` module.

* :mod:`authkit.pgsql.query`: sans-I/O; turns the authpgsqlrc-style settings
  (field names, WHERE clause, custom SELECT/CHPASS/ENUMERATE clauses with their
  ``$(name)`` variables) into SQL text with bound parameters.
* :mod:`authkit.pgsql.source`: :class:`~authkit.pgsql.source.PgsqlSource`, the
  account source over psycopg 3 (a small locked pool of connections).

psycopg is imported only by ``source``; only authkitd opens this source (see
``authkit.config.open_source``), so the per-login programs never load it.
"""
