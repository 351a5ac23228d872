"""Your own websockets server, with ws-supervisor's quota, cleanup and metrics.

Run: .venv/bin/python docs/examples/embedded_server.py [PORT]
Then connect to ws://127.0.0.1:PORT/?user=alice and send {"type": "echo", "data": 1}.
"""

from __future__ import annotations

import asyncio
import sys
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import ServerConnection, serve

from supervisor import SupervisionTree, load_profile, serve_supervised


async def main(port: int) -> None:
    with SupervisionTree(load_profile("dev")) as tree:  # the tree lives as long as the server

        async def handler(connection: ServerConnection) -> None:
            assert connection.request is not None
            query = dict(parse_qsl(urlsplit(connection.request.path).query))
            # your own authentication decides the user; here, a query parameter
            await serve_supervised(tree, connection, query.get("user", "anonymous"))

        async with serve(handler, "127.0.0.1", port, ping_interval=None) as server:
            print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
            await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8770))
