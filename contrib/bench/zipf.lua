-- zipf.lua: wrk script for the warm working-set scenario.
--
-- Requests cycle over ZIPF_TILES distinct tiles (default 50,000) and
-- ZIPF_INDICES client labels (query parameter indice=..., default 50),
-- both drawn with Zipf-like popularity (P(rank r) ~ 1 / r^ZIPF_S, default
-- s = 1). Tile rank r is
--   ZIPF_PREFIX/ZIPF_Z/(ZIPF_X0 + r % ZIPF_WIDTH)/(ZIPF_Y0 + r / ZIPF_WIDTH)/ZIPF_FORMAT
-- (defaults /here-proxy/base/mc, 16, 30000, 20000, 250, png), r from 0;
-- contrib/bench/run warms exactly these tiles first (storm --mode list with
-- the same mapping). Each wrk thread has its own seed (ZIPF_SEED + thread).
--
--   wrk -t1 -c64 -d30s -s contrib/bench/zipf.lua http://127.0.0.1:8080
local function env(name, default)
   local v = os.getenv(name)
   if v == nil or v == "" then return default end
   return v
end

local NT = tonumber(env("ZIPF_TILES", "50000"))
local NI = tonumber(env("ZIPF_INDICES", "50"))
local S = tonumber(env("ZIPF_S", "1.0"))
local Z = tonumber(env("ZIPF_Z", "16"))
local X0 = tonumber(env("ZIPF_X0", "30000"))
local Y0 = tonumber(env("ZIPF_Y0", "20000"))
local W = tonumber(env("ZIPF_WIDTH", "250"))
local PREFIX = env("ZIPF_PREFIX", "/here-proxy/base/mc")
local FORMAT = env("ZIPF_FORMAT", "png")
local SEED = tonumber(env("ZIPF_SEED", "12345"))

local threads_made = 0
function setup(thread)
   thread:set("thread_id", threads_made)
   threads_made = threads_made + 1
end

-- Cumulative distribution of 1/r^s over ranks 1..n.
local function cdf(n, s)
   local c, sum = {}, 0
   for r = 1, n do
      sum = sum + 1 / (r ^ s)
      c[r] = sum
   end
   for r = 1, n do c[r] = c[r] / sum end
   return c
end

-- Rank (0-based) for a uniform u: the first r with c[r] >= u.
local function draw(c, n, u)
   local lo, hi = 1, n
   while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      if c[mid] < u then lo = mid + 1 else hi = mid end
   end
   return lo - 1
end

local tiles_cdf, indices_cdf, indices

function init(args)
   math.randomseed(SEED + (thread_id or 0))
   tiles_cdf = cdf(NT, S)
   indices_cdf = cdf(NI, S)
   indices = {}
   for i = 0, NI - 1 do indices[i] = string.format("client-%02d", i) end
end

function request()
   local r = draw(tiles_cdf, NT, math.random())
   local i = draw(indices_cdf, NI, math.random())
   return wrk.format("GET", string.format("%s/%d/%d/%d/%s?indice=%s", PREFIX, Z,
      X0 + r % W, Y0 + math.floor(r / W), FORMAT, indices[i]))
end
