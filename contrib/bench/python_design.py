"""The Python design, as a benchmark reference row (contrib/bench/run).

The service hereproxy replaces was FastAPI + httpx with an in-process dict
cache, run by uvicorn with one worker and no NGINX in front.  This is that
design rebuilt for the bench, not the old code: GET /here-proxy/<tile>
looks the tile path up in a plain dict (no bound, no eviction); on a miss
it fetches <upstream>/v3/<tile>?apiKey=... with one shared
httpx.AsyncClient (keep-alive) and stores the answer.  Concurrent misses
for the same tile are not coalesced: each goes to the upstream.  Like the
old service it counts requests per indice (GET /metrics).

  PYDESIGN_UPSTREAM=http://127.0.0.1:PORT PYDESIGN_API_KEY=KEY \\
  python3 -m uvicorn --app-dir contrib/bench python_design:app \\
      --host 127.0.0.1 --port 8081 --workers 1

Debian: python3-fastapi python3-uvicorn python3-httpx (uvicorn uses
python3-uvloop and python3-httptools when they are installed).
"""

import collections
import os

import httpx
from fastapi import FastAPI, Response

UPSTREAM = os.environ.get("PYDESIGN_UPSTREAM", "http://127.0.0.1:8000").rstrip("/")
API_KEY = os.environ.get("PYDESIGN_API_KEY", "")
# Kept upstream connections: as many as the bench's client connections, so
# that a miss load does not reconnect for lack of a pooled connection.
KEEPALIVE = int(os.environ.get("PYDESIGN_KEEPALIVE", "64"))
PASSED = ("content-type", "etag", "cache-control", "last-modified")

app = FastAPI()
cache = {}                           # tile path -> (status, body, headers)
counts = collections.Counter()       # indice -> requests
client = None


@app.on_event("startup")
async def startup():
    global client
    client = httpx.AsyncClient(
        base_url=UPSTREAM + "/v3", timeout=httpx.Timeout(30.0),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=KEEPALIVE))


@app.on_event("shutdown")
async def shutdown():
    await client.aclose()


@app.get("/metrics")
async def metrics():
    return {"indices": {k: {"requests": v} for k, v in counts.items()},
            "cache_entries": len(cache)}


@app.get("/here-proxy/{tile:path}")
async def tile(tile: str, indice: str = ""):
    counts[indice] += 1
    hit = cache.get(tile)
    if hit is None:
        r = await client.get("/" + tile, params={"apiKey": API_KEY})
        hit = (r.status_code, r.content, {k: v for k, v in r.headers.items() if k.lower() in PASSED})
        if r.status_code == 200:
            cache[tile] = hit
    status, body, headers = hit
    return Response(content=body, status_code=status, headers=headers)
