"""Push from any node: the messages between nodes and the answer a push gets (pure).

No I/O, no clock, no threads: :mod:`supervisor.cluster.push` carries the
messages through Redis and asks these classes what they mean.

A push on node O goes to O's own connections, and, through the ``PUSH``
script (:mod:`supervisor.cluster.scripts`), to every other node that the
ledger says holds a live slot of the user (or of the thread), as one message
on that node's channel::

    push1 TAB push_id TAB origin TAB user_id TAB thread_id TAB text

(``thread_id`` empty: every connection of the user). The receiving node hands
the frame to its tree and answers on O's channel::

    pushack1 TAB push_id TAB node TAB count

JSON text holds no raw TAB or newline (JSON escapes control characters), so
the text is the rest of the line. The ``1`` is the version of the format: a
node of an older release ignores the message (and logs it as malformed), and
its part of the push comes back unconfirmed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs

__all__ = [
    "PushAck",
    "PushAnswer",
    "PushFrame",
    "PushTally",
    "format_push",
    "format_push_ack",
    "parse_push_message",
    "parse_route",
]

Routing = Literal["routed", "unavailable", "none"]


@attrs.frozen
class PushFrame:
    """A push another node asks this one to deliver."""

    push_id: str
    origin: str
    """The node that was asked, and awaits the answer on its channel."""
    user_id: str
    thread_id: str | None
    text: str


@attrs.frozen
class PushAck:
    """A node's answer to a push: how many of its connections it was handed to."""

    push_id: str
    node: str
    count: int


def format_push(frame: PushFrame) -> str:
    """The channel message of ``frame``."""
    fields = (frame.push_id, frame.origin, frame.user_id, frame.thread_id or "", frame.text)
    return "push1\t" + "\t".join(fields)


def format_push_ack(ack: PushAck) -> str:
    """The channel message of ``ack``."""
    return f"pushack1\t{ack.push_id}\t{ack.node}\t{ack.count}"


def parse_push_message(data: bytes | str) -> PushFrame | PushAck | None:
    """A push or its answer from a channel message; None for anything else (or a malformed one)."""
    try:
        text = data.decode() if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        return None
    if text.startswith("push1\t"):
        parts = text.split("\t", 5)
        if len(parts) != 6 or not all(parts[1:4]):
            return None
        _, push_id, origin, user_id, thread_id, body = parts
        return PushFrame(push_id, origin, user_id, thread_id or None, body)
    if text.startswith("pushack1\t"):
        parts = text.split("\t")
        if len(parts) != 4 or not (parts[1] and parts[2]) or not parts[3].isdigit():
            return None
        return PushAck(parts[1], parts[2], int(parts[3]))
    return None


def parse_route(reply: Sequence[Any]) -> list[tuple[str, int]]:
    """The ``PUSH`` script's reply: ``(node, subscribers of its channel)``, in order."""
    pairs = []
    for i in range(0, len(reply) - 1, 2):
        node = reply[i].decode() if isinstance(reply[i], bytes) else str(reply[i])
        pairs.append((node, int(reply[i + 1])))
    return pairs


@attrs.frozen
class PushAnswer:
    """What a push reached, across the cluster, as far as the node that was asked knows.

    ``delivered`` counts the connections the frame was handed to (queued for
    sending: not a proof that the client read it) on every node that
    confirmed, this one included; ``nodes`` has each of those nodes' counts.
    ``unconfirmed`` nodes were sent the frame but did not confirm within
    ``[redis] push_timeout`` (stalled, or dead after the push was sent): the
    frame may or may not have reached their connections. ``unreachable``
    nodes hold slots of the user in the ledger but nobody listened on their
    channel (dead, or reconnecting): nothing reached them. ``cluster`` is
    ``routed`` (the ledger was asked), ``unavailable`` (Redis could not be
    asked: only this node's connections got it) or ``none`` (a node that
    counts slots in memory: pushes are local).
    """

    delivered: int
    nodes: Mapping[str, int]
    unconfirmed: tuple[str, ...] = ()
    unreachable: tuple[str, ...] = ()
    cluster: Routing = "none"

    def as_json(self) -> dict[str, Any]:
        """The answer of ``POST /v1/push``: ``{"delivered": n}`` alone on a node of its own."""
        if self.cluster == "none":
            return {"delivered": self.delivered}
        return {
            "delivered": self.delivered,
            "nodes": dict(self.nodes),
            "unconfirmed": list(self.unconfirmed),
            "unreachable": list(self.unreachable),
            "cluster": self.cluster,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PushAnswer:
        """The answer :meth:`as_json` wrote (a worker's, passed on by ``serve --workers``)."""
        cluster = data.get("cluster", "none")
        return cls(
            delivered=int(data["delivered"]),
            nodes={str(node): int(count) for node, count in data.get("nodes", {}).items()},
            unconfirmed=tuple(data.get("unconfirmed", ())),
            unreachable=tuple(data.get("unreachable", ())),
            cluster=cluster if cluster in ("routed", "unavailable") else "none",
        )


@attrs.define
class PushTally:
    """What the other nodes made of one push, as their answers come (not thread-safe).

    An answer may come before the route it answers (two connections to
    Redis, no order between them): it is kept, and the route does not wait
    for that node again.
    """

    routed: bool = False
    failed: str | None = None
    """Why the push could not be routed (Redis could not be asked)."""
    confirmed: dict[str, int] = attrs.field(factory=dict)
    waiting: set[str] = attrs.field(factory=set)
    unreachable: list[str] = attrs.field(factory=list)

    def route(self, receivers: Iterable[tuple[str, int]]) -> None:
        """The nodes the frame was published to, with their channels' subscribers."""
        for node, subscribers in receivers:
            if subscribers <= 0:
                self.unreachable.append(node)
            elif node not in self.confirmed:
                self.waiting.add(node)
        self.routed = True

    def fail(self, why: str) -> None:
        """The route could not be asked for: nothing went to another node."""
        self.failed, self.routed = why, True
        self.waiting.clear()

    def ack(self, node: str, count: int) -> None:
        """``node`` handed the frame to ``count`` connections."""
        self.confirmed[node] = count
        self.waiting.discard(node)

    @property
    def complete(self) -> bool:
        """Routed, and every node it went to has answered."""
        return self.routed and not self.waiting

    def answer(self, origin: str, local: int) -> PushAnswer:
        """The answer, with ``local`` connections reached on ``origin`` (this node)."""
        nodes = {origin: local, **{n: c for n, c in self.confirmed.items() if n != origin}}
        return PushAnswer(
            delivered=sum(nodes.values()),
            nodes=nodes,
            unconfirmed=tuple(sorted(self.waiting)),
            unreachable=tuple(sorted(self.unreachable)),
            cluster="unavailable" if self.failed is not None else "routed",
        )
