package redisbroker

import "fmt"

// redisLibrary is the Redis Function library "wall": the single sequencer of
// every wall. Each function takes one key, <prefix>{<wall>} (e.g.
// wall:{main}), and derives the wall's keys from it, so a wall's keys share
// the hash tag {<wall>} (one cluster slot):
//
//	<prefix>{<wall>}:meta  hash: seq (last assigned), epoch, base (seq at the last restore)
//	<prefix>{<wall>}:log   zset: score seq, member the payload; the newest <history> messages
//	<prefix>{<wall>}:ids   zset: score seq, member the id; same bounds, for id cursors
//
// and every message is published to <prefix>events. A payload is
//
//	<seq> <epoch> <id> <wall> t=<unix ms> [u=<user, percent-escaped>]\n<body>
//
// (the body last and raw, so it needs no escaping; payloads of older
// versions have no t= and u= fields). The constants HISTORY
// and BODY_LIMIT are the defaults of the instance that loaded the library;
// they apply to redis-cli calls, Go callers pass their own history.
const redisLibrary = `#!lua name=wall

local HISTORY = %d
local BODY_LIMIT = %d
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
-- held=1 means the caller holds the wall in its cache: if Redis lost the
-- wall, fail with WALLGONE so the caller restores it first (numbering
-- continues) instead of starting a new epoch. user is the author,
-- percent-escaped (no spaces).
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
  local epoch = redis.call('HGET', meta, 'epoch')
  if not epoch then
    if args[4] == '1' then return redis.error_reply('WALLGONE ' .. name) end
    epoch = string.sub(redis.sha1hex(key .. ':' .. now()), 1, 16)
    redis.call('HSET', meta, 'epoch', epoch)
  elseif id ~= '' then
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
  redis.call('PUBLISH', pre .. 'events', p)
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
-- Puts a wall that Redis lost back from an instance's cache. It applies if
-- the wall is absent, or if another instance restored it in the same epoch
-- with fewer messages and nothing was posted since (the most complete
-- cache wins).
local function restore(keys, args)
  local key = keys[1]
  local meta = key .. ':meta'
  local epoch, last = args[1], tonumber(args[2])
  local cur = redis.call('HMGET', meta, 'seq', 'epoch', 'base')
  local from = 0
  if cur[2] then
    local seq = tonumber(cur[1]) or 0
    if cur[2] ~= epoch or not cur[3] or tonumber(cur[3]) ~= seq or seq >= last then
      return 0
    end
    from = seq
  end
  redis.call('HSET', meta, 'seq', last, 'epoch', epoch, 'base', last)
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

redis.register_function('wall_publish', publish)
redis.register_function{function_name = 'wall_read', callback = read, flags = {'no-writes'}}
redis.register_function('wall_restore', restore)
`

// redisLibraryCode returns the library source with an instance's defaults.
func redisLibraryCode(history, bodyLimit int) string {
	return fmt.Sprintf(redisLibrary, history, bodyLimit)
}
