"""The Lua scripts of the Redis backend: one atomic publish, one consistent replay snapshot.

Each runs server-side, so each is one round trip that makes (or sees) one consistent state: a
publish lands in the global log and in every topic stream under the same id, or nowhere; a replay
reads the epoch, the newest id, the retention marks and the entries of every topic at one instant.

Keys (``<p>`` is the deployment prefix; the braces are a Redis Cluster hash tag, so every key of
one prefix hashes to one slot and the multi-key scripts stay legal on a cluster):

- ``ssehub:{<p>}:log``: the global stream; every hub process tails it with ``XREAD``. Entry ids
  (``<ms>-<seq>``) are strictly increasing across every publisher; Redis assigns ``<seq>``.
- ``ssehub:{<p>}:t:<topic>``: one stream per topic holding the same entries under the same ids,
  read with ``XRANGE`` for replay.
- ``ssehub:{<p>}:meta``: a hash: ``epoch`` (random, set by the first publish of this data set,
  so ids of data Redis lost, by a restart without persistence or a flush, are recognised as
  unknown), ``last`` (the newest id) and ``forgotten`` (the newest id that left with a topic
  whose every event aged out, see below).
- ``ssehub:{<p>}:gone``: a hash, topic -> the newest id trimmed from that topic's stream (the
  empty field is the log). Redis does not record what trimming removed (``max-deleted-entry-id``
  only follows ``XDEL``), and "did an event after this id leave the history?" is exactly what a
  resume must answer, so the publish script records it as it trims.
- ``ssehub:{<p>}:newest``: a sorted set, topic -> the ms of its newest entry: which topics
  exist (for ``/status``) and which of them aged out entirely.
- ``ssehub:{<p>}:topics``: the set of topics that versions before ``newest`` kept (a plain set,
  never cleaned up). Nothing adds to it any more; its members are moved into ``newest`` (or
  removed, when aged out) a few at a time, and Redis deletes the key once it is empty.
- ``ssehub:{<p>}:idem``: a hash, idempotency key -> ``"<fingerprint> <stream id>"`` of the
  publication it names, and ``ssehub:{<p>}:idemt``, a sorted set of the same keys scored by the
  ms of that id. A key is remembered for the age bound (a record older than it counts as absent
  and is removed a few at a time by later keyed publishes) and at most ``log_size`` keys (the
  oldest go first); both keys expire together once no keyed publish has come for the age bound.
  The publish script checks and writes them in the same atomic step as the append, so two
  publishes with one key store one event, and a key that names another publication (another
  fingerprint) fails the publish before anything is written.
- ``ssehub:{<p>}:bytes``: a hash, topic -> the bytes of its stream's entries (the empty field
  is the log, the field `` total`` all topic streams together; no topic has a space), and
  ``ssehub:{<p>}:oldest``, a sorted set, topic -> the age of its oldest entry (``ms * 1024 +
  seq``): the byte budgets.

Topics that age out are removed: when every event of a topic is older than the age bound, its
stream, its ``gone`` field and its ``newest`` member go (:data:`EXPIRE_LUA`, a few topics per
publish), and the newest id it had is folded into ``forgotten``. As in the memory backend
(:class:`~ssehub.broker.history.History`), a topic without live history (removed, aged out but
not yet removed, or never published) answers a resume from ``forgotten``: an id before it may
have been followed by an event of that topic, so it is expired, never resumed as if complete. A
topic created afterwards inherits ``forgotten`` as its ``gone`` field, like a new memory log.
Time: the caller passes ``now`` in milliseconds (Redis's ``TIME`` read at start, advanced by the
broker's clock, so tests drive history age with a manual clock). The ``<ms>`` of a new id is
``max(now, ms of the newest id)``, so ids never go backwards even if publishers' clocks differ.

Trimming is exact (``MAXLEN =`` and ``MINID =``): the history keeps exactly the configured count,
so replay is exact too. Each publish removes at most a few entries, as cheap as ``~`` at this
rate. Byte budgets (:class:`~ssehub.broker.history.HistoryBudget`) trim the same way: an entry's
size is the length of its field names and values plus a fixed overhead, counted in ``bytes`` as
it is appended and subtracted as it is trimmed (trimming reads what it removes anyway, for
``gone``). The publish script keeps each topic stream within ``history_bytes`` and the log within
``history_total_bytes`` (oldest entries first; the new entry always stays), and returns, with
the age candidates, the topics :data:`EXPIRE_LUA` needs to bring all topic streams together
back within ``history_total_bytes`` (those with the oldest entries, evicted oldest first) and
the topics within ``history_topics`` (those published to least recently, removed whole). Every
trim records its ``gone`` mark, so a resume from an evicted id gets ``expired``. Entries stored
before bytes were counted count as nothing (counters never go below 0).

Entries hold plain fields, never pickle: ``t`` (the topics as a JSON array), ``d`` (data, UTF-8
text), ``e`` (event type), ``r`` (retry, decimal), ``c`` (comment), ``s`` (line separator) when
set, and in the log only ``p`` (the epoch).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "EXPIRE_LUA",
    "FORGET_LUA",
    "LIST_LUA",
    "PUBLISH_LUA",
    "REPLAY_LUA",
    "SIZES_LUA",
    "TAIL_LUA",
]

_HELPERS: Final = """
local function ms_of(id)
  return tonumber(string.match(id, '^(%d+)-'))
