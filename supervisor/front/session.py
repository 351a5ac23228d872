"""A connection's life on the loop: admitted, greeted, its frames carried, its slot freed.

The loop asks the tree for a slot (:func:`admit`) and never blocks on the
answer; once admitted, :func:`serve_connection` sends the welcome and hands
each inbound frame on to the manager (:func:`inlet`), under the
connection's rate and byte limits, until the connection ends. Everything
here runs on the event loop; the actors answer through
:mod:`supervisor.front.bridge`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from actors.codes import ServerCloseCode
from actors.context import UserExecutionContext
from actors.ports import Admission, Handle, inbound_cost
from actors.tree import SupervisionTree
from supervisor.front.bridge import WebSocketPort, reply_future
from supervisor.front.connection import AcyclicConnection
from supervisor.front.keepalive import Keepalive, KeepaliveScheduler
from supervisor.front.limits import InboundRateLimit
from supervisor.front.protocol import BINARY_ERROR, welcome_frame

__all__ = ["admit", "inlet", "serve_connection"]

log = logging.getLogger(__name__)


async def admit(
    tree: SupervisionTree, context: UserExecutionContext, port: WebSocketPort, timeout: float
) -> Admission:
    """Loop: ask the tree for a slot without blocking the loop.

    After ``timeout`` seconds (no timer if answered in the call) it is
    withdrawn (503) unless answered; a cancelled caller withdraws it too,
    and an admission that comes after that is undone: no slot is orphaned.
    """
    loop = asyncio.get_running_loop()
    answer, hand_over = reply_future(loop, undo=_release)
    ticket = tree.admit_nowait(context, port, hand_over)
    if answer.done():  # answered in this call (an idle supervisor's turn on the loop): no timer
        return answer.result()

    def give_up() -> None:  # on the loop, ``timeout`` seconds later
        if not answer.done() and ticket.withdraw():
            answer.set_result(Admission("rejected_unavailable", reason="no answer in time"))

    timer = loop.call_later(timeout, give_up)
    try:
        return await answer
    except asyncio.CancelledError:
        ticket.withdraw()  # or, if answered already, settle undoes it
        raise
    finally:
        timer.cancel()


def _release(admission: Admission) -> None:
    """Loop: undo an admission that came after its caller was cancelled."""
    if admission.handle is not None:
        admission.handle.closed()


def inlet(
    handle: Handle, port: WebSocketPort, inbound: InboundRateLimit | None = None
) -> Callable[[str], None]:
    """Loop: what hands one inbound text frame of a connection on to its manager.

    A frame over the ``inbound`` rate sheds the connection with 1008 and is
    not delivered; so is one that would make the manager's backlog exceed
    the port's budget (``max_inbound_bytes``). Once the port is shed,
    nothing more is handed on.
    """
    budget, stats, deliver = port.budget, handle.stats, handle.deliver

    def take(text: str) -> None:
        if port.shed_code is not None:
            return  # shed: what the peer still sent is dropped
        if inbound is not None and not inbound.allow():
            port.shed(int(ServerCloseCode.POLICY), "message rate exceeded")
            return
        waiting = stats.inbound_waiting
        if waiting > 0 and budget.inbound_over(waiting, inbound_cost(text)):
            port.shed(*budget.inbound_overflow())  # the handler is far behind the client
            return
        deliver(text)

    return take


async def serve_connection(
    connection: ServerConnection,
    handle: Handle,
    port: WebSocketPort,
    alive: Keepalive | None = None,
    inbound: InboundRateLimit | None = None,
) -> None:
    """Loop: greet, carry frames to the manager until the connection ends, free the slot.

    Frames are handed on by :func:`inlet`: a whole text frame straight from
    the parser, on an :class:`~supervisor.front.connection.AcyclicConnection`
    (:meth:`~supervisor.front.connection.AcyclicConnection.take_frames`);
    any other message (fragmented, binary, or one that came before the
    welcome) through websockets' ``recv``, in order. ``ConnectionClosed``
    never escapes (a traceback per dropped connection would slow a
    disconnect storm); the slot is freed however it ends.
    """
    port.on_shed = handle.closed
    pinger = None if alive is None else KeepaliveScheduler.of(alive).add(connection, handle)
    take = inlet(handle, port, inbound)
    direct = connection if isinstance(connection, AcyclicConnection) else None
    started = False
    try:
        await connection.send(welcome_frame(handle.context))
        port.start()  # after the welcome: nothing overtakes it
        started = True
        if direct is not None:
            direct.take_frames(take)
        async for message in connection:
            if isinstance(message, str):
                take(message)
            else:
                port.send_text(BINARY_ERROR)
            if port.shed_code is not None:
                break
    except ConnectionClosed:
        pass
    finally:
        if direct is not None:
            direct.take_frames(None)
        handle.closed(connection.close_code if port.shed_code is None else port.shed_code)
        if port.shed_with is not None:
            log.info("shed websocket_id=%s code=%d reason=%s", handle.websocket_id, *port.shed_with)
        if pinger is not None:
            pinger.stop()
        if started and connection.state is not State.CLOSED:  # else nothing is left to send
            port.close(int(ServerCloseCode.NORMAL), "")
        await port.wait_done()
