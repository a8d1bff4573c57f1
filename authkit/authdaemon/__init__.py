"""Courier authdaemond as an account source.

* :mod:`authkit.authdaemon.protocol`: the socket protocol, sans-I/O (request
  builders, reply readers, the Account a reply describes);
* :mod:`authkit.authdaemon.client`: the socket I/O, one request per connection,
  with Courier's timeouts;
* :mod:`authkit.authdaemon.source`: :class:`AuthdaemonSource`, the
  ``AccountSource`` the programs use;
* :mod:`authkit.authdaemon.server`: the daemon's side of the protocol, sans-I/O
  (request parser, reply builders), served by ``authkit.daemon`` (authkitd).

This package module imports nothing, so importing a submodule costs only what
that submodule needs.  See docs/authdaemon.md.
"""
