-- Atomically apply a re-association plan: move tracklets between identities, rewrite the
-- affected identities (exemplars, centroid, counts), retire merged identities with a
-- 'merged_into' pointer. Same optimistic concurrency as commit.lua: written only if the
-- gallery version is still ARGV[1]; otherwise 'retry'. One event (and version) per
-- identity touched, so other matchers' indexes follow.
--
-- KEYS: 1 version  2 identities  3 events  4.. the keys the plan refers to by index
-- ARGV: 1 expected version  2 now  3 ttl seconds  4 events maxlen  5 plan (JSON)
--       6.. blobs the plan refers to by index (ARGV[5 + n])
-- plan: {moves = [[tracklet key, from sightings key, to sightings key, identity]],
--        identities = [{id, kind, from, hash, exemplars, sightings, features, features_meta,
--                       attention (0 = none), attention_meta, centroid, centroid_meta,
--                       tracklets, last_seen, last_camera}],
--        merges = [{id, into, hash, exemplars, sightings}],   (key fields: KEYS indexes)
--        correction = nil or {record, log, event, snapshot = [KEYS indexes], ids, fields}}
-- A correction (an operator's merge or split) first DUMPs every key in its snapshot into
-- its record (with the identities' scores in the identities ZSET), then stores a SHA1 of
-- each key afterwards: undo.lua restores the DUMPs only while those still match.

if (redis.call('GET', KEYS[1]) or '0') ~= ARGV[1] then
  return {'retry', ''}
end
local now, ttl, maxlen = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local plan = cjson.decode(ARGV[5])
local function blob(n) return ARGV[5 + n] end
local c = plan.correction
if c then
  for n, k in ipairs(c.snapshot) do
    redis.call('HSET', KEYS[c.record], 'key:' .. n, KEYS[k],
      'before:' .. n, redis.call('DUMP', KEYS[k]) or '')
  end
  for _, id in ipairs(c.ids) do
    redis.call('HSET', KEYS[c.record], 'score:' .. id, redis.call('ZSCORE', KEYS[2], id) or '')
  end
end

for _, move in ipairs(plan.moves) do
  local tracklet = KEYS[move[1]]
  local member = redis.call('HGET', tracklet, 'member')
  local start = redis.call('HGET', tracklet, 'start')
  redis.call('ZREM', KEYS[move[2]], member)
  redis.call('ZADD', KEYS[move[3]], start, member)
  redis.call('HSET', tracklet, 'identity', move[4])
end

local version
for _, id in ipairs(plan.identities) do
  local hash = KEYS[id.hash]
  redis.call('HSETNX', hash, 'created', now)
  redis.call('HDEL', hash, 'merged_into')
  redis.call('HSET', hash, 'last_seen', id.last_seen, 'last_camera', id.last_camera,
    'tracklets', id.tracklets, 'centroid', blob(id.centroid), 'centroid_meta', id.centroid_meta)
  if id.kind == 'split' then redis.call('HSET', hash, 'split_from', id.from) end
  redis.call('DEL', KEYS[id.exemplars])
  redis.call('HSET', KEYS[id.exemplars], 'features', blob(id.features),
    'features_meta', id.features_meta)
  if id.attention ~= 0 then  -- the same crops' projections: attention keeps scoring it
    redis.call('HSET', KEYS[id.exemplars], 'attention', blob(id.attention),
      'attention_meta', id.attention_meta)
  end
  redis.call('ZADD', KEYS[2], now, id.id)
  version = redis.call('INCR', KEYS[1])
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*', 'type', id.kind, 'identity', id.id,
    'from', id.from, 'centroid', blob(id.centroid), 'centroid_meta', id.centroid_meta,
    'version', version, 'last_seen', id.last_seen, 'time', now)
  for _, key in ipairs({hash, KEYS[id.exemplars], KEYS[id.sightings]}) do
    redis.call('EXPIRE', key, ttl)
  end
end

for _, m in ipairs(plan.merges) do
  redis.call('HSET', KEYS[m.hash], 'merged_into', m.into)
  redis.call('HDEL', KEYS[m.hash], 'centroid', 'centroid_meta')
  redis.call('DEL', KEYS[m.exemplars], KEYS[m.sightings])
  redis.call('ZREM', KEYS[2], m.id)
  version = redis.call('INCR', KEYS[1])
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*', 'type', 'merge', 'identity', m.id,
    'into', m.into, 'version', version, 'time', now)
  redis.call('EXPIRE', KEYS[m.hash], ttl)
end
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ttl) end
if c then
  for n, k in ipairs(c.snapshot) do
    redis.call('HSET', KEYS[c.record], 'after:' .. n,
      redis.sha1hex(redis.call('DUMP', KEYS[k]) or ''))
  end
  redis.call('HSET', KEYS[c.record], 'event', c.event, 'keys', #c.snapshot,
    'ids', cjson.encode(c.ids), 'state', 'applied', unpack(c.fields))
  redis.call('XADD', KEYS[c.log], 'MAXLEN', '~', maxlen, '*', 'event', c.event,
    unpack(c.fields))
  redis.call('EXPIRE', KEYS[c.record], ttl)
  redis.call('EXPIRE', KEYS[c.log], ttl)
end
return {'ok', tostring(version or ARGV[1])}
