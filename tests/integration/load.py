#!/usr/bin/env python3
"""Bounded-time GET load for the integration tests.

load.py SECONDS THREADS OUTFILE URLPREFIX [PATHFMT]
Each thread keeps one HTTP/1.1 connection and GETs PATHFMT % (x, y) for
random x in 0..39, y in 0..9 until SECONDS have passed. A response counts
as ok when it is 200 with a PNG body. Writes {"ok": n, "failed": n,
"errors": [first five]} as JSON to OUTFILE.
"""
import http.client
import json
import random
import sys
import threading
import time
from urllib.parse import urlsplit

secs, nthreads, out, prefix = (float(sys.argv[1]), int(sys.argv[2]),
                               sys.argv[3], sys.argv[4])
fmt = sys.argv[5] if len(sys.argv) > 5 else "/base/mc/9/%d/%d/png?indice=load"
u = urlsplit(prefix)
stop = time.time() + secs
lock = threading.Lock()
res = {"ok": 0, "failed": 0, "errors": []}


def run(seed):
    rnd = random.Random(seed)
    conn = None
    while time.time() < stop:
        path = u.path + fmt % (rnd.randrange(0, 40), rnd.randrange(0, 10))
        err = None
        try:
            if conn is None:
                conn = http.client.HTTPConnection(u.hostname, u.port,
                                                  timeout=20)
            conn.request("GET", path)
            r = conn.getresponse()
            body = r.read()
            if r.status != 200 or not body.startswith(b"\x89PNG"):
                err = "%s %d %r" % (path, r.status, body[:100])
        except Exception as e:  # reset, timeout, bad status line
            err = "%s %s: %s" % (path, type(e).__name__, e)
            conn = None
        with lock:
            if err:
                res["failed"] += 1
                if len(res["errors"]) < 5:
                    res["errors"].append(err)
            else:
                res["ok"] += 1


threads = [threading.Thread(target=run, args=(i,)) for i in range(nthreads)]
for t in threads:
    t.start()
for t in threads:
    t.join()
with open(out, "w") as f:
    json.dump(res, f)
