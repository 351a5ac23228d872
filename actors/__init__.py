"""The pykka actors of the supervision tree and the messages between them.

Nothing in this package imports asyncio or websockets: an actor reaches its
connection only through a :class:`actors.ports.Port`, and the shell in
:mod:`supervisor` carries frames and closes across the thread boundary.

- :mod:`actors.messages`: every message, as immutable types.
- :mod:`actors.ports`: the port, the handler and the admission ticket.
- :mod:`actors.manager`: one manager actor per connection.
- :mod:`actors.user_supervisor`: one supervisor per user; owns the quota.
- :mod:`actors.keeper`: how a supervisor closes, frees and retires a connection.
- :mod:`actors.root`: the root monitor; levels, cleanup, restarts.
- :mod:`actors.ticker`: the one timer thread of the tree.
- :mod:`actors.dispatch`: dispatcher-backed pykka actors (few threads for all actors).
- :mod:`actors.mailbox`: their inbox; ``tell_here``, a turn on the sender's thread.
- :mod:`actors.registry`: an O(1) index for pykka's actor registry.
"""

__all__: list[str] = []
