package redisbroker

import "fmt"

// redisLibrary is the Redis Function library "wall": the single sequencer of
// every wall. Each function takes one key, <prefix>{<wall>} (e.g.
// wall:{main}), and derives the wall's keys from it, so a wall's keys share
// the hash tag {<wall>} (one cluster slot):
//
//	<prefix>{<wall>}:meta  hash: seq (last assigned), epoch
//	<prefix>{<wall>}:log   zset: score seq, member the payload; the newest <history> messages
//	<prefix>{<wall>}:ids   zset: score seq, member the id; same bounds, for id cursors
//
// and every message is published to the wall's own channel,
// <prefix>{<wall>}:events, in the same slot: with PUBLISH on a single
// Redis, with SPUBLISH (sharded pub/sub, delivered by the node that owns
// the slot) on a Redis Cluster. A payload is
//
//	<seq> <epoch> <id> <wall> t=<unix ms> [u=<user, percent-escaped>]\n<body>
//
// (the body last and raw, so it needs no escaping; payloads of older
// versions have no t= and u= fields). The constants HISTORY
// and BODY_LIMIT are the defaults of the instance that loaded the library;
// they apply to redis-cli calls, Go callers pass their own history.
// PUBLISH is the publishing command of the deployment's mode.
const redisLibrary = `#!lua name=wall

local HISTORY = %d
local BODY_LIMIT = %d
local PUBLISH = '%s'
local KEYERR = 'ERR wall: the key must be <prefix>{<wall name>}, e.g. wall:{main}'
local UUID = '^%%x%%x%%x%%x%%x%%x%%x%%x%%-%%x%%x%%x%%x%%-4%%x%%x%%x%%-[89ab]%%x%%x%%x%%-%%x%%x%%x%%x%%x%%x%%x%%x%%x%%x%%x%%x$'

local function split(key)
  local pre, name = string.match(key, '^(.-){([%%w%%-_%%.~:]+)}$')
  if pre == nil or #name > 64 then return nil end
  return pre, name
end

local function history(v)
  local n = tonumber(v or '')
  if n == nil or n < 1 then return HISTORY end
  return math.floor(n)
end

local function trim(key, hist)
  redis.call('ZREMRANGEBYRANK', key .. ':log', 0, -hist - 1)
  redis.call('ZREMRANGEBYRANK', key .. ':ids', 0, -hist - 1)
end

local function now()
  local t = redis.call('TIME')
  return t[1] .. '.' .. t[2]
end

-- new_id makes a UUID4-shaped id from a hash of the wall, seq, epoch and
-- the server time, with the version and variant nibbles set.
local function new_id(key, seq, epoch)
  local h = redis.sha1hex(key .. ':' .. seq .. ':' .. epoch .. ':' .. now())
  local v = tonumber(string.sub(h, 17, 17), 16) %% 4 + 1
  return string.sub(h, 1, 8) .. '-' .. string.sub(h, 9, 12) .. '-4' .. string.sub(h, 14, 16) .. '-' ..
    string.sub('89ab', v, v) .. string.sub(h, 18, 20) .. '-' .. string.sub(h, 21, 32)
end

-- wall_publish KEY body [id [history [held [user]]]]
--   -> {seq, epoch, id, 1, time} for a new message (time in Unix ms),
--      {seq, epoch, id, 0, payload} if id is still in the history
-- Assigns the next seq, stores and publishes the message, atomically; a
-- post whose id the wall still holds stores nothing (an idempotent retry).
-- held is what the caller holds of the wall in its cache: '' or '0' for
-- nothing, '<seq>.<epoch>' for its newest message ('1' for an unknown
-- position). If Redis lost the wall, fail with WALLGONE, and if Redis is
-- behind the caller in the same epoch (a failover to a replica that missed
-- the newest writes), with WALLBEHIND: the caller restores the wall first
-- (numbering continues) instead of reusing seqs it has delivered. user is
-- the author, percent-escaped (no spaces).
local function publish(keys, args)
  local key = keys[1]
  local pre, name = split(key)
  if pre == nil then return redis.error_reply(KEYERR) end
  local body = args[1]
  if body == nil then return redis.error_reply('ERR wall_publish: missing body') end
  if #body > BODY_LIMIT then
    return redis.error_reply('TOOLARGE wall_publish: body exceeds ' .. BODY_LIMIT .. ' bytes')
  end
  local id = args[2] or ''
  if id ~= '' and (string.match(id, UUID) == nil or string.lower(id) ~= id) then
    return redis.error_reply('ERR wall_publish: id must be a lowercase UUID4')
  end
  local user = args[5] or ''
  if string.find(user, '[%%s%%c]') then
    return redis.error_reply('ERR wall_publish: user must be percent-escaped')
  end
  local meta = key .. ':meta'
  local cur = redis.call('HMGET', meta, 'seq', 'epoch')
  local epoch = cur[2]
  local held = args[4] or ''
  local hseq, hepoch = string.match(held, '^(%%d+)%%.(%%x+)$')
  if not epoch then
    if held ~= '' and held ~= '0' then return redis.error_reply('WALLGONE ' .. name) end
    epoch = string.sub(redis.sha1hex(key .. ':' .. now()), 1, 16)
    redis.call('HSET', meta, 'epoch', epoch)
  elseif hepoch == epoch and (tonumber(cur[1]) or 0) < tonumber(hseq) then
    return redis.error_reply('WALLBEHIND ' .. name)
  end
  if id ~= '' then
    local old = redis.call('ZSCORE', key .. ':ids', id)
    if old then
      local p = redis.call('ZRANGEBYSCORE', key .. ':log', old, old)
      return {tonumber(old), epoch, id, 0, p[1] or ''}
    end
  end
  local seq = redis.call('HINCRBY', meta, 'seq', 1)
  if id == '' then id = new_id(key, seq, epoch) end
  local t = redis.call('TIME')
  local ms = t[1] .. string.format('%%03d', math.floor(tonumber(t[2]) / 1000))
  local p = seq .. ' ' .. epoch .. ' ' .. id .. ' ' .. name .. ' t=' .. ms
  if user ~= '' then p = p .. ' u=' .. user end
  p = p .. '\n' .. body
  redis.call('ZADD', key .. ':log', seq, p)
  redis.call('ZADD', key .. ':ids', seq, id)
  trim(key, history(args[3]))
  redis.call(PUBLISH, key .. ':events', p)
  return {seq, epoch, id, 1, ms}
end

-- wall_read KEY since -> {} for an unknown wall, else
-- {seq, epoch, payload...} with the payloads of seq >= since, oldest first.
local function read(keys, args)
  local key = keys[1]
  local meta = redis.call('HMGET', key .. ':meta', 'seq', 'epoch')
  if not meta[2] then return {} end
  local out = redis.call('ZRANGEBYSCORE', key .. ':log', tonumber(args[1]) or 0, '+inf')
  table.insert(out, 1, meta[2])
  table.insert(out, 1, meta[1] or '0')
  return out
end

-- wall_restore KEY epoch last history [seq id payload]... -> 1 if restored
-- Puts back from an instance's cache what Redis lost of a wall: all of it
-- (the wall is absent: Redis restarted empty), or its newest messages
-- (Redis holds the same epoch at a lower seq, and its newest message is
-- the one the cache has at that seq: a failover to a replica that missed
-- the last writes, or another instance restored a shorter cache). The
-- missing messages are appended and numbering continues. Otherwise (the
-- histories diverged: a post took a seq the cache holds another message
-- at, or the cache does not reach back to Redis's seq) it returns 0.
local function restore(keys, args)
  local key = keys[1]
  local meta = key .. ':meta'
  local epoch, last = args[1], tonumber(args[2])
  local cur = redis.call('HMGET', meta, 'seq', 'epoch')
  local from = 0
  if cur[2] then
    local seq = tonumber(cur[1]) or 0
    if cur[2] ~= epoch or seq >= last then return 0 end
    if seq > 0 then
      local have = redis.call('ZRANGEBYSCORE', key .. ':ids', seq, seq)
      local match = false
      for i = 4, #args - 2, 3 do
        if tonumber(args[i]) == seq then match = have[1] == args[i + 1] end
      end
      if not match then return 0 end
    end
    from = seq
  end
  redis.call('HSET', meta, 'seq', last, 'epoch', epoch)
  for i = 4, #args - 2, 3 do
    local s = tonumber(args[i])
    if s > from then
      redis.call('ZADD', key .. ':log', s, args[i + 2])
      redis.call('ZADD', key .. ':ids', s, args[i + 1])
    end
  end
  trim(key, history(args[3]))
  return 1
end

-- wall_reepoch KEY epoch -> the wall's epoch after the call ('' if absent)
-- Moves a wall whose history diverged from what instances delivered (a
-- failover lost messages and a post reused their seqs before any instance
-- restored them) to a new epoch, so that every cursor of the old numbering
-- is answered with a reset rather than read as a position. The stored
-- messages are kept, rewritten into the new epoch. A no-op if the wall is
-- no longer in epoch.
local function reepoch(keys, args)
  local key = keys[1]
  local meta = key .. ':meta'
  local old = redis.call('HGET', meta, 'epoch')
  if not old or old ~= args[1] then return old or '' end
  local epoch = string.sub(redis.sha1hex(key .. ':' .. old .. ':' .. now()), 1, 16)
  local log = redis.call('ZRANGE', key .. ':log', 0, -1, 'WITHSCORES')
  for i = 1, #log, 2 do
    local p = log[i]
    local sp = string.find(p, ' ', 1, true)
    if sp and string.sub(p, sp + 1, sp + #old + 1) == old .. ' ' then
      redis.call('ZREM', key .. ':log', p)
      redis.call('ZADD', key .. ':log', log[i + 1], string.sub(p, 1, sp) .. epoch .. string.sub(p, sp + #old + 1))
    end
  end
  redis.call('HSET', meta, 'epoch', epoch)
  return epoch
end

redis.register_function('wall_publish', publish)
redis.register_function{function_name = 'wall_read', callback = read, flags = {'no-writes'}}
redis.register_function('wall_restore', restore)
redis.register_function('wall_reepoch', reepoch)
`

// redisLibraryCode returns the library source with an instance's defaults
// and the publishing command of its mode: SPUBLISH on a Redis Cluster,
// PUBLISH on a single Redis.
func redisLibraryCode(history, bodyLimit int, sharded bool) string {
	cmd := "PUBLISH"
	if sharded {
		cmd = "SPUBLISH"
	}
	return fmt.Sprintf(redisLibrary, history, bodyLimit, cmd)
}
