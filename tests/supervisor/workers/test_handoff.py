"""The master-worker channel: real socket pairs carrying connections, bytes and control."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator

import pytest

from supervisor.workers.handoff import (
    BATCH,
    Channel,
    decode_control,
    decode_handoffs,
    encode_control,
    encode_handoffs,
)

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pair() -> Iterator[tuple[Channel, Channel]]:
    mine, theirs = Channel.pair()
    master, worker = Channel(mine), Channel(theirs)
    yield master, worker
    master.close()
    worker.close()


def connected() -> tuple[socket.socket, socket.socket]:
    """A loopback TCP connection: (the server's side, the client's side)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return server, client


def test_hand_offs_bytes_say_each_user_and_what_was_read_in_order() -> None:
    handed = [("alice@example.com", b"GET / HTTP/1.1\r\n\r\n\x81"), ("", b""), ("b\u00e9", b"x")]
    assert list(decode_handoffs(encode_handoffs(handed))) == handed
    assert decode_control(encode_control({"ready": 12})) == {"ready": 12}


def test_a_control_message_must_be_an_object() -> None:
    with pytest.raises(ValueError, match="a control message is a JSON object"):
        decode_control(b"C[1]")


async def _receive_one(worker: Channel) -> tuple[str, bytes, socket.socket]:
    got: asyncio.Future[tuple[str, bytes, socket.socket]] = (
        asyncio.get_running_loop().create_future()
    )
    worker.receive(lambda user, prefix, sock: got.set_result((user, prefix, sock)), print, print)
    return await asyncio.wait_for(got, 5)


def test_a_connection_handed_over_is_the_same_connection_on_the_other_side(
    pair: tuple[Channel, Channel],
) -> None:
    master, worker = pair
    server, client = connected()

    async def run() -> tuple[str, bytes, socket.socket]:
        assert master.hand_off("alice", b"head", server)
        return await _receive_one(worker)

    user, prefix, received = asyncio.run(run())
    assert (user, prefix) == ("alice", b"head")
    assert server.fileno() == -1  # the master let go of its copy
    received.sendall(b"from the worker")
    assert client.recv(100) == b"from the worker"
    assert received.getpeername() == client.getsockname()  # the client's true address
    received.close()
    client.close()


def test_hand_offs_beyond_the_socket_s_room_wait_then_go_and_past_the_limit_are_refused() -> None:
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    mine.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)  # room for a few only
    master, worker = Channel(mine, limit=30), Channel(theirs)
    sockets = [connected() for _ in range(60)]

    async def run() -> tuple[list[bool], int, int]:
        accepted = [master.hand_off(f"u{n}", b"x" * 3000, s) for n, (s, _) in enumerate(sockets)]
        queued = len(master._waiting)
        await asyncio.sleep(0.05)  # the turn ends: the socket fills, the rest waits
        assert master._waiting and master._writing
        received: list[str] = []

        def take(user: str, _: bytes, sock: socket.socket) -> None:
            received.append(user)
            sock.close()

        worker.receive(take, print, print)
        while len(received) < sum(accepted):
            await asyncio.sleep(0.01)
        return accepted, queued, len(master._waiting)

    accepted, queued, left = asyncio.run(run())
    assert accepted == [True] * 30 + [False] * 30  # refused only once the queue was full
    assert (queued, left) == (30, 0)
    assert master.messages > 1 and not master._writing
    for server, client in sockets:
        if server.fileno() != -1:
            server.close()
        client.close()
    master.close()
    worker.close()


def test_a_peer_that_is_gone_refuses_what_waits_and_everything_after() -> None:
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    mine.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    refused: list[socket.socket] = []
    master = Channel(mine, refuse=refused.append)
    sockets = [connected() for _ in range(10)]

    async def run() -> list[bool]:
        accepted = [master.hand_off("u", b"x" * 1500, s) for s, _ in sockets]
        theirs.close()  # the worker died with hand-offs in the queue
        await asyncio.sleep(0.05)
        master._flush()
        return accepted

    accepted = asyncio.run(run())
    assert master.alive is False
    assert all(accepted) and refused and all(s.fileno() != -1 for s in refused)
    assert master.hand_off("u", b"x", sockets[0][1]) is False  # nothing more goes
    for server, client in sockets:
        server.close()
        client.close()
    master.close()


def test_the_other_end_s_close_is_told_once(pair: tuple[Channel, Channel]) -> None:
    master, worker = pair
    gone: list[str] = []

    async def run() -> None:
        worker.receive(lambda *_: None, print, lambda: gone.append("gone"))
        master.sock.close()
        while not gone:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)

    asyncio.run(run())
    assert gone == ["gone"]


def test_a_setup_is_read_blocking_before_any_loop(pair: tuple[Channel, Channel]) -> None:
    master, worker = pair
    master.send_control({"setup": {"index": 1}})
    assert worker.receive_control(timeout=5) == {"setup": {"index": 1}}


def test_no_setup_in_time_is_an_error(pair: tuple[Channel, Channel]) -> None:
    with pytest.raises(TimeoutError):
        pair[1].receive_control(timeout=0.1)


def test_a_hand_off_first_is_no_setup(pair: tuple[Channel, Channel]) -> None:
    master, worker = pair
    read, write = os.pipe()
    socket.send_fds(master.sock, [encode_handoffs([("u", b"")])], [read])
    os.close(read)
    os.close(write)
    with pytest.raises(ValueError, match="the first message was not the setup"):
        worker.receive_control(timeout=5)


def test_the_hand_offs_of_one_turn_go_together_and_arrive_in_order(
    pair: tuple[Channel, Channel],
) -> None:
    master, worker = pair
    sockets = [connected() for _ in range(BATCH + 6)]

    async def run() -> list[tuple[str, bytes, socket.socket]]:
        got: list[tuple[str, bytes, socket.socket]] = []
        worker.receive(lambda *handed: got.append(handed), print, print)
        for n, (server, _) in enumerate(sockets):
            assert master.hand_off(f"u{n}", f"head {n}".encode(), server)
        while len(got) < len(sockets):
            await asyncio.sleep(0.01)
        return got

    got = asyncio.run(run())
    assert [(user, prefix) for user, prefix, _ in got] == [
        (f"u{n}", f"head {n}".encode()) for n in range(len(sockets))
    ]
    assert master.messages == 2  # one turn: a full batch, then the rest
    for (_, _, received), (_, client) in zip(got, sockets, strict=True):
        assert received.getpeername() == client.getsockname()
        received.close()
        client.close()
