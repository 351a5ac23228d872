"""The Lua scripts of the Redis ledger: one script per ledger call, atomic in Redis.

Keys of a user (``P`` is ``[redis] key_prefix``; the braces are a Redis
Cluster hash tag, so a user's two keys live in one slot):

- ``P:{user_id}:slots``: sorted set, isolation key -> lease expiry (ms, server clock);
- ``P:{user_id}:holders``: hash, isolation key -> ``node_id TAB websocket_id TAB acquired_ms``.

Both keys expire one lease after the last write, so once every node has
stopped, Redis holds nothing of ws-supervisor's. Nodes hear about a
connection they must close on the channel ``P:node:<node_id>``: a message is
``op TAB user_id TAB isolation_key TAB websocket_id`` with ``op`` either
``supersede`` or ``evict``. The same channel carries pushes between nodes
(``push1`` and ``pushack1``, :mod:`supervisor.cluster.push_tally`). Times come
from ``TIME`` on the Redis server, never from a node's clock.
"""

from __future__ import annotations

__all__ = [
    "ACQUIRE",
    "BY_NAME",
    "DROP_NODE",
    "HOLDERS",
    "PUSH",
    "PUSHACK",
    "RELEASE",
    "RENEW",
    "TRANSFER",
    "USAGE",
]

_PRELUDE = r"""
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function split(record)
  local node, ws, since = string.match(record, '^([^\t]*)\t([^\t]*)\t([^\t]*)$')
  return node, ws, tonumber(since)
end
local function purge(slots, holders, now)
  local gone = redis.call('ZRANGEBYSCORE', slots, '-inf', now)
  for _, key in ipairs(gone) do
    redis.call('HDEL', holders, key)
  end
  if #gone > 0 then
    redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
  end
end
local function drop(slots, holders, key)
  redis.call('HDEL', holders, key)
  redis.call('ZREM', slots, key)
end
local function keep_alive(slots, holders, ttl)
  if redis.call('ZCARD', slots) == 0 then
    redis.call('DEL', slots, holders)
  else
    redis.call('PEXPIRE', slots, ttl)
    redis.call('PEXPIRE', holders, ttl)
  end
end
local function notify(prefix, record, op, user, key)
  local node, ws = split(record)
  redis.call('PUBLISH', prefix .. node, op .. '\t' .. user .. '\t' .. key .. '\t' .. ws)
end
"""

ACQUIRE = (
    _PRELUDE
    + r"""
-- KEYS: slots, holders. ARGV: key, node, ws, limit, ttl_ms, evict (1/0), channel prefix, user.
-- Returns {status, now}: acquired | superseded | evicted | user_full.
local slots, holders = KEYS[1], KEYS[2]
local key, limit, ttl = ARGV[1], tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()
purge(slots, holders, now)
local status = 'acquired'
local current = redis.call('HGET', holders, key)
if current then
  notify(ARGV[7], current, 'supersede', ARGV[8], key)
  status = 'superseded'
else
  while redis.call('ZCARD', slots) >= limit do
    if ARGV[6] ~= '1' then
      return {'user_full', now}
    end
    local all = redis.call('HGETALL', holders)
    local victim, oldest = nil, nil
    for i = 1, #all, 2 do
      local _, _, since = split(all[i + 1])
      if oldest == nil or since < oldest or (since == oldest and all[i] < victim) then
        victim, oldest = all[i], since
      end
    end
    notify(ARGV[7], redis.call('HGET', holders, victim), 'evict', ARGV[8], victim)
    drop(slots, holders, victim)
    status = 'evicted'
  end
end
redis.call('HSET', holders, key, ARGV[2] .. '\t' .. ARGV[3] .. '\t' .. now)
redis.call('ZADD', slots, now + ttl, key)
keep_alive(slots, holders, ttl)
return {status, now}
"""
)

RELEASE = (
    _PRELUDE
    + r"""
-- KEYS: slots, holders. ARGV: key, node, ws. Returns 1 if freed, 0 if not this holder's.
local current = redis.call('HGET', KEYS[2], ARGV[1])
if not current then
  return 0
end
local node, ws = split(current)
if node ~= ARGV[2] or ws ~= ARGV[3] then
  return 0
end
drop(KEYS[1], KEYS[2], ARGV[1])
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[2])
end
return 1
"""
)

TRANSFER = (
    _PRELUDE
    + r"""
-- KEYS: slots, holders. ARGV: key, node, old ws, new ws, limit, ttl_ms, channel prefix, user.
-- Returns 1 if the new holder has the slot, 0 if no room is left for it. The new holder is
-- the thread's newest connection: a holder on another node (the thread resumed there before
-- it came back here) is superseded, as by ACQUIRE.
local slots, holders = KEYS[1], KEYS[2]
local key, ttl = ARGV[1], tonumber(ARGV[6])
local now = now_ms()
purge(slots, holders, now)
local current = redis.call('HGET', holders, key)
if current then
  local node, ws = split(current)
  if node ~= ARGV[2] or ws ~= ARGV[3] then
    notify(ARGV[7], current, 'supersede', ARGV[8], key)
  end
elseif redis.call('ZCARD', slots) >= tonumber(ARGV[5]) then
  return 0
end
redis.call('HSET', holders, key, ARGV[2] .. '\t' .. ARGV[4] .. '\t' .. now)
redis.call('ZADD', slots, now + ttl, key)
keep_alive(slots, holders, ttl)
return 1
"""
)