end
-- How old an entry is, as a sorted-set score that orders ids exactly (within a millisecond, up
-- to its 1024th entry): ms * 1024 + seq stays an exact double until the year 2249.
local function age_score(id)
  local ms_part, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms_part) * 1024 + math.min(tonumber(seq), 1023)
end
-- Compare two stream ids exactly (as decimal strings: Lua numbers are doubles); false is none.
local function id_max(a, b)
  if not a then return b end
  if not b then return a end
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if #am ~= #bm then
    if #am < #bm then return b end
    return a
  end
  if am ~= bm then
    if am < bm then return b end
    return a
  end
  if #as ~= #bs then
    if #as < #bs then return b end
    return a
  end
  if as < bs then return b end
  return a
end
"""

_CANDIDATES: Final = """
-- Up to `limit` topics that may have aged out entirely: those of `newest` scored before the
-- cutoff, then members of the old `topics` set (still to be moved into `newest`). Read-only:
-- the caller passes them to EXPIRE_LUA as keys, which checks each one again.
local function candidates(newest_key, legacy_key, cutoff, limit)
  local found = redis.call('ZRANGEBYSCORE', newest_key, '-inf', '(' .. cutoff, 'LIMIT', 0, limit)
  if #found < limit then
    for _, name in ipairs(redis.call('SRANDMEMBER', legacy_key, limit - #found)) do
      found[#found + 1] = name
    end
  end
  return found
end
"""

PUBLISH_LUA: Final = (
    _HELPERS
    + _CANDIDATES
    + """
-- KEYS: log, meta, gone, newest, old topic set, then m topic streams, then idem, idemt, then
--       (always the last two) oldest, bytes.
-- ARGV: log maxlen, topic maxlen, ttl ms, now ms, epoch candidate, expiry candidates limit, m,
--       m topic names (same order as the keys), q (0, or the number of events), q pairs of
--       idempotency key ('' for none) and fingerprint, then per event: number of topics k, k
--       indices into the topic keys (1-based), number of field strings f, f strings (field,
--       value, ...), then (always the last four) the byte budgets: bytes per topic stream,
--       bytes of all topic streams (and of the log), most topics, bytes per entry beyond its
--       fields.
-- Returns {epoch, expiry candidates, id, id, ...}: the ids in batch order (for an event whose
-- key names a remembered publication, that publication's id; it is not stored again).
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  epoch = ARGV[5]
  redis.call('HSET', KEYS[2], 'epoch', epoch)
end
local now = tonumber(ARGV[4])
local ms = now
local last = redis.call('HGET', KEYS[2], 'last')
if last then ms = math.max(ms, ms_of(last)) end
local ms_text = string.format('%d', ms)
local msid = ms_text .. '-*'
local cutoff_ms = math.max(now - tonumber(ARGV[3]), 0)
local cutoff = string.format('%d', cutoff_ms)
local ntopics = tonumber(ARGV[7])

-- Byte budgets: the last four ARGV (after the events), and the last two KEYS (oldest, bytes).
-- `bytes` holds each topic stream's bytes, the log's under '' and all topic streams' together
-- under ' total' (no topic has a space); `oldest` scores each topic by its oldest entry.
local nargs = #ARGV - 4
local topic_bytes, total_bytes = tonumber(ARGV[nargs + 1]), tonumber(ARGV[nargs + 2])
local max_topics, entry_overhead = tonumber(ARGV[nargs + 3]), tonumber(ARGV[nargs + 4])
local oldest_key, bytes_key = KEYS[#KEYS - 1], KEYS[#KEYS]
local incoming = 0 -- the bytes of the entry about to be appended (set for each event)
local incoming_id = false -- its id (known once the log has it: before the topic streams)

local function fields_size(fields)
  local n = entry_overhead
  for i = 1, #fields do n = n + #fields[i] end
  return n
end

local function add_bytes(field, delta)
  if delta == 0 then return end -- Redis refuses "-0"
  if redis.call('HINCRBY', bytes_key, field, delta) < 0 then
    redis.call('HSET', bytes_key, field, 0) -- entries from before bytes were counted
  end
end

-- Make room for one more entry of `incoming` bytes in `key`: at most `maxlen` entries and at
-- most the byte budget (the new entry stays even if it alone is larger), none older than the
-- age bound. Remember the newest id that leaves under `field` of the gone hash, and count the
-- stream's bytes under `field` of the bytes hash. For a topic stream that is new or whose
-- every entry just aged out, the topic starts afresh, as one removed by EXPIRE_LUA would: its
-- marks go into `forgotten`, and it inherits `forgotten` as its mark.
local function trim(key, maxlen, field, is_topic)
  local gone = false
  local left = false -- the newest id removed here
  local freed = 0 -- the bytes removed here
  local size = incoming
  if not is_topic then size = size + 1 + #epoch end -- log entries also hold the epoch
  -- Look at the oldest entry first (a forward read is O(1)); only when it is past the age
  -- bound read the expired ones (each once, as it leaves, to count its bytes; at most 100 per
  -- publish, so a stream that aged out while nobody published is trimmed over a few).
  local oldest = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)
  if #oldest > 0 and ms_of(oldest[1][1]) < cutoff_ms then
    for _, entry in ipairs(redis.call('XRANGE', key, '-', '(' .. cutoff .. '-0', 'COUNT', 100)) do
      freed = freed + fields_size(entry[2])
      left = entry[1]
    end
    gone = left
    redis.call('XTRIM', key, 'MINID', '=', string.match(left, '^(%d+)-') .. '-' ..
      string.format('%d', tonumber(string.match(left, '-(%d+)$')) + 1))
  end
  if is_topic and (#oldest == 0 or (gone and redis.call('XLEN', key) == 0)) then
    local inherited = redis.call('HGET', KEYS[2], 'forgotten')
    inherited = id_max(inherited, redis.call('HGET', KEYS[3], field))
    if gone then
      inherited = id_max(inherited, gone)
      redis.call('HSET', KEYS[2], 'forgotten', inherited)
    end
    gone = inherited
  end
  -- Age trimming removes the oldest entries first, so count and byte trimming after it remove
  -- newer ones: the oldest first, while one more entry would be too many or too large.
  local len = redis.call('XLEN', key)
  local before = tonumber(redis.call('HGET', bytes_key, field)) or 0
  local used = math.max(before - freed, 0)
  local limit = total_bytes
  if is_topic then limit = topic_bytes end
  local extra = len + 1 - maxlen
  local dropped = 0
  while dropped < len and (dropped < extra or used + size > limit) do
    local start = '-'
    if left then start = '(' .. left end
    local batch = redis.call('XRANGE', key, start, '+', 'COUNT', math.max(extra - dropped, 1))
    if #batch == 0 then break end
    for _, entry in ipairs(batch) do
      if dropped >= extra and used + size <= limit then break end
      local n = fields_size(entry[2])
      used, dropped, left = used - n, dropped + 1, entry[1]
    end
  end
  if dropped > 0 then
    gone = left
    redis.call('XTRIM', key, 'MINID', '=', string.match(left, '^(%d+)-') .. '-' ..
      string.format('%d', tonumber(string.match(left, '-(%d+)$')) + 1))
  end
  if gone then redis.call('HSET', KEYS[3], field, gone) end
  used = math.max(used, 0) + size
  redis.call('HSET', bytes_key, field, used)
  if is_topic then
    add_bytes(' total', used - before)
    local head = incoming_id -- the new entry, when nothing older remains
    if left then
      local rest = redis.call('XRANGE', key, '(' .. left, '+', 'COUNT', 1)
      if #rest > 0 then head = rest[1][1] end
    elseif #oldest > 0 then
      head = oldest[1][1]
    end
    redis.call('ZADD', oldest_key, age_score(head), field)
  end
end

-- Topics for EXPIRE_LUA to bring the totals back within the budgets (it checks again): while
-- the topic streams hold more than `total_bytes`, those with the oldest entries; while there
-- are more than `max_topics` topics, those published to least recently.
local function over_budget(found, limit)
  if (tonumber(redis.call('HGET', bytes_key, ' total')) or 0) > total_bytes then
    for _, name in ipairs(redis.call('ZRANGE', oldest_key, 0, limit - 1)) do
      found[#found + 1] = name
    end
  end
  local excess = math.min(redis.call('ZCARD', KEYS[4]) - max_topics, limit)
  if excess > 0 then
    for _, name in ipairs(redis.call('ZRANGE', KEYS[4], 0, excess - 1)) do
      found[#found + 1] = name
    end
  end
  return found
end

-- Idempotency keys, all checked before anything is written (a conflict writes nothing).
-- again[i]: the stream id event i repeats, or the index of an earlier event of this batch.
local idem, idem_at = KEYS[6 + ntopics], KEYS[7 + ntopics]
local nkeys = tonumber(ARGV[8 + ntopics])
local again = {}
local repeats = 0
if nkeys > 0 then
  local firsts = {}
  for i = 1, nkeys do
    local key, fp = ARGV[7 + ntopics + 2 * i], ARGV[8 + ntopics + 2 * i]
    if key ~= '' then
      local first = firsts[key]
      if not first then
        local record = redis.call('HGET', idem, key)
        local rfp, rid
        if record then rfp, rid = string.match(record, '^(%S+) (%S+)$') end
        if rid and ms_of(rid) >= cutoff_ms then first = {rfp, rid} else first = {fp, i} end
        firsts[key] = first
      end
      if first[1] ~= fp then
        return redis.error_reply('SSEHUB_IDEMPOTENCY_CONFLICT event ' .. i)
      end
      if first[2] ~= i then
        again[i] = first[2]
        repeats = repeats + 1
      end
    end
  end
  if repeats == nkeys then
    -- Every event was published before: store nothing, answer the first ids.
    local result = {epoch, {}}
    for i = 1, nkeys do result[#result + 1] = again[i] end
    return result
  end
end

for i = 1, ntopics do
  redis.call('ZADD', KEYS[4], ms_text, ARGV[7 + i])
  redis.call('SREM', KEYS[5], ARGV[7 + i])
end
local result = {epoch, {}}
local newest = false
local index = 0
local pos = 9 + ntopics + 2 * nkeys
while pos <= nargs do
  local k = tonumber(ARGV[pos])
  local targets = {}
  for j = 1, k do targets[j] = tonumber(ARGV[pos + j]) end
  pos = pos + k + 1
  local nfields = tonumber(ARGV[pos])
  local fields = {}
  for j = 1, nfields do fields[j] = ARGV[pos + j] end
  pos = pos + nfields + 1
  incoming = fields_size(fields)
  index = index + 1
  local repeated = again[index]
  if repeated then
    if type(repeated) == 'number' then repeated = result[2 + repeated] end
    result[#result + 1] = repeated
  else
    trim(KEYS[1], tonumber(ARGV[1]), '', false)
    local id = redis.call('XADD', KEYS[1], 'MAXLEN', '=', ARGV[1], msid, 'p', epoch, unpack(fields))
    incoming_id = id
    for j = 1, k do
      local t = targets[j]
      local key = KEYS[5 + t]
      trim(key, tonumber(ARGV[2]), ARGV[7 + t], true)
      redis.call('XADD', key, 'MAXLEN', '=', ARGV[2], id, unpack(fields))
    end
    result[#result + 1] = id
    newest = id
    local key = nkeys > 0 and ARGV[7 + ntopics + 2 * index] or ''
    if key ~= '' then
      redis.call('HSET', idem, key, ARGV[8 + ntopics + 2 * index] .. ' ' .. id)
      redis.call('ZADD', idem_at, string.match(id, '^(%d+)-'), key)
    end
  end
end
redis.call('HSET', KEYS[2], 'last', newest)
if nkeys > 0 then
  -- Forget keys older than the age bound (a few more than this publish added, so removal
  -- keeps up) and beyond log maxlen keys, then let both keys expire if keyed publishing stops.
  local limit = 2 * nkeys + 10
  local old = redis.call('ZRANGEBYSCORE', idem_at, '-inf', '(' .. cutoff, 'LIMIT', 0, limit)
  local extra = math.min(redis.call('ZCARD', idem_at) - #old - tonumber(ARGV[1]), limit)
  if extra > 0 then
    for _, name in ipairs(redis.call('ZRANGE', idem_at, #old, #old + extra - 1)) do
      old[#old + 1] = name
    end
  end
  if #old > 0 then
    redis.call('HDEL', idem, unpack(old))
    redis.call('ZREM', idem_at, unpack(old))
  end
  redis.call('PEXPIRE', idem, ARGV[3])
  redis.call('PEXPIRE', idem_at, ARGV[3])
end
result[2] = over_budget(candidates(KEYS[4], KEYS[5], cutoff, tonumber(ARGV[6])), tonumber(ARGV[6]))
return result
"""
)
"""Append a batch of events to the log and their topic streams, trim, and return the new ids
(and a few topics that may have aged out, for :data:`EXPIRE_LUA`)."""

EXPIRE_LUA: Final = (
    _HELPERS
    + """
-- KEYS: meta, gone, newest, old topic set, oldest, bytes, then topic streams.
-- ARGV: ttl ms, now ms, bytes of all topic streams at most, most topics, bytes per entry beyond
--       its fields, then the topic names (same order as the streams).
-- Removes each topic whose every entry is older than the age bound (its stream, marks, bytes
-- and members of `newest` and `oldest`) and folds the newest id it had into `forgotten`; a topic
-- that is still live (published since it was picked, or only known from the old set) gets its
-- true score instead. Then, of the given topics: while there are more than `most topics`, those
-- published to least recently go the same way; while the topic streams hold more bytes than
-- the budget, their oldest entries go, oldest first (a topic left without entries goes whole).
-- Returns how many topics were removed.
local cutoff_ms = math.max(tonumber(ARGV[2]) - tonumber(ARGV[1]), 0)
local forgotten = redis.call('HGET', KEYS[1], 'forgotten')
local raised = false
local removed = 0
local oldest_key, bytes_key = KEYS[5], KEYS[6]

local function add_total(delta)
  if delta == 0 then return end -- Redis refuses "-0"
  if redis.call('HINCRBY', bytes_key, ' total', delta) < 0 then
    redis.call('HSET', bytes_key, ' total', 0)
  end
end

local function drop(key, topic, newest_id)
  local mark = redis.call('HGET', KEYS[2], topic)
  if newest_id then mark = id_max(mark, newest_id) end
  if mark then
    forgotten = id_max(forgotten, mark)
    raised = true
  end
  redis.call('UNLINK', key)
  redis.call('HDEL', KEYS[2], topic)
  redis.call('ZREM', KEYS[3], topic)
  redis.call('ZREM', oldest_key, topic)
  add_total(-(tonumber(redis.call('HGET', bytes_key, topic)) or 0))
  redis.call('HDEL', bytes_key, topic)
  removed = removed + 1
end

local function newest_id(key)
  local newest = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
  if #newest > 0 then return newest[1][1] end
  return false
end

local live = {} -- indices of KEYS whose topic stays, for the budgets below
for i = 7, #KEYS do
  local key, topic = KEYS[i], ARGV[i - 1]
  local newest = newest_id(key)
  if newest and ms_of(newest) >= cutoff_ms then
    redis.call('ZADD', KEYS[3], string.match(newest, '^(%d+)-'), topic)
    live[#live + 1] = i
  else
    drop(key, topic, newest)
  end
  redis.call('SREM', KEYS[4], topic)
end

local excess = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[4])
if excess > 0 then
  local stale = {}
  for _, name in ipairs(redis.call('ZRANGE', KEYS[3], 0, excess - 1)) do stale[name] = true end
  local kept = {}
  for _, i in ipairs(live) do
    if stale[ARGV[i - 1]] then
      drop(KEYS[i], ARGV[i - 1], newest_id(KEYS[i]))
    else
      kept[#kept + 1] = i
    end
  end
  live = kept
end

local budget = tonumber(ARGV[3])
while (tonumber(redis.call('HGET', bytes_key, ' total')) or 0) > budget do
  local best, best_ms = false, false
  for n, i in ipairs(live) do
    local score = tonumber(redis.call('ZSCORE', oldest_key, ARGV[i - 1]))
    if score and (not best_ms or score < best_ms) then best, best_ms = n, score end
  end
  if not best then break end
  local i = live[best]
  local key, topic = KEYS[i], ARGV[i - 1]
  local head = redis.call('XRANGE', key, '-', '+', 'COUNT', 2)
  if #head < 2 then
    drop(key, topic, newest_id(key))
    table.remove(live, best)
  else
    local first = head[1][1]
    local n = tonumber(ARGV[5])
    for _, part in ipairs(head[1][2]) do n = n + #part end
    redis.call('XTRIM', key, 'MINID', '=', string.match(first, '^(%d+)-') .. '-' ..
      string.format('%d', tonumber(string.match(first, '-(%d+)$')) + 1))
    redis.call('HSET', KEYS[2], topic, first)
    if redis.call('HINCRBY', bytes_key, topic, -n) < 0 then
      redis.call('HSET', bytes_key, topic, 0)
    end
    add_total(-n)
    redis.call('ZADD', oldest_key, age_score(head[2][1]), topic)
  end
end
if raised then redis.call('HSET', KEYS[1], 'forgotten', forgotten) end
return removed
"""
)
"""Remove topics whose history aged out entirely, keeping what a resume needs: ``forgotten``;
and bring the topic streams back within the byte and topic budgets."""

REPLAY_LUA: Final = (
    "#!lua flags=no-writes\n"
    """
-- KEYS: meta, gone, topic streams...
-- ARGV: after id (normalised "<ms>-<seq>"), ttl ms, count limit per topic, now ms, then the
--       topic names (same order as the keys).
-- Returns {epoch or false, newest id or false, forgotten id or false,
--          per topic: {gone id or false, first id inside the age bound or false, entries,
--                      newest id when no entry is inside the age bound, else false}}
local after, limit = ARGV[1], ARGV[3]
local cutoff = string.format('%d', math.max(tonumber(ARGV[4]) - tonumber(ARGV[2]), 0))
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'last', 'forgotten')
local result = {meta[1], meta[2], meta[3]}
for i = 3, #KEYS do
  local key = KEYS[i]
  local gone = redis.call('HGET', KEYS[2], ARGV[i + 2])
  -- Entries past the age bound may still be stored (trimming happens on publish); they are
  -- outside the history all the same.
  local first = false
  local newest = false
  local entries = {}
  local head = redis.call('XRANGE', key, cutoff, '+', 'COUNT', 1)
  if #head > 0 then
    first = head[1][1]
    entries = redis.call('XRANGE', key, '(' .. after, '+', 'COUNT', limit)
  else
    -- Nothing live: the topic counts as removed (EXPIRE_LUA will remove it), its newest id
    -- as forgotten.
    local tail = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
    if #tail > 0 then newest = tail[1][1] end
  end
  result[#result + 1] = {gone, first, entries, newest}
end
return result
"""
)
"""Read, at one instant, what a resume needs: the epoch, the newest id, the forgotten mark, and
per topic its retention marks and the entries after the client's id."""

TAIL_LUA: Final = (
    "#!lua flags=no-writes\n"
    """
-- KEYS: meta, gone.  Returns {epoch or false, newest id or false, newest id trimmed from the log}
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'last')
return {meta[1], meta[2], redis.call('HGET', KEYS[2], '')}
"""
)
"""Where the log stands: what a reader needs to start, or to check for a gap after reconnecting."""

SIZES_LUA: Final = (
    "#!lua flags=no-writes\n"
    """
-- KEYS: topic streams.  ARGV: ttl ms, now ms.  Returns the retained count of each topic.
local cutoff = string.format('%d', math.max(tonumber(ARGV[2]) - tonumber(ARGV[1]), 0))
local sizes = {}
for i = 1, #KEYS do
  local n = redis.call('XLEN', KEYS[i])
  if n > 0 then
    -- Entries past the age bound wait for the next publish to be trimmed; do not count them.
    n = n - #redis.call('XRANGE', KEYS[i], '-', '(' .. cutoff .. '-0', 'COUNT', n)
  end
  sizes[i] = n
end
return sizes
"""
)
"""Count the events each topic retains (age bound applied)."""

LIST_LUA: Final = (
    "#!lua flags=no-writes\n"
    + _CANDIDATES
    + """
-- KEYS: newest, old topic set.  ARGV: ttl ms, now ms, expiry candidates limit.
-- Returns {topics with an entry inside the age bound, members of the old set, candidates}.
local cutoff = string.format('%d', math.max(tonumber(ARGV[2]) - tonumber(ARGV[1]), 0))
return {
  redis.call('ZRANGEBYSCORE', KEYS[1], cutoff, '+inf'),
  redis.call('SMEMBERS', KEYS[2]),
  candidates(KEYS[1], KEYS[2], cutoff, tonumber(ARGV[3])),
}
"""
)
"""Name the topics that retain events (for ``/status``), and a few that may have aged out."""

FORGET_LUA: Final = """
-- KEYS: gone, newest, old topic set, oldest, bytes, then topic streams.  ARGV: the topic names
-- (same order as the streams). The global log keeps its entries (readers catch up from it; it is
-- bounded by log_size and bytes): only the per-topic history that replay reads goes, with the
-- topic's trim mark, bytes and name. `forgotten` is not raised (see History.forget): a forgotten
-- topic's own events were never other topics' events.
for i = 6, #KEYS do
  local topic = ARGV[i - 5]
  redis.call('DEL', KEYS[i])
  redis.call('HDEL', KEYS[1], topic)
  redis.call('ZREM', KEYS[2], topic)
  redis.call('SREM', KEYS[3], topic)
  redis.call('ZREM', KEYS[4], topic)
  local bytes = tonumber(redis.call('HGET', KEYS[5], topic)) or 0
  if bytes > 0 and redis.call('HINCRBY', KEYS[5], ' total', -bytes) < 0 then
    redis.call('HSET', KEYS[5], ' total', 0)
  end
  redis.call('HDEL', KEYS[5], topic)
end
return #KEYS - 5
"""
"""Drop the history of some topics: their streams, their trim marks, their names."""
