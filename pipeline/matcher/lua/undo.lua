-- Undo one operator correction (pipeline/matcher/corrections.py). A merge or split is
-- restored from the DUMPs its record holds (reassign.lua took them), but only while every
-- key it touched is still as the correction left it (same SHA1 of its DUMP); otherwise
-- nothing is written and 'changed' names the first key that moved on. A confirmation or a
-- "not the same person" mark touched no identity: only its state changes. Matchers'
-- indexes follow through one event per identity restored: 'relink' with its centroid, or
-- 'merge' when it no longer stands as itself.
--
-- KEYS: 1 version  2 identities  3 events  4 corrections log  5 the correction's record
--       6.. the keys the record snapshotted, in its order (key:1, key:2, ...)
-- ARGV: 1 now  2 ttl seconds  3 events maxlen  4 who  5 role  6 this undo's event id
--       7 JSON {identity: KEYS index of its hash} for the identities the record names
-- Returns {status, detail}: ok | unknown | undone (detail: by which event) | changed (key)

local record = KEYS[5]
local state = redis.call('HGET', record, 'state')
if not state then return {'unknown', ''} end
if state ~= 'applied' then return {'undone', redis.call('HGET', record, 'undone_by') or ''} end
local count = tonumber(redis.call('HGET', record, 'keys') or '0')
if #KEYS ~= 5 + count then return {'error', 'expected ' .. count .. ' snapshot keys'} end
for n = 1, count do
  local key = KEYS[5 + n]
  if redis.call('HGET', record, 'key:' .. n) ~= key then return {'error', key} end
  if redis.sha1hex(redis.call('DUMP', key) or '') ~= redis.call('HGET', record, 'after:' .. n) then
    return {'changed', key}
  end
end

local now, ttl, maxlen = ARGV[1], tonumber(ARGV[2]), ARGV[3]
for n = 1, count do
  local before = redis.call('HGET', record, 'before:' .. n)
  if before == '' then
    redis.call('DEL', KEYS[5 + n])
  else
    redis.call('RESTORE', KEYS[5 + n], ttl * 1000, before, 'REPLACE')
  end
end
for id, index in pairs(cjson.decode(ARGV[7])) do
  local hash = KEYS[index]
  local score = redis.call('HGET', record, 'score:' .. id) or ''
  if score ~= '' then redis.call('ZADD', KEYS[2], score, id) else redis.call('ZREM', KEYS[2], id) end
  local version = redis.call('INCR', KEYS[1])
  local centroid = redis.call('HGET', hash, 'centroid')
  local into = redis.call('HGET', hash, 'merged_into')
  if centroid and not into then
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*', 'type', 'relink', 'identity', id,
      'from', '', 'centroid', centroid, 'centroid_meta', redis.call('HGET', hash, 'centroid_meta'),
      'version', version, 'last_seen', redis.call('HGET', hash, 'last_seen') or '', 'time', now)
  else
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*', 'type', 'merge', 'identity', id,
      'into', into or '', 'version', version, 'time', now)
  end
end

redis.call('HSET', record, 'state', 'undone', 'undone_by', ARGV[6], 'undone_at', now)
redis.call('XADD', KEYS[4], 'MAXLEN', '~', maxlen, '*', 'event', ARGV[6], 'kind', 'undo',
  'of', redis.call('HGET', record, 'event'), 'identity', redis.call('HGET', record, 'identity'),
  'other', redis.call('HGET', record, 'other') or '', 'who', ARGV[4], 'role', ARGV[5],
  'time', now)
for _, key in ipairs({KEYS[1], KEYS[2], KEYS[3], KEYS[4], record}) do
  redis.call('EXPIRE', key, ttl)
end
return {'ok', ''}
