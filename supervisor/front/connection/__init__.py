"""The one package of the front that touches websockets' and asyncio's internals.

- :class:`AcyclicConnection` drops, once its connection is lost, asyncio's
  socket transport's ``_read_ready_cb`` (a bound method of the transport
  itself) and websockets' ``Protocol.parser`` (a suspended generator) and
  ``parser_exc``'s traceback, and overrides ``eof_received`` and
  ``connection_lost``. It also carries out the connection's byte budget
  (:class:`~supervisor.front.budget.ConnectionBudget`), which needs the
  protocol's own hooks: ``data_received`` (the handshake's bytes, the write
  buffer's ceiling), ``process_event`` (control frames count toward the
  message rate), ``pause_writing``/``resume_writing`` (reading pauses while
  writing is) and the assembler's ``resume`` (``recv_messages``); and
  its frame queue (``recv_messages.frames.queue``): while it is empty, a
  whole text frame goes from ``process_event`` straight to the front's
  inlet (:meth:`AcyclicConnection.take_frames`), no task woken for it;
- :func:`ping_nowait` writes a keepalive ping without waiting for the
  peer to drain (websockets' ``pending_pings``, ``protocol.send_ping``,
  ``send_data``);
- :class:`ProxiedConnection` (made by :func:`proxied_connection`) strips
  the PROXY header a trusted proxy opens the connection with, before
  websockets' HTTP parser sees a byte, and makes its source the
  connection's ``remote_address``;
- :func:`running_loop` is ``asyncio._get_running_loop``: the running loop
  or None, without the exception ``get_running_loop`` raises off a loop;
- :func:`adopt` resumes a TCP connection that another process accepted
  (``ws-supervisor serve --workers N``: the master reads the request head
  and hands over the socket and the bytes read) as a connection of a
  websockets server, through the factory that ``serve()`` gave asyncio
  (``asyncio.Server._protocol_factory``) and the loop's own
  ``_make_socket_transport``, exactly as asyncio builds an accepted one;
- :meth:`AcyclicConnection.call_when_answered` reads websockets'
  ``ServerConnection.response`` once its ``handshake`` ends, and sees that
  handshake cancelled (``open_timeout``).

Those names were read in websockets :data:`WEBSOCKETS_SERIES` and CPython
3.11 to 3.13; importing this package with another websockets major release
raises ImportError (before any of its modules is imported), and a test
checks that each attribute is still there. The modules: :mod:`.acyclic`
(the connection class), :mod:`.proxied` (its PROXY-protocol subclass) and
:mod:`.loop` (``running_loop``, ``ping_nowait``, ``adopt``).
"""

from __future__ import annotations

import importlib.metadata

__all__ = [
    "WEBSOCKETS_SERIES",
    "AcyclicConnection",
    "ProxiedConnection",
    "adopt",
    "check_websockets",
    "ping_nowait",
    "proxied_connection",
    "running_loop",
]

WEBSOCKETS_SERIES = 17
"""The websockets major release whose internals this package was written against."""


def check_websockets(version: str) -> None:
    """ImportError unless ``version`` is of :data:`WEBSOCKETS_SERIES`."""
    if version.split(".", maxsplit=1)[0] != str(WEBSOCKETS_SERIES):
        raise ImportError(
            f"ws-supervisor's front needs websockets {WEBSOCKETS_SERIES}.x, whose internals "
            f"it relies on (supervisor/front/connection/); websockets {version} is installed"
        )


check_websockets(importlib.metadata.version("websockets"))

from supervisor.front.connection.acyclic import AcyclicConnection  # noqa: E402
from supervisor.front.connection.loop import adopt, ping_nowait, running_loop  # noqa: E402
from supervisor.front.connection.proxied import (  # noqa: E402
    ProxiedConnection,
    proxied_connection,
)
