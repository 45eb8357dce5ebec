-- Atomically record a matcher decision: a new identity, a link, or an update of a tracklet
-- already linked. Optimistic concurrency: the decision was made at gallery version
-- ARGV[1]; if another matcher committed since, nothing is written and 'retry' is returned.
-- Idempotent per tracklet: a tracklet already recorded with the same or a later end time
-- returns its identity with 'duplicate'.
--
-- KEYS: 1 version  2 identities  3 identity  4 exemplars  5 sightings  6 tracklet  7 events
--       8 tracklets (time index for re-association)  9 tracklets_seen (their wall-clock
--       time: tracklets older than the retention leave both indexes, a few per commit)
-- ARGV: 1 expected version   2 identity id   3 action (new_identity|link|update)
--       4 camera  5 track  6 start  7 end  8 sighting member
--       9 features  10 features meta  11 attention ('' = none)  12 attention meta
--       13 centroid  14 centroid meta  15 distance ('' = none)  16 now  17 ttl seconds
--       18 events maxlen  19 tracklet vector (mean exemplar, for re-association)
--       20 vector meta  21 tracklet ref (camera:track)  22 path ('' = none)  23 path meta
--       24 representative feature ('' = no attention)  25 its meta  26 its attention map
--       27 its meta  28 footage epoch
-- (pipeline/matcher/codec.py writes ARGV 9..14 with encode_exemplars and centroid, and
-- 19..28 with record_args)

local identity, action = ARGV[2], ARGV[3]
local recorded = redis.call('HGET', KEYS[6], 'identity')
if recorded then
  if tonumber(ARGV[7]) <= tonumber(redis.call('HGET', KEYS[6], 'end')) then
    return {recorded, 'duplicate'}
  end
  if recorded ~= identity or action ~= 'update' then
    return {recorded, 'conflict'}
  end
elseif action == 'update' then
  return {'', 'conflict'}
end
if (redis.call('GET', KEYS[1]) or '0') ~= ARGV[1] then
  return {'', 'retry'}
end
local exists = redis.call('EXISTS', KEYS[3]) == 1
if (action == 'new_identity' and exists) or (action ~= 'new_identity' and not exists) then
  return {'', 'retry'}
end

local now, ttl = ARGV[16], tonumber(ARGV[17])
local last_seen = ARGV[7]
local previous = tonumber(redis.call('HGET', KEYS[3], 'last_seen') or '-1e308')
if previous > tonumber(last_seen) then last_seen = tostring(previous) end

redis.call('HSETNX', KEYS[3], 'created', now)
redis.call('HSET', KEYS[3], 'last_seen', last_seen, 'last_camera', ARGV[4],
  'centroid', ARGV[13], 'centroid_meta', ARGV[14])
if action ~= 'update' then redis.call('HINCRBY', KEYS[3], 'tracklets', 1) end
redis.call('HSET', KEYS[4], 'features', ARGV[9], 'features_meta', ARGV[10])
if ARGV[11] ~= '' then
  redis.call('HSET', KEYS[4], 'attention', ARGV[11], 'attention_meta', ARGV[12])
else
  redis.call('HDEL', KEYS[4], 'attention', 'attention_meta')
end
local old_member = redis.call('HGET', KEYS[6], 'member')
if old_member then redis.call('ZREM', KEYS[5], old_member) end
redis.call('ZADD', KEYS[5], ARGV[6], ARGV[8])
redis.call('HSET', KEYS[6], 'identity', identity, 'camera', ARGV[4], 'track', ARGV[5],
  'start', ARGV[6], 'end', ARGV[7], 'member', ARGV[8], 'vector', ARGV[19],
  'vector_meta', ARGV[20], 'path', ARGV[22], 'path_meta', ARGV[23],
  'rep_feature', ARGV[24], 'rep_feature_meta', ARGV[25],
  'rep_attention', ARGV[26], 'rep_attention_meta', ARGV[27], 'epoch', ARGV[28])
redis.call('ZADD', KEYS[8], ARGV[7], ARGV[21])
redis.call('ZADD', KEYS[9], now, ARGV[21])
local expired = redis.call('ZRANGEBYSCORE', KEYS[9], '-inf', '(' .. tostring(tonumber(now) - ttl),
  'LIMIT', 0, 16)
for _, ref in ipairs(expired) do
  redis.call('ZREM', KEYS[8], ref)
  redis.call('ZREM', KEYS[9], ref)
end
redis.call('ZADD', KEYS[2], now, identity)  -- wall clock: retention is wall-clock too
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. tostring(tonumber(now) - ttl))
local version = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[7], 'MAXLEN', '~', ARGV[18], '*', 'type', action,
  'identity', identity, 'camera', ARGV[4], 'track', ARGV[5], 'start', ARGV[6],
  'end', ARGV[7], 'distance', ARGV[15], 'centroid', ARGV[13], 'centroid_meta', ARGV[14],
  'version', version, 'last_seen', last_seen, 'time', now)
for i = 1, 9 do redis.call('EXPIRE', KEYS[i], ttl) end
return {identity, action}
