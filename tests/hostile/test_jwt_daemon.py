"""A daemon in jwt mode: only a valid token gets a connection, and its ``sub`` is the user."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from typing import Any

import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from supervisor.daemon import Daemon
from tests.hostile import all_slots_free, open_client, ping_ok
from tests.integration.harness import running_daemon

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]

SECRET = "s" * 40
ADMITTED = "ws_supervisor_admissions_total"


def jwt_daemon(overrides: Mapping[str, Any] | None = None) -> Any:
    """``running_daemon`` in jwt mode, with the HS256 secret in its environment."""
    config = {"auth": {"mode": "jwt"}, **(overrides or {})}
    return running_daemon(config, env={"WSS_JWT_SECRET": SECRET})


def token(key: str = SECRET, algorithm: str = "HS256", **claims: Any) -> str:
    payload: dict[str, Any] = {"sub": "alice", "exp": int(time.time()) + 300, **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm)


def url(daemon: Daemon, query: str = "") -> str:
    return f"ws://127.0.0.1:{daemon.front.port}{daemon.config.server.path}{query}"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unsigned_token(**claims: Any) -> str:
    """A token with ``alg: none`` and no signature."""
    payload = {"sub": "alice", "exp": int(time.time()) + 300, **claims}
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(payload)}."


async def test_a_valid_token_in_the_header_connects_as_its_sub_whatever_the_query_says() -> None:
    async with jwt_daemon() as daemon:
        headers = {"Authorization": f"Bearer {token(sub='bob')}"}
        ws, welcome = await open_client(url(daemon, "?user_id=alice"), additional_headers=headers)
        assert welcome["user_id"] == "bob"
        await ping_ok(ws)
        assert daemon.tree.ledger.usage("bob") == 1 and daemon.tree.ledger.usage("alice") == 0
        await ws.close()
        await all_slots_free(daemon)


async def test_a_valid_token_in_the_query_connects_as_its_sub() -> None:
    async with jwt_daemon() as daemon:
        ws, welcome = await open_client(url(daemon, f"?token={token(sub='carol')}"))
        assert welcome["user_id"] == "carol"
        await ping_ok(ws)
        await ws.close()
        await all_slots_free(daemon)


BAD_TOKENS: dict[str, str] = {
    "expired": token(exp=int(time.time()) - 3600),
    "wrong signature": token(key="w" * 40),
    "alg none": unsigned_token(),
    "alg none with a signature": unsigned_token(sub="root") + "x",
    "missing sub": token(sub=None),
    "missing exp": token(exp=None),
    "sub not a string": token(sub=42),
    "sub not a valid id": token(sub="alice:thread"),
    "not yet valid": token(nbf=int(time.time()) + 3600),
    "garbage": "not.a.jwt",
    "empty segments": "..",
    "bad base64": "@@@.@@@.@@@",
    "header is not json": f"{base64.urlsafe_b64encode(b'{').decode()}.e30.x",
    "exp a numeric string": token(exp=str(int(time.time()) + 3600)),
    "iat with digit separators": token(iat="1_000"),
}


@pytest.mark.parametrize("how", ["header", "query"])
async def test_every_bad_token_is_refused_with_401_before_the_upgrade_and_holds_no_slot(
    how: str,
) -> None:
    async with jwt_daemon() as daemon:
        for name, bad in BAD_TOKENS.items():
            headers = {"Authorization": f"Bearer {bad}"} if how == "header" else {}
            query = f"?token={bad}" if how == "query" else ""
            with pytest.raises(InvalidStatus) as refused:
                await connect(url(daemon, query), additional_headers=headers, open_timeout=5)
            assert refused.value.response.status_code == 401, name
            assert daemon.tree.ledger.total() == 0, name
        with pytest.raises(InvalidStatus) as missing:
            await connect(url(daemon, "?user_id=alice"), open_timeout=5)
        assert missing.value.response.status_code == 401  # query auth is off in jwt mode
        assert daemon.metrics.value(ADMITTED, {"result": "admitted"}) == 0
        # the node still serves a valid user afterwards
        ws, welcome = await open_client(url(daemon, f"?token={token()}"))
        assert welcome["user_id"] == "alice"
        await ws.close()
        await all_slots_free(daemon)


async def test_the_401_body_says_why_but_never_echoes_the_token() -> None:
    async with jwt_daemon() as daemon:
        bad = token(key="w" * 40, sub="secret-subject")
        with pytest.raises(InvalidStatus) as refused:
            await connect(url(daemon), additional_headers={"Authorization": f"Bearer {bad}"})
        body = refused.value.response.body or b""
        assert b"signature" in body and bad.encode() not in body
        assert b"secret-subject" not in body


async def test_a_second_a_bad_or_a_foreign_authorization_header_is_401_whatever_the_query() -> None:
    async with jwt_daemon() as daemon:
        good, forged = token(sub="bob"), token(key="w" * 40, sub="alice")
        attempts: list[tuple[str, list[tuple[str, str]]]] = [
            ("", [("Authorization", f"Bearer {good}"), ("Authorization", f"Bearer {forged}")]),
            (f"?token={good}", [("Authorization", f"Bearer {forged}")]),
            # another scheme, or no token, is refused: never replaced by the query token
            (f"?token={good}", [("Authorization", "Basic Ym9iOnB3")]),
            (f"?token={good}", [("Authorization", "Bearer ")]),
        ]
        for query, headers in attempts:
            with pytest.raises(InvalidStatus) as refused:
                await connect(url(daemon, query), additional_headers=headers, open_timeout=5)
            assert refused.value.response.status_code == 401, (query, headers)
        assert daemon.tree.ledger.total() == 0
