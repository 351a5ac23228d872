"""Push from any node: a frame for a user's connections on other nodes, through Redis.

:class:`ClusterPush` carries the messages of :mod:`supervisor.cluster.push_tally`:

- :meth:`ClusterPush.send` (any thread; the admin backend calls it from the
  event loop) runs the ``PUSH`` script, which publishes the frame on the
  channel of every other node holding a live slot of the user or the thread,
  and tallies the answers; ``settled(tally)`` is called once every node the
  frame went to has answered (on the script link's or the listener's
  thread). :meth:`~ClusterPush.give_up` ends the wait sooner, with whatever
  came; the caller times it (``[redis] push_timeout``).
- :meth:`~ClusterPush.heard` (the cluster link's listener thread) takes
  the push messages of the node's channel: a frame goes to the tree
  (``deliver``, the tree's ``push_nowait`` with ``here=True``: an idle
  tree's turns run on the listener thread, no worker is woken), whose
  count comes back once the frame is handed to the connections (on the
  listener or an actor thread) and is sent to the pushing node without
  waiting (the script link writes it from that thread when it is idle);
  an answer goes to its tally.

Its scripts run on a :class:`~supervisor.cluster.calls.ScriptLink` of their
own (one more connection and thread per node): a large frame never waits in
line with the ledger's admissions, nor they behind it.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable

import redis

from actors.context import UserExecutionContext
from actors.errors import InvalidIdError, TreeNotRunning
from supervisor.cluster.calls import Reply, ScriptLink
from supervisor.cluster.ledger import RedisLedger
from supervisor.cluster.push_tally import (
    PushAck,
    PushFrame,
    PushTally,
    format_push,
    format_push_ack,
    parse_push_message,
    parse_route,
)
from supervisor.cluster.scripts import BY_NAME

__all__ = ["ClusterPush", "Deliver", "Settled"]

log = logging.getLogger(__name__)

Deliver = Callable[[str, str | None, str, Callable[[int], None]], None]
"""``deliver(user_id, thread_id, text, reply)``: the tree's ``push_nowait`` (``here=True``)."""
Settled = Callable[[PushTally], None]


class ClusterPush:
    """One node's pushes to other nodes, and its part of theirs. Thread-safe."""

    def __init__(self, ledger: RedisLedger, client: redis.Redis, deliver: Deliver) -> None:
        self.node_id = ledger.node_id
        self.timeout = ledger.config.push_timeout
        """How long a push waits for the other nodes' answers (``[redis] push_timeout``)."""
        self._ledger = ledger
        self._channels = f"{ledger.config.key_prefix}:node:"
        self._deliver = deliver
        scripts = {name: BY_NAME[name] for name in ("PUSH", "PUSHACK")}
        self._link = ScriptLink(client, scripts, eager=True)  # a push goes out from its caller
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[PushTally, Settled]] = {}
        self._ids = itertools.count(1)

    def send(self, user_id: str, thread_id: str | None, text: str, settled: Settled) -> str:
        """Push ``text`` to the user's (or thread's) connections on every other node.

        Returns the push's id, for :meth:`give_up`. ``settled`` gets the
        tally once (unless given up first): routed and every node answered,
        or the route failed. Raises :class:`InvalidIdError` for a bad id.
        """
        key = ""
        if thread_id is not None:  # the context is the one place an isolation key is built
            key = UserExecutionContext.from_websocket_request(user_id, thread_id).isolation_key
        push_id = f"{next(self._ids)}"
        with self._lock:
            self._pending[push_id] = (PushTally(), settled)
        message = format_push(PushFrame(push_id, self.node_id, user_id, thread_id, text))
        args = (self._channels, self.node_id, key, message)
        keys = self._ledger.user_keys(user_id)
        self._link.submit("PUSH", keys, args, lambda reply: self._routed(push_id, reply))
        return push_id

    def give_up(self, push_id: str) -> PushTally | None:
        """Stop waiting: the tally as it stands (None if it was settled already)."""
        with self._lock:
            entry = self._pending.pop(push_id, None)
        return None if entry is None else entry[0]

    def heard(self, data: bytes | str) -> bool:
        """Listener thread: take a push message of this node's channel; False if it is not one."""
        message = parse_push_message(data)
        if isinstance(message, PushFrame):
            self._take(message)
        elif isinstance(message, PushAck):
            self._update(message.push_id, lambda tally: tally.ack(message.node, message.count))
        else:
            return False
        return True

    def close(self) -> None:
        """Send what is queued (answers to other nodes), then close the script link."""
        self._link.close()

    # --- inside ------------------------------------------------------------------------

    def _routed(self, push_id: str, reply: Reply) -> None:
        """The script link's thread: the nodes the frame was published to."""
        if isinstance(reply, redis.RedisError):
            self._update(push_id, lambda tally: tally.fail(str(reply)))
            return
        receivers = parse_route(reply)
        self._update(push_id, lambda tally: tally.route(receivers))

    def _update(self, push_id: str, change: Callable[[PushTally], None]) -> None:
        with self._lock:
            entry = self._pending.get(push_id)
            if entry is None:
                return  # given up on, or an answer to another life of this node
            tally, settled = entry
            change(tally)
            if not tally.complete:
                return
            del self._pending[push_id]
        settled(tally)

    def _take(self, frame: PushFrame) -> None:
        """A frame from another node: to the tree; its count back to that node."""
        channel = self._channels + frame.origin

        def answer(count: int) -> None:  # an actor thread: hand it over, never wait
            message = format_push_ack(PushAck(frame.push_id, self.node_id, count))
            self._link.submit("PUSHACK", (), (channel, message), _ignore)

        try:
            self._deliver(frame.user_id, frame.thread_id, frame.text, answer)
        except (InvalidIdError, TreeNotRunning) as error:
            log.warning("push %s from %s not delivered: %s", frame.push_id, frame.origin, error)
            answer(0)


def _ignore(_: Reply) -> None:
    """An answer to another node is not waited for: if it is lost, that node gives up."""