RENEW = (
    _PRELUDE
    + r"""
-- KEYS: slots, holders. ARGV: node, ttl_ms, limit, mode, then (key, ws, acquired_ms) triples:
-- every slot this node holds for the user. Extends the leases still held, registers again
-- a missing one (Redis lost it, or its lease ran out) if the user has room - always, in
-- mode "resync", after an outage - and drops this node's slots that are not listed (a
-- release that raced the renewal). A triple with an empty ws is a key whose admission is
-- under way on this node: neither dropped nor registered nor renewed. Returns {superseded,
-- expired, records}: keys now held by another connection, keys lost with no room left, and
-- every record of the user when the user is over the limit (empty otherwise).
local slots, holders = KEYS[1], KEYS[2]
local node, ttl, limit, resync = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == 'resync'
local now = now_ms()
purge(slots, holders, now)
local listed, superseded, expired = {}, {}, {}
for i = 5, #ARGV, 3 do
  listed[ARGV[i]] = true
end
local all = redis.call('HGETALL', holders)
for i = 1, #all, 2 do
  local cnode = split(all[i + 1])
  if cnode == node and not listed[all[i]] then
    drop(slots, holders, all[i])
  end
end
for i = 5, #ARGV, 3 do
  local key, ws = ARGV[i], ARGV[i + 1]
  local current = ws ~= '' and redis.call('HGET', holders, key)
  if ws == '' then
    -- reserved: its admission script is on the way or has just been answered
  elseif current then
    local cnode, cws = split(current)
    if cnode == node and cws == ws then
      redis.call('ZADD', slots, now + ttl, key)
    else
      table.insert(superseded, key)
    end
  elseif resync or redis.call('ZCARD', slots) < limit then
    redis.call('HSET', holders, key, node .. '\t' .. ws .. '\t' .. ARGV[i + 2])
    redis.call('ZADD', slots, now + ttl, key)
  else
    table.insert(expired, key)
  end
end
keep_alive(slots, holders, ttl)
local records = {}
if redis.call('ZCARD', slots) > limit then
  records = redis.call('HGETALL', holders)
end
return {superseded, expired, records}
"""
)

USAGE = (
    _PRELUDE
    + r"""
-- KEYS: slots. Returns the number of live leases.
return redis.call('ZCOUNT', KEYS[1], '(' .. now_ms(), '+inf')
"""
)

HOLDERS = (
    _PRELUDE
    + r"""
-- KEYS: slots, holders. Returns {now, records, expiries}: the live slots of a user.
local now = now_ms()
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'WITHSCORES')
local records = {}
for i = 1, #live, 2 do
  table.insert(records, live[i])
  table.insert(records, redis.call('HGET', KEYS[2], live[i]) or '')
end
return {now, records, live}
"""
)

DROP_NODE = (
    _PRELUDE
    + r"""
-- KEYS: slots, holders. ARGV: node. Frees every slot of the user that the node holds: the
-- node is gone (a worker that died under serve --workers). Returns how many were freed.
local all = redis.call('HGETALL', KEYS[2])
local dropped = 0
for i = 1, #all, 2 do
  local node = split(all[i + 1])
  if node == ARGV[1] then
    drop(KEYS[1], KEYS[2], all[i])
    dropped = dropped + 1
  end
end
if dropped > 0 and redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[2])
end
return dropped
"""
)

PUSH = (
    _PRELUDE
    + r"""
-- KEYS: slots, holders. ARGV: channel prefix, origin node, the thread's isolation key ('' =
-- every connection of the user), message. Publishes the message once to every node but the
-- origin that holds a live slot of the user (or the key), in the order the holders list
-- them. Returns {node1, receivers1, node2, receivers2, ...}: receivers is PUBLISH's
-- answer, the subscribers of that node's channel (0: nobody listens there, as when the
-- node is dead or its listener is reconnecting).
local slots, holders = KEYS[1], KEYS[2]
local prefix, origin, key, message = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now = now_ms()
local seen, out = {}, {}
local function route(key, record)
  local expiry = redis.call('ZSCORE', slots, key)
  if not record or not expiry or tonumber(expiry) <= now then
    return
  end
  local node = split(record)
  if node and node ~= origin and not seen[node] then
    seen[node] = true
    table.insert(out, node)
    table.insert(out, redis.call('PUBLISH', prefix .. node, message))
  end
end
if key ~= '' then
  route(key, redis.call('HGET', holders, key))
else
  local all = redis.call('HGETALL', holders)
  for i = 1, #all, 2 do
    route(all[i], all[i + 1])
  end
end
return out
"""
)

PUSHACK = r"""
-- KEYS: none. ARGV: channel, message. A node's answer to a push, on the pushing node's channel.
return redis.call('PUBLISH', ARGV[1], ARGV[2])
"""

BY_NAME = {
    "ACQUIRE": ACQUIRE,
    "RELEASE": RELEASE,
    "TRANSFER": TRANSFER,
    "RENEW": RENEW,
    "USAGE": USAGE,
    "HOLDERS": HOLDERS,
    "DROP_NODE": DROP_NODE,
    "PUSH": PUSH,
    "PUSHACK": PUSHACK,
}
"""Every script by the name the ledger (or the push between nodes) calls it."""
