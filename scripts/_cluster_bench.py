"""``bench --redis``, the cluster's part: pushes across nodes, and what ``WAIT`` would cost.

Run by ``scripts/bench.py`` (which also churns on a Sentinel-managed Redis
beside the plain URL, paired round by round):

- :func:`push_latency`: two supervised nodes on one Redis, a client of user
  ``pushed`` on node B; ``POST /v1/push`` alternately to node B (a local
  push) and to node A (a cross-node push, through Redis), one at a time.
  For each: the time from sending the request until the client has the
  frame, and until the HTTP answer; and, for reference, a Redis ``PING``'s
  round trip from this process.
- :func:`wait_cost`: one admission (``ACQUIRE``, then ``RELEASE``) per round
  trip on a raw connection to a master with one replica, without and with a
  ``WAIT 1 100`` in the same pipeline, alternately: what replicating every
  admission before answering it would add.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import redis
from _toolkit import HOST, percentile
from websockets.asyncio.client import connect

__all__ = ["push_latency", "redis_rtt", "wait_cost"]


def _ms(values: list[float]) -> tuple[float, float]:
    return percentile(values, 50) * 1000, percentile(values, 99) * 1000


async def _post(port: int, body: dict[str, Any]) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection(HOST, port)
    payload = json.dumps(body).encode()
    head = f"POST /v1/push HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
    writer.write(head.encode() + f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    answer = await reader.read()
    writer.close()
    status = answer.split(b" ", 2)[1]
    if status != b"200":
        raise RuntimeError(f"push answered {answer[:300]!r}")
    parsed: dict[str, Any] = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    return parsed


async def _push_rounds(
    ws_url: str, local_admin: int, cross_admin: int, samples: int
) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {
        "local_frame": [], "local_answer": [], "cross_frame": [], "cross_answer": [],
    }  # fmt: skip
    async with connect(ws_url + "?user_id=pushed", ping_interval=None) as ws:
        await ws.recv()  # the welcome
        for index in range(samples + 10):  # the first ten warm up
            order = [("local", local_admin), ("cross", cross_admin)]
            for where, port in order if index % 2 == 0 else order[::-1]:
                began = time.perf_counter()
                answer = asyncio.ensure_future(
                    _post(port, {"user_id": "pushed", "message": {"n": index, "to": where}})
                )
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                framed = time.perf_counter()
                reply = await asyncio.wait_for(answer, 10)
                answered = time.perf_counter()
                if frame != {"n": index, "to": where} or reply["delivered"] != 1:
                    raise RuntimeError(f"push {where} {index}: frame {frame}, answer {reply}")
                if index >= 10:
                    found[f"{where}_frame"].append(framed - began)
                    found[f"{where}_answer"].append(answered - began)
    return found


def redis_rtt(port: int, samples: int = 2000) -> tuple[float, float]:
    """A ``PING``'s round trip from this process, p50 and p99 in ms."""
    client = redis.Redis(host=HOST, port=port)
    times = []
    try:
        for _ in range(samples):
            began = time.perf_counter()
            client.ping()
            times.append(time.perf_counter() - began)
    finally:
        client.close()
    return _ms(times)


def push_latency(
    start_node: Callable[[str], Any], redis_port: int, samples: int
) -> dict[str, float]:
    """Local and cross-node pushes' latencies, p50 and p99 (ms), and Redis's own round trip.

    ``start_node(node_id)`` starts a supervised server on the Redis ledger,
    ready, with ``url``, ``admin_port`` and ``stop()``.
    """
    node_a, node_b = start_node("bench-a"), start_node("bench-b")
    try:
        found = asyncio.run(_push_rounds(node_b.url, node_b.admin_port, node_a.admin_port, samples))
    finally:
        node_a.stop()
        node_b.stop()
    metrics: dict[str, float] = {}
    for key, values in found.items():
        metrics[f"push_{key}_p50_ms"], metrics[f"push_{key}_p99_ms"] = _ms(values)
    metrics["redis_ping_p50_ms"], metrics["redis_ping_p99_ms"] = redis_rtt(redis_port)
    metrics["push_samples"] = float(samples)
    return metrics


def wait_cost(master_port: int, acquire: str, release: str, samples: int) -> dict[str, float]:
    """One admission per round trip, with and without ``WAIT 1 100``: p50, p99 and the added p50.

    ``acquire`` and ``release`` are the ledger's scripts; the master must
    have one replica.
    """
    connection = redis.Connection(host=HOST, port=master_port, socket_timeout=5)
    shas = {name: hashlib.sha1(source.encode()).hexdigest() for name, source in
            (("ACQUIRE", acquire), ("RELEASE", release))}  # fmt: skip
    client = redis.Redis(host=HOST, port=master_port)
    client.script_load(acquire)
    client.script_load(release)
    client.close()
    keys = ["wss-bench:{waited}:slots", "wss-bench:{waited}:holders"]
    plain: list[float] = []
    waited: list[float] = []
    unreplicated = 0
    try:
        for index in range(samples + 20):
            for wait in (False, True) if index % 2 == 0 else (True, False):
                key, holder = f"waited:{index}", f"ws{index}"
                commands: list[tuple[Any, ...]] = [
                    ("EVALSHA", shas["ACQUIRE"], 2, *keys, key, "bench", holder, 1000, 60000, 0,
                     "wss-bench:node:", "waited"),
                ]  # fmt: skip
                if wait:
                    commands.append(("WAIT", 1, 100))
                began = time.perf_counter()
                connection.send_packed_command(connection.pack_commands(commands))
                replies = [connection.read_response() for _ in commands]
                took = time.perf_counter() - began
                if wait and replies[-1] < 1:
                    unreplicated += 1
                undo = ("EVALSHA", shas["RELEASE"], 2, *keys, key, "bench", holder)
                connection.send_packed_command(connection.pack_commands([undo]))
                connection.read_response()
                if index >= 20:
                    (waited if wait else plain).append(took)
    finally:
        connection.disconnect()
    added = [w - p for p, w in zip(plain, waited, strict=True)]
    metrics: dict[str, float] = {}
    metrics["wait_plain_p50_ms"], metrics["wait_plain_p99_ms"] = _ms(plain)
    metrics["wait_waited_p50_ms"], metrics["wait_waited_p99_ms"] = _ms(waited)
    metrics["wait_added_p50_ms"] = percentile(added, 50) * 1000
    metrics["wait_unreplicated"] = float(unreplicated)
    return metrics
