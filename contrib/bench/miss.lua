-- miss.lua: wrk script for the miss-throughput scenario: every request is
-- a tile not asked for before, so every request is a cache miss that goes
-- to the upstream.
--
-- Tile i (i = 0, 1, 2, ... interleaved across wrk threads) is
--   MISS_PREFIX/MISS_Z/(MISS_X0 + i % MISS_WIDTH)/(MISS_Y0 + i / MISS_WIDTH)/MISS_FORMAT?MISS_QUERY
-- (defaults /here-proxy/base/mc, 19, 0, 0, 4096, png, indice=miss); MISS_THREADS must be
-- wrk's -t (default 1). contrib/bench/run gives every row its own MISS_Y0
-- so that no two rows share a tile.
--
--   MISS_Y0=1000 wrk -t1 -c64 -d30s -s contrib/bench/miss.lua http://127.0.0.1:8080
local function env(name, default)
   local v = os.getenv(name)
   if v == nil or v == "" then return default end
   return v
end

local Z = tonumber(env("MISS_Z", "19"))
local X0 = tonumber(env("MISS_X0", "0"))
local Y0 = tonumber(env("MISS_Y0", "0"))
local W = tonumber(env("MISS_WIDTH", "4096"))
local PREFIX = env("MISS_PREFIX", "/here-proxy/base/mc")
local FORMAT = env("MISS_FORMAT", "png")
local QUERY = env("MISS_QUERY", "indice=miss")

local threads_made = 0
function setup(thread)
   thread:set("thread_id", threads_made)
   threads_made = threads_made + 1
end

local n, step, offset

function init(args)
   offset = thread_id or 0
   step = tonumber(env("MISS_THREADS", "1"))
   n = 0
end

function request()
   local i = offset + n * step
   n = n + 1
   return wrk.format("GET", string.format("%s/%d/%d/%d/%s?%s", PREFIX, Z,
      X0 + i % W, Y0 + math.floor(i / W), FORMAT, QUERY))
end
