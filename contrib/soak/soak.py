#!/usr/bin/env python3
"""contrib/soak driver: load, fault schedule, checks and report.

contrib/soak/run starts the stack with tests/integration/lib.sh (it owns
every process and kills them by pid at the end) and then this driver,
which asks run for the process-level faults (memcached SIGKILL and
restart, SIGHUP, SIGTERM and restart of an instance) over two FIFOs: one
line per command, one "ok ..." line per answer. Everything else (load,
HERE faults through the upstream's /__control/, sampling, memcached key
dumps, checks, report) happens here. Standard library only.

The model behind "errors where a cached copy existed" is in README.
"""

import argparse
import array
import bisect
import hashlib
import http.client
import itertools
import json
import math
import os
import random
import re
import socket
import struct
import sys
import threading
import time
from urllib.parse import quote, unquote

# Seconds of slack on every time bound of the copy model (the proxy and
# memcached count whole seconds).
MARGIN_S = 2.0
# A restarted memcached is trusted this long after it listens again: the
# instances skip a failed server for 2 s and their pools for 3 s (src/mc.c).
MC_SETTLE_S = 5.0
CLIENT_TIMEOUT_S = 30.0
FD_KINDS = ("fds", "fd_fastcgi", "fd_memcached", "fd_here", "fd_socket", "fd_other",
            "close_wait")
SAMPLE_COLUMNS = ("t", "role", "gen", "pid", "rss_kb", "threads", "cache_bytes", "evictions",
                  "refused") + FD_KINDS
TILE_RE = re.compile(r"(base|background|label|blank)/mc/(\d+)/(\d+)/(\d+)/(png8|png|jpeg)")


class SoakError(Exception):
    pass


def now():
    return time.time()


# --------------------------------------------------------------------------
# The command channel to contrib/soak/run
# --------------------------------------------------------------------------
class Control:
    """Process faults are carried out by run (lib.sh owns the processes)."""

    def __init__(self, cmd_path, reply_path):
        self.w = open(cmd_path, "w")       # run opened it for reading first
        self.r = open(reply_path)
        self.lock = threading.Lock()

    def ask(self, line):
        with self.lock:
            self.w.write(line + "\n")
            self.w.flush()
            reply = self.r.readline().strip()
        if not reply.startswith("ok"):
            raise SoakError("run answered %r to %r" % (reply, line))
        return dict(kv.split("=", 1) for kv in reply.split()[1:])

    def close(self):
        try:
            self.w.write("done\n")
            self.w.flush()
        except OSError:
            pass


# --------------------------------------------------------------------------
# A FastCGI client, enough for GET /metrics/prometheus on one instance
# --------------------------------------------------------------------------
def _fcgi_pair(name, value):
    out = b""
    for n in (len(name), len(value)):
        out += bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)
    return out + name + value


def fcgi_get(host, port, uri, timeout=3.0):
    """(status, body) of GET uri on a FastCGI responder."""
    params = b"".join(_fcgi_pair(k.encode(), v.encode()) for k, v in (
        ("REQUEST_METHOD", "GET"), ("REQUEST_URI", uri), ("SCRIPT_NAME", uri),
        ("DOCUMENT_URI", uri), ("QUERY_STRING", ""), ("REMOTE_ADDR", "127.0.0.1"),
        ("SERVER_PROTOCOL", "HTTP/1.1"), ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("SERVER_NAME", "soak"), ("SERVER_PORT", "0")))

    def rec(kind, content):
        return struct.pack(">BBHHBx", 1, kind, 1, len(content), 0) + content

    s = socket.create_connection((host, port), timeout=timeout)
    try:
        s.sendall(rec(1, struct.pack(">HB5x", 1, 0)) + rec(4, params) + rec(4, b"")
                  + rec(5, b""))
        buf, out = b"", b""
        while True:
            while len(buf) >= 8:
                _, kind, _, clen, plen = struct.unpack(">BBHHB", buf[:7])
                if len(buf) < 8 + clen + plen:
                    break
                if kind == 6:
                    out += buf[8:8 + clen]
                elif kind == 3:
                    head, _, body = out.partition(b"\r\n\r\n")
                    m = re.search(rb"(?im)^Status:\s*(\d+)", head)
                    return (int(m.group(1)) if m else 200), body
                buf = buf[8 + clen + plen:]
            chunk = s.recv(65536)
            if not chunk:
                raise SoakError("FastCGI connection closed early")
            buf += chunk
    finally:
        s.close()


def prom_value(text, name):
    m = re.search(r"(?m)^%s(?:\{[^}]*\})? ([0-9.eE+-]+)$" % re.escape(name), text)
    return float(m.group(1)) if m else None


# --------------------------------------------------------------------------
# Tiles
# --------------------------------------------------------------------------
class Tile:
    __slots__ = ("tid", "res", "z", "x", "y", "fmt", "style", "size", "ppi",
                 "client", "client2", "upstream", "first_ok", "l1", "burst")

    def __init__(self, tid, res, z, x, y, fmt, style, size, ppi, burst=False):
        self.tid, self.res, self.z, self.x, self.y = tid, res, z, x, y
        self.fmt, self.style, self.size, self.ppi, self.burst = fmt, style, size, ppi, burst
        p = "%s/mc/%d/%d/%d/%s" % (res, z, x, y, fmt)
        q = "style=%s&size=%d&ppi=%d&scale=1" % (style, size, ppi)
        # The same tile in two parameter orders: one key after canonicalisation.
        self.client = "/here-proxy/%s?%s" % (p, q)
        self.client2 = "/here-proxy/%s?scale=1&ppi=%d&size=%d&style=%s" % (p, ppi, size, style)
        self.upstream = "/v3/%s?%s" % (p, q)
        self.first_ok = None   # end of the first 200
        self.l1 = {}           # (role, gen) -> [(known_at, gone_at)], last few

    def coords(self):
        return (self.res, self.z, self.x, self.y, self.fmt)


def make_tiles(n, burst_n, ramp_n, rnd):
    """n tiles for the Zipf mix (rank = list order), burst_n for the
    coalescing bursts and ramp_n for the ramp; every (resource, z, x, y,
    format) once, so that a memcached key names its tile by its path alone."""
    pick = lambda pairs: rnd.choices([v for v, _ in pairs], [w for _, w in pairs])[0]  # noqa: E731
    seen, tiles = set(), []
    while len(tiles) < n:
        z = rnd.randint(11, 14)
        x, y = rnd.randrange(1 << z), rnd.randrange(1 << z)
        res = pick([("base", 70), ("background", 10), ("label", 10), ("blank", 10)])
        fmt = pick([("png", 70), ("png8", 15), ("jpeg", 15)])
        if (res, z, x, y, fmt) in seen:
            continue
        seen.add((res, z, x, y, fmt))
        style = pick([("explore.day", 50), ("explore.night", 20), ("satellite.day", 15),
                      ("lite.day", 15)])
        size = pick([(256, 80), (512, 20)])
        tiles.append(Tile(len(tiles), res, z, x, y, fmt, style, size, 100))
    burst = []
    while len(burst) < burst_n:
        x, y = rnd.randrange(1 << 16), rnd.randrange(1 << 16)
        if ("base", 16, x, y, "png") in seen:
            continue
        seen.add(("base", 16, x, y, "png"))
        burst.append(Tile(n + len(burst), "base", 16, x, y, "png", "explore.day", 256, 100,
                          burst=True))
    ramp = []
    while len(ramp) < ramp_n:
        x, y = rnd.randrange(1 << 17), rnd.randrange(1 << 17)
        if ("base", 17, x, y, "png") in seen:
            continue
        seen.add(("base", 17, x, y, "png"))
        ramp.append(Tile(n + burst_n + len(ramp), "base", 17, x, y, "png", "explore.day", 256,
                         100))
    return tiles, burst, ramp


class Zipf:
    def __init__(self, n, s):
        self.cum = list(itertools.accumulate(k ** -s for k in range(1, n + 1)))

    def draw(self, rnd):
        return bisect.bisect_left(self.cum, rnd.random() * self.cum[-1])


# --------------------------------------------------------------------------
# The soak
# --------------------------------------------------------------------------
class Soak:
    def __init__(self, a):
        self.a = a
        self.lock = threading.RLock()
        self.t0 = now()
        self.deadline = self.t0 + a.duration
        self.stop = threading.Event()
        rnd = random.Random(a.seed)
        self.tiles, self.burst_tiles, self.ramp_tiles = make_tiles(
            a.tiles, a.burst_pool, a.ramp_clients, rnd)
        self.by_coords = {t.coords(): t for t in self.tiles + self.burst_tiles + self.ramp_tiles}
        self.tile_zipf = Zipf(len(self.tiles), a.zipf_s)
        self.indices = ["soak-i%02d" % i for i in range(a.indices)]
        self.index_zipf = Zipf(len(self.indices), 1.0)
        self.ctl = Control(a.cmd_fifo, a.reply_fifo) if a.cmd_fifo else None
        # instances: role -> address; generations: role -> [gen dicts]
        self.addr = dict(kv.split("=", 1) for kv in a.instances.split(","))
        self.port_role = {v.rsplit(":", 1)[1]: k for k, v in self.addr.items()}
        pids = dict(kv.split("=", 1) for kv in a.pids.split(","))
        self.gens = {r: [{"gen": 0, "pid": int(pids[r]), "start": self.t0 - 1, "end": None}]
                     for r in self.addr}
        self.logs = dict(kv.split("=", 1) for kv in a.logs.split(","))
        # memcached nodes: incarnations [{inc, pid, start, killed}]
        self.mc_ports = [int(p) for p in a.memcached.split(",")]
        self.mc = [{"up": True, "incs": [{"inc": 0, "pid": int(pids["m%d" % (i + 1)]),
                                           "start": self.t0 - MC_SETTLE_S - 1, "killed": None,
                                           "stats": {}}]}
                   for i in range(len(self.mc_ports))]
        self.mc_keys = {}        # (node, inc) -> {tid: [(seen_at, exp)]}
        self.mc_pids = [int(pids["m%d" % (i + 1)]) for i in range(len(self.mc_ports))]
        self.others = {k: int(pids[k]) for k in ("nginx", "upstream") if k in pids}
        self.mc_dump_lock = threading.Lock()
        self.mc_seen_tiles = set()
        self.mc_dumps = 0
        # results
        self.digests = {}
        self.requests = 0
        self.by_status = {}
        self.by_status_cache = {}
        self.errors_by_kind = {}
        self.corrupt = []
        self.wrong_type = []
        self.copy_errors = []
        self.healthy_errors = []
        self.keepalive_retries = 0
        self.latency = {}
        self.error_log = open(os.path.join(a.out, "errors.jsonl"), "w")
        self.faults = []          # {kind, begin, end, detail}
        self.fault_counts = {}
        self.here_failing = []    # (begin, end) of windows where HERE fails
        self.upstream_requests = 0
        self.restarts = []
        self.hups = {r: 0 for r in self.addr}
        self.samples = []
        self.sample_file = open(os.path.join(a.out, "samples.csv"), "w")
        self.sample_file.write(",".join(SAMPLE_COLUMNS) + "\n")
        self.deaths = []
        self.conf_toggle = 0
        self.harness_errors = []

    # ------------------------------------------------------------ helpers
    def rel(self, t):
        return round(t - self.t0, 3)

    def say(self, msg):
        print("# [%6.1fs] %s" % (now() - self.t0, msg), flush=True)

    def gen_at(self, role, t):
        """The generation of role that was running at t (the last started)."""
        with self.lock:
            g = self.gens[role][0]
            for cand in self.gens[role]:
                if cand["start"] <= t:
                    g = cand
            return g

    def alive_roles_at(self, t):
        out = []
        with self.lock:
            for role, gens in self.gens.items():
                for g in gens:
                    if g["start"] <= t and (g["end"] is None or t < g["end"]):
                        out.append((role, g["gen"]))
        return out

    # ------------------------------------------------------ the copy model
    def l1_claim(self, tile, t, inst):
        """(served at, kept until) of inst's copy of tile at t, or None."""
        best = None
        for known, gone in tile.l1.get(inst, ()):
            if known < t and t < gone and (best is None or gone > best[1]):
                best = (known, gone)
        return best

    def mc_claim(self, tile, t):
        for node, n in enumerate(self.mc):
            for inc in n["incs"]:
                if inc["start"] + MC_SETTLE_S > t:
                    continue
                if inc["killed"] is not None and inc["killed"] <= t:
                    continue
                for seen, exp in self.mc_keys.get((node, inc["inc"]), {}).get(tile.tid, ()):
                    if seen < t and t < exp - MARGIN_S:
                        return node, inc["inc"], seen, exp
        return None

    def reachable_copy(self, tile, t, inst):
        """A description of a copy of tile that inst (or, inst None, any
        instance NGINX could pick) could serve at t; None when none."""
        with self.lock:
            if tile.first_ok is None or tile.first_ok >= t:
                return None
            mc = self.mc_claim(tile, t)
            if mc is not None:
                return "memcached node %d (incarnation %d): seen at +%.1fs, expires +%.1fs" % (
                    mc[0] + 1, mc[1], mc[2] - self.t0, mc[3] - self.t0)
            insts = [inst] if inst is not None else self.alive_roles_at(t)
            claims = [self.l1_claim(tile, t, i) for i in insts]
            if insts and all(c is not None for c in claims):
                return "in-process cache of %s" % ", ".join(
                    "%s#%d (served at +%.1fs, kept until +%.1fs)"
                    % (i[0], i[1], c[0] - self.t0, c[1] - self.t0) for i, c in zip(insts, claims))
            return None

    def here_failing_at(self, t):
        """Whether a request sent at t may have met a HERE failure: from
        --here-lead before a failing window to --here-settle after it."""
        with self.lock:
            for b, e in self.here_failing:
                if b - self.a.here_lead <= t <= (e if e is not None else float("inf")) \
                        + self.a.here_settle:
                    return True
            return False

    def active_faults(self, t):
        with self.lock:
            return ["%s@%.0f" % (f["kind"], f["begin"] - self.t0) for f in self.faults
                    if f["begin"] - self.a.here_lead <= t
                    <= (f["end"] if f["end"] is not None else float("inf")) + self.a.here_settle]

    # ------------------------------------------------------------- digests
    def expected(self, tile, up_conn):
        d = self.digests.get(tile.tid)
        if d is not None:
            return d
        for attempt in range(3):
            try:
                if up_conn[0] is None:
                    up_conn[0] = http.client.HTTPConnection("127.0.0.1", self.a.upstream_port,
                                                            timeout=10)
                up_conn[0].request("GET", "/__control/digest?url=" + quote(tile.upstream, safe=""))
                r = up_conn[0].getresponse()
                doc = json.loads(r.read())
                break
            except (OSError, http.client.HTTPException, ValueError):
                if up_conn[0] is not None:
                    up_conn[0].close()
                up_conn[0] = None
                if attempt == 2:
                    raise
        if doc.get("status") != 200:
            raise SoakError("the upstream would not serve %s: %r" % (tile.upstream, doc))
        d = (doc["sha256"], doc["content_type"])
        with self.lock:
            self.digests[tile.tid] = d
        return d

    # ---------------------------------------------------------------- load
    def fetch(self, conn_box, path):
        """One GET through NGINX. Returns (status, headers, body, error);
        a kept-alive connection the server closed before answering is
        retried once on a new one, as browsers do."""
        for attempt in (0, 1):
            reused = conn_box[0] is not None and conn_box[0].sock is not None
            if conn_box[0] is None:
                conn_box[0] = http.client.HTTPConnection("127.0.0.1", self.a.nginx_port,
                                                         timeout=CLIENT_TIMEOUT_S)
            conn = conn_box[0]
            status, headers = None, {}
            try:
                conn.request("GET", path)
                r = conn.getresponse()
                status = r.status
                headers = {k.lower(): v for k, v in r.getheaders()}
                body = r.read()
                if r.will_close:
                    conn.close()
                return status, headers, body, None
            except (http.client.RemoteDisconnected, BrokenPipeError,
                    ConnectionResetError) as e:
                conn.close()
                conn_box[0] = None
                if status is None and reused and attempt == 0:
                    with self.lock:
                        self.keepalive_retries += 1
                    continue
                return status, headers, b"", "connection: %s" % type(e).__name__
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                conn_box[0] = None
                name = "timeout" if isinstance(e, socket.timeout) else type(e).__name__
                return status, headers, b"", "connection: %s" % name
        return None, {}, b"", "connection: unreachable"

    def one(self, conn_box, up_conn, tile, indice, rnd):
        path = (tile.client if rnd.random() < 0.8 else tile.client2) + "&indice=" + indice
        t_start = now()
        status, headers, body, err = self.fetch(conn_box, path)
        t_end = now()
        self.record(tile, indice, t_start, t_end, status, headers, body, err, up_conn)

    def record(self, tile, indice, t_start, t_end, status, headers, body, err, up_conn):
        xc = headers.get("x-cache", "-")
        inst = None
        ups = headers.get("x-soak-upstream", "")
        if ups:
            port = ups.split(",")[-1].strip().rsplit(":", 1)[-1]
            role = self.port_role.get(port)
            if role is not None:
                inst = (role, self.gen_at(role, t_end)["gen"])
        ok = err is None and status == 200
        exp = None
        if ok:
            exp = self.expected(tile, up_conn)
        with self.lock:
            self.requests += 1
            skey = str(status) if err is None else "error"
            self.by_status[skey] = self.by_status.get(skey, 0) + 1
            ck = "%s %s" % (skey, xc)
            self.by_status_cache[ck] = self.by_status_cache.get(ck, 0) + 1
            lat = self.latency.setdefault(xc if ok else "error", array.array("f"))
            lat.append((t_end - t_start) * 1000.0)
            if ok:
                digest = hashlib.sha256(body).hexdigest()
                ctype = headers.get("content-type", "")
                if digest != exp[0]:
                    self.corrupt.append({"t": self.rel(t_start), "path": tile.client,
                                         "x_cache": xc, "instance": ups, "bytes": len(body),
                                         "sha256": digest, "expected": exp[0]})
                elif ctype != exp[1]:
                    self.wrong_type.append({"t": self.rel(t_start), "path": tile.client,
                                            "content_type": ctype, "expected": exp[1]})
                else:
                    if tile.first_ok is None:
                        tile.first_ok = t_end
                    m = re.search(r"max-age=(\d+)", headers.get("cache-control", ""))
                    if xc != "STALE" and m and inst is not None:
                        gone = t_start + int(m.group(1)) + self.a.stale_ttl - MARGIN_S
                        lst = tile.l1.setdefault(inst, [])
                        lst.append((t_end, gone))
                        del lst[:-4]
                return
        # an error
        if err is not None:
            kind = err
        else:
            text = None
            try:
                doc = json.loads(body)
                text = doc.get("error") if isinstance(doc, dict) else None
            except ValueError:
                pass
            if text is None:
                text = "(nginx page)" if b"nginx" in body else "(no JSON error)"
            kind = "%d %s" % (status, text)
        copy = self.reachable_copy(tile, t_start, inst)
        healthy = not self.here_failing_at(t_start)
        row = {"t": self.rel(t_start), "latency_ms": round((t_end - t_start) * 1000, 1),
               "path": tile.client, "indice": indice, "kind": kind, "x_cache": xc,
               "instance": ("%s#%d" % inst) if inst else (ups or None),
               "request_id": headers.get("x-request-id"),
               "copy": copy, "here_healthy": healthy,
               "recent_faults": self.active_faults(t_start)}
        with self.lock:
            self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + 1
            if copy is not None:
                self.copy_errors.append(row)
            if healthy:
                self.healthy_errors.append(row)
            self.error_log.write(json.dumps(row) + "\n")

    def pace(self):
        """A global schedule: at most --rate requests a second."""
        with self.lock:
            t = max(now(), getattr(self, "_slot", 0.0))
            self._slot = t + 1.0 / self.a.rate
        d = t - now()
        if d > 0:
            time.sleep(d)

    def worker(self, seed):
        rnd = random.Random(seed)
        conn_box, up_conn = [None], [None]
        try:
            while not self.stop.is_set() and now() < self.deadline:
                self.pace()
                if now() >= self.deadline:
                    break
                tile = self.tiles[self.tile_zipf.draw(rnd)]
                indice = self.indices[self.index_zipf.draw(rnd)]
                self.one(conn_box, up_conn, tile, indice, rnd)
        except Exception as e:  # a harness bug must not pass silently
            with self.lock:
                self.harness_errors.append("worker %d: %s: %s" % (seed, type(e).__name__, e))
            self.stop.set()
        finally:
            for c in (conn_box[0], up_conn[0]):
                if c is not None:
                    c.close()

    def burst_cold_tile(self, cursor):
        """The next burst tile that no cache can hold: never asked for, or
        every copy known gone."""
        t = now()
        for i in range(len(self.burst_tiles)):
            tile = self.burst_tiles[(cursor + i) % len(self.burst_tiles)]
            with self.lock:
                gones = [g for lst in tile.l1.values() for _, g in lst]
                mc_live = any(exp > t - MARGIN_S for keys in self.mc_keys.values()
                              for _, exp in keys.get(tile.tid, ()))
            if tile.first_ok is None or (not mc_live and
                                         all(g + 2 * MARGIN_S < t for g in gones)):
                return (cursor + i) % len(self.burst_tiles), tile
        return cursor, None

    def burster(self):
        """Every --burst-every s, --burst-size clients ask for one cold tile
        at once (each on a connection of its own): one fetch, the others
        COALESCED."""
        rnd = random.Random(self.a.seed + 1000)
        cursor, n = 0, 0
        while not self.stop.is_set() and now() < self.deadline - 1:
            self.stop.wait(self.a.burst_every)
            idx, tile = self.burst_cold_tile(cursor)
            if tile is None:
                continue
            cursor = idx + 1
            barrier = threading.Barrier(self.a.burst_size)

            def go(i, tile=tile, barrier=barrier):
                conn_box, up_conn = [None], [None]
                try:
                    conn_box[0] = http.client.HTTPConnection(
                        "127.0.0.1", self.a.nginx_port, timeout=CLIENT_TIMEOUT_S)
                    conn_box[0].connect()
                    barrier.wait(timeout=10)
                    self.one(conn_box, up_conn, tile, "soak-burst%d" % (i % 4), rnd)
                except threading.BrokenBarrierError:
                    pass
                except Exception as e:
                    with self.lock:
                        self.harness_errors.append("burst: %s: %s" % (type(e).__name__, e))
                finally:
                    for c in (conn_box[0], up_conn[0]):
                        if c is not None:
                            c.close()

            threads = [threading.Thread(target=go, args=(i,), daemon=True)
                       for i in range(self.a.burst_size)]
            for th in threads:
                th.start()
            for th in threads:
                th.join(CLIENT_TIMEOUT_S + 15)
            n += 1

    def ramp(self):
        """First, --ramp-clients requests at once, each a slow miss (HERE
        holds the rest of the body 300 ms), then again as hits: most
        worker threads of both instances serve one, so that what each
        thread keeps (its memcached connections and buffer) and the
        connections to HERE exist before RSS and descriptors are judged."""
        n = len(self.ramp_tiles)
        if n == 0:
            return
        self.upstream_control("slowbody", "first=512&after_ms=300&times=-1")
        barrier = threading.Barrier(n)

        def go(tile):
            rnd = random.Random(tile.tid)
            conn_box, up_conn = [None], [None]
            try:
                conn_box[0] = http.client.HTTPConnection(
                    "127.0.0.1", self.a.nginx_port, timeout=CLIENT_TIMEOUT_S)
                conn_box[0].connect()
                barrier.wait(timeout=20)
                for _ in range(2):
                    self.one(conn_box, up_conn, tile, "soak-ramp", rnd)
            except threading.BrokenBarrierError:
                pass
            except Exception as e:
                with self.lock:
                    self.harness_errors.append("ramp: %s: %s" % (type(e).__name__, e))
            finally:
                for c in (conn_box[0], up_conn[0]):
                    if c is not None:
                        c.close()

        threads = [threading.Thread(target=go, args=(t,), daemon=True) for t in self.ramp_tiles]
        for th in threads:
            th.start()
        for th in threads:
            th.join(2 * CLIENT_TIMEOUT_S + 20)
        self.upstream_reset()
        self.say("ramp: %d clients at once, done" % n)

    # -------------------------------------------------------------- faults
    def upstream_control(self, action, query=""):
        c = http.client.HTTPConnection("127.0.0.1", self.a.upstream_port, timeout=10)
        try:
            c.request("GET", "/__control/%s%s" % (action, "?" + query if query else ""))
            r = c.getresponse()
            doc = json.loads(r.read())
            if r.status != 200:
                raise SoakError("upstream /__control/%s: %r" % (action, doc))
            return doc
        finally:
            c.close()

    def upstream_reset(self):
        """Count what HERE served, then clear every rule."""
        doc = self.upstream_control("stats")
        with self.lock:
            self.upstream_requests += doc["requests"]
        self.upstream_control("reset")

    def fault_begin(self, kind, detail, here_fails=False):
        f = {"kind": kind, "begin": now(), "end": None, "detail": detail}
        with self.lock:
            self.faults.append(f)
            self.fault_counts[kind] = self.fault_counts.get(kind, 0) + 1
            if here_fails:
                self.here_failing.append([f["begin"], None])
        self.say("fault %s: %s" % (kind, detail))
        return f

    def fault_end(self, f, here_fails=False):
        with self.lock:
            f["end"] = now()
            if here_fails:
                self.here_failing[-1][1] = f["end"]

    def here_fault(self, kind, rule, query, k):
        f = self.fault_begin(kind, "/__control/%s?%s for %ds" % (rule, query, self.a.fault_len),
                             here_fails=kind != "here_slow")
        self.upstream_control(rule, query)
        self.stop.wait(self.a.fault_len)
        self.upstream_reset()
        self.fault_end(f, here_fails=kind != "here_slow")

    def fault_mc_kill(self, k):
        node = k % len(self.mc)
        f = self.fault_begin("memcached_kill", "SIGKILL memcached node %d (port %d), "
                             "restart after %ds" % (node + 1, self.mc_ports[node], self.a.mc_down))
        with self.mc_dump_lock:
            inc = self.mc[node]["incs"][-1]
            inc["stats"] = self.mc_stats(node)
            with self.lock:
                inc["killed"] = now()
                self.mc[node]["up"] = False
                # Its copies count no more: keep memory flat on long runs.
                self.mc_keys.pop((node, inc["inc"]), None)
            self.ctl.ask("mc_kill %d" % (node + 1))
        self.stop.wait(self.a.mc_down)
        reply = self.ctl.ask("mc_start %d" % (node + 1))
        with self.lock:
            self.mc_pids[node] = int(reply["pid"])
            self.mc[node]["incs"].append({"inc": inc["inc"] + 1, "pid": int(reply["pid"]),
                                          "start": now(), "killed": None, "stats": {}})
            self.mc[node]["up"] = True
        self.fault_end(f)

    def write_conf(self):
        """The HEREPROXY_CONFIG file: reloadable settings that differ on
        every SIGHUP, so that each reload changes something real."""
        k = self.conf_toggle
        origins = "https://soak-a.example" + (",https://soak-b.example" if k % 2 else "")
        body = ("# contrib/soak: rewritten before every SIGHUP\n"
                "HEREPROXY_CORS_ORIGINS=%s\n"
                "RATE_LIMIT_INDEX=%d/second\n"
                "CACHE_COALESCE_WAIT_MS=%d\n"
                "LOG_LEVEL=INFO\n" % (origins, 100000 + 1000 * (k % 2), 5000 - 1000 * (k % 2)))
        tmp = self.a.conf + ".tmp"
        with open(tmp, "w") as fp:
            fp.write(body)
        os.replace(tmp, self.a.conf)

    def fault_sighup(self, k):
        self.conf_toggle += 1
        self.write_conf()
        f = self.fault_begin("sighup", "SIGHUP to %s (HEREPROXY_CONFIG version %d)"
                             % (" and ".join(sorted(self.addr)), self.conf_toggle))
        for role in sorted(self.addr):
            self.ctl.ask("hup %s" % role)
            with self.lock:
                self.hups[role] += 1
        self.fault_end(f)

    def fault_restart(self, k):
        role = self.a.restart_role
        f = self.fault_begin("restart", "SIGTERM to %s, wait for its exit, start it again on %s"
                             % (role, self.addr[role]))
        reply = self.ctl.ask("restart %s" % role)
        with self.lock:
            old = self.gens[role][-1]
            old["end"] = float(reply["stopped"])
            self.gens[role].append({"gen": old["gen"] + 1, "pid": int(reply["pid"]),
                                    "start": float(reply["started"]), "end": None})
            for tile in itertools.chain(self.tiles, self.burst_tiles, self.ramp_tiles):
                tile.l1.pop((role, old["gen"]), None)
            self.restarts.append({"t": self.rel(f["begin"]), "role": role,
                                  "exit": reply["rc"], "stop_ms": int(reply["stop_ms"]),
                                  "old_pid": old["pid"], "new_pid": int(reply["pid"])})
        self.say("restart: %s exit %s after %s ms, new pid %s"
                 % (role, reply["rc"], reply["stop_ms"], reply["pid"]))
        self.fault_end(f)

    def run_fault(self, kind, k):
        here_to = self.a.here_timeout_ms
        if kind == "memcached_kill":
            self.fault_mc_kill(k)
        elif kind == "sighup":
            self.fault_sighup(k)
        elif kind == "restart":
            self.fault_restart(k)
        elif kind == "here_5xx":
            self.here_fault(kind, "fail", "status=%d&times=-1" % (503, 500, 502)[k % 3], k)
        elif kind == "here_reset":
            self.here_fault(kind, "truncate", "times=-1", k)
        elif kind == "here_stall":
            if k % 2 == 0:
                self.here_fault(kind, "delay", "ms=%d&times=-1" % (here_to + 3000), k)
            else:
                self.here_fault(kind, "slowbody", "first=1024&after_ms=%d&times=-1"
                                % (here_to + 3000), k)
        elif kind == "here_slow":
            self.here_fault(kind, "slowbody", "first=512&after_ms=300&times=-1", k)
        else:
            raise SoakError("unknown fault %s" % kind)

    def scheduler(self):
        kinds = self.a.faults
        if not kinds:
            return
        t_next = self.t0 + self.a.warmup
        k = 0
        try:
            while not self.stop.is_set():
                if t_next + self.a.fault_len + 2 > self.deadline:
                    break
                self.stop.wait(max(0.0, t_next - now()))
                if self.stop.is_set():
                    break
                kind = kinds[k % len(kinds)]
                self.run_fault(kind, k // len(kinds))
                k += 1
                t_next = max(t_next + self.a.fault_every, now())
        except Exception as e:
            with self.lock:
                self.harness_errors.append("faults: %s: %s" % (type(e).__name__, e))
            self.stop.set()

    # ------------------------------------------------------------ sampling
    @staticmethod
    def tcp_sockets():
        """inode -> (local port, remote port, state) of every TCP socket."""
        out = {}
        for name in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(name) as fp:
                    lines = fp.read().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                p = line.split()
                if len(p) >= 10:
                    out[p[9]] = (int(p[1].rsplit(":", 1)[1], 16),
                                 int(p[2].rsplit(":", 1)[1], 16), p[3])
        return out

    def fd_kinds(self, pid, role, tcp):
        """Open descriptors by what they are: FastCGI connections (and the
        listening socket), memcached, HERE, other sockets, not sockets; and
        how many sockets the peer closed but the process did not
        (CLOSE_WAIT: a leak when they pile up)."""
        k = dict.fromkeys(FD_KINDS, 0)
        own = int(self.addr[role].rsplit(":", 1)[1])
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            k["fds"] += 1
            if not target.startswith("socket:["):
                k["fd_other"] += 1
                continue
            ent = tcp.get(target[8:-1])
            if ent is None:
                k["fd_socket"] += 1
                continue
            local, remote, state = ent
            if state == "08":
                k["close_wait"] += 1
            if local == own:
                k["fd_fastcgi"] += 1
            elif remote in self.mc_ports:
                k["fd_memcached"] += 1
            elif remote == self.a.upstream_port:
                k["fd_here"] += 1
            else:
                k["fd_socket"] += 1
        return k

    def sample_once(self):
        t = now()
        tcp = self.tcp_sockets()
        for role in sorted(self.addr):
            g = self.gens[role][-1]
            pid = g["pid"]
            try:
                with open("/proc/%d/status" % pid) as fp:
                    status = fp.read()
                rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
                nthreads = int(re.search(r"Threads:\s+(\d+)", status).group(1))
                kinds = self.fd_kinds(pid, role, tcp)
            except (OSError, AttributeError):
                with self.lock:
                    restarting = any(f["kind"] == "restart" and f["end"] is None
                                     for f in self.faults)
                    if not restarting and self.gens[role][-1] is g:
                        self.deaths.append("%s#%d (pid %d) gone at +%.1fs"
                                           % (role, g["gen"], pid, t - self.t0))
                continue
            cache_bytes = ev = refused = None
            host, port = self.addr[role].rsplit(":", 1)
            try:
                st, text = fcgi_get(host, int(port), "/metrics/prometheus")
                if st == 200:
                    text = text.decode("utf-8", "replace")
                    cache_bytes = prom_value(text, "hereproxy_cache_bytes")
                    ev = prom_value(text, "hereproxy_cache_evictions_total")
                    refused = prom_value(text, "hereproxy_cache_admissions_refused_total")
            except (OSError, SoakError):
                pass
            row = {"t": t - self.t0, "role": role, "gen": g["gen"], "pid": pid, "rss_kb": rss,
                   "threads": nthreads, "cache_bytes": cache_bytes, "evictions": ev,
                   "refused": refused}
            row.update(kinds)
            with self.lock:
                self.samples.append(row)
            self.sample_file.write(",".join(
                "%.1f" % row[c] if c == "t" else "" if row[c] is None else
                str(int(row[c])) if isinstance(row[c], float) else str(row[c])
                for c in SAMPLE_COLUMNS) + "\n")
        self.sample_file.flush()

    def check_others(self):
        """NGINX, the upstream and the memcached servers not being killed
        must keep running."""
        with self.lock:
            procs = list(self.others.items())
            procs += [("memcached node %d" % (i + 1), pid) for i, pid in enumerate(self.mc_pids)
                      if self.mc[i]["up"]]
        for name, pid in procs:
            try:
                with open("/proc/%d/stat" % pid) as fp:
                    alive = fp.read().split(")", 1)[1].split()[0] != "Z"
            except OSError:
                alive = False
            if not alive:
                with self.lock:
                    if self.mc_pids.count(pid) and not self.mc[self.mc_pids.index(pid)]["up"]:
                        continue
                    msg = "%s (pid %d) gone at +%.1fs" % (name, pid, now() - self.t0)
                    if msg.split(" gone")[0] not in " ".join(self.deaths):
                        self.deaths.append(msg)

    def sampler(self):
        while not self.stop.is_set() and now() < self.deadline:
            self.sample_once()
            self.check_others()
            self.stop.wait(self.a.sample_every)

    # ------------------------------------------------------ memcached dumps
    def mc_talk(self, node, command, until=b"END\r\n", timeout=5.0):
        s = socket.create_connection(("127.0.0.1", self.mc_ports[node]), timeout=timeout)
        try:
            s.sendall(command)
            buf = b""
            while not buf.endswith(until):
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                buf += chunk
                # "BUSY currently processing crawler request", "ERROR ...": one line
                if buf.startswith((b"BUSY", b"ERROR", b"CLIENT_ERROR")) and buf.endswith(b"\r\n"):
                    break
            return buf
        finally:
            s.close()

    def mc_stats(self, node):
        try:
            text = self.mc_talk(node, b"stats\r\n").decode()
        except OSError:
            return {}
        out = {}
        for line in text.splitlines():
            p = line.split()
            if len(p) == 3 and p[0] == "STAT" and p[1] in (
                    "evictions", "curr_items", "get_hits", "get_misses", "bytes",
                    "limit_maxbytes", "total_items"):
                out[p[1]] = int(p[2])
        return out

    def mc_dump(self, node):
        with self.lock:
            if not self.mc[node]["up"]:
                return
            inc = self.mc[node]["incs"][-1]["inc"]
        try:
            data = self.mc_talk(node, b"lru_crawler metadump all\r\n")
        except OSError:
            return
        t_seen = now()
        if not data.endswith(b"END\r\n"):
            return
        found = {}
        for line in data.split(b"\n"):
            if not line.startswith(b"key="):
                continue
            fields = dict(f.split(b"=", 1) for f in line.split() if b"=" in f)
            key = unquote(fields[b"key"].decode("ascii", "replace"))
            m = TILE_RE.search(key)
            if not m:
                continue
            # An entry is "hp1:<generation>v<format>/<tile key>"; a
            # coalescing lock "hp1:L:<tile key>" (4 s, one byte) is no copy.
            prefix = key[:m.start()]
            if not prefix.endswith("/") or "L:" in prefix or \
                    int(fields.get(b"size", b"0")) < 256:
                continue
            c = (m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4)), m.group(5))
            tile = self.by_coords.get(c)
            if tile is None:
                continue
            exp = float(fields.get(b"exp", b"-1"))
            found[tile.tid] = exp if exp > 0 else float("inf")
        with self.lock:
            if self.mc[node]["incs"][-1]["inc"] != inc:
                return       # killed meanwhile: what it held is gone
            keys = self.mc_keys.setdefault((node, inc), {})
            for tid, exp in found.items():
                lst = keys.setdefault(tid, [])
                if not lst or lst[-1][1] != exp:
                    lst.append((t_seen, exp))
                    del lst[:-3]
            self.mc_seen_tiles.update(found)
            self.mc_dumps += 1

    def dumper(self):
        while not self.stop.is_set() and now() < self.deadline:
            for node in range(len(self.mc)):
                with self.mc_dump_lock:
                    self.mc_dump(node)
            self.stop.wait(self.a.dump_every)

    # -------------------------------------------------------------- progress
    def progress(self):
        every = max(10.0, self.a.duration / 30.0)
        while not self.stop.wait(every) and now() < self.deadline:
            with self.lock:
                errs = sum(self.errors_by_kind.values())
                self.say("%d requests, %d errors (%d where a cached copy existed, %d while "
                         "HERE was healthy), %d corrupt"
                         % (self.requests, errs, len(self.copy_errors),
                            len(self.healthy_errors), len(self.corrupt)))

    # ----------------------------------------------------------------- run
    def run(self):
        self.write_conf()
        self.say("%d tiles (Zipf s=%.2f) over %d indices, %d burst tiles; %d clients at up to "
                 "%d req/s; bursts of %d every %.1fs; faults every %.0fs: %s"
                 % (len(self.tiles), self.a.zipf_s, len(self.indices), len(self.burst_tiles),
                    self.a.clients, self.a.rate, self.a.burst_size, self.a.burst_every,
                    self.a.fault_every, ",".join(self.a.faults)))
        self.ramp()
        threads = [threading.Thread(target=self.worker, args=(self.a.seed * 100 + i,),
                                    daemon=True) for i in range(self.a.clients)]
        threads += [threading.Thread(target=f, daemon=True) for f in (
            self.burster, self.sampler, self.dumper, self.progress)]
        sched = threading.Thread(target=self.scheduler, daemon=True)
        for th in threads:
            th.start()
        sched.start()
        sched.join(self.a.duration + 120)
        while now() < self.deadline and not self.stop.is_set():
            self.stop.wait(min(1.0, self.deadline - now()))
        self.stop.set()
        for th in threads:
            th.join(CLIENT_TIMEOUT_S + 20)
        alive = [th.name for th in threads + [sched] if th.is_alive()]
        if alive:
            self.harness_errors.append("threads still running after the end: %s" % alive)
        self.sample_once()
        try:
            self.upstream_reset()
        except (OSError, SoakError) as e:
            self.harness_errors.append("upstream at the end: %s" % e)
        for node in range(len(self.mc)):
            self.mc[node]["incs"][-1]["stats"] = self.mc_stats(node)
        self.error_log.close()
        self.sample_file.close()
        if self.ctl is not None:
            self.ctl.close()
        return self.report()

    # -------------------------------------------------------------- report
    def flat(self, rows, key, rel_tol, abs_tol):
        """(ok, q3 max, q4 max) for rows of one process: the last quarter's
        max at most rel_tol above the third quarter's plus abs_tol."""
        d = self.a.duration
        q3 = [r[key] for r in rows if d / 2 <= r["t"] < 3 * d / 4 and r[key] is not None]
        q4 = [r[key] for r in rows if r["t"] >= 3 * d / 4 and r[key] is not None]
        if not q3 or not q4:
            return None, None, None
        m3, m4 = max(q3), max(q4)
        return m4 <= m3 * (1 + rel_tol) + abs_tol, m3, m4

    @staticmethod
    def slope_per_min(rows, key):
        pts = [(r["t"], r[key]) for r in rows if r[key] is not None]
        if len(pts) < 3:
            return None
        n = len(pts)
        mx = sum(p[0] for p in pts) / n
        my = sum(p[1] for p in pts) / n
        sxx = sum((p[0] - mx) ** 2 for p in pts)
        if sxx == 0:
            return None
        return 60.0 * sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx

    @staticmethod
    def pct(vals, p):
        if not vals:
            return None
        s = sorted(vals)
        return s[min(len(s) - 1, int(math.ceil(p / 100.0 * len(s))) - 1)]

    def log_events(self, role):
        counts = {}
        try:
            with open(self.logs[role], encoding="utf-8", errors="replace") as fp:
                for line in fp:
                    m = re.search(r'"event":"([a-z_]+)"', line)
                    if m:
                        counts[m.group(1)] = counts.get(m.group(1), 0) + 1
        except OSError:
            pass
        return counts

    def report(self):
        a, d = self.a, self.a.duration
        checks = []

        def check(name, ok, detail=""):
            checks.append({"name": name, "ok": bool(ok), "detail": detail})

        # -- processes: RSS and descriptors
        procs = []
        for role in sorted(self.addr):
            for g in self.gens[role]:
                rows = [r for r in self.samples if r["role"] == role and r["gen"] == g["gen"]]
                if not rows:
                    continue
                for r in rows:
                    r["rss_net_kb"] = (r["rss_kb"] - r["cache_bytes"] / 1024.0
                                       if r["cache_bytes"] is not None else None)
                first, last = rows[0], rows[-1]
                life = (g["end"] or now()) - max(g["start"], self.t0)
                p = {"role": role, "gen": g["gen"], "pid": g["pid"],
                     "lived_s": round(life, 1), "samples": len(rows),
                     "rss_kb_first": first["rss_kb"], "rss_kb_last": last["rss_kb"],
                     "rss_kb_max": max(r["rss_kb"] for r in rows),
                     "fds_first": first["fds"], "fds_last": last["fds"],
                     "threads_max": max(r["threads"] for r in rows),
                     "cache_kb_last": (None if last["cache_bytes"] is None
                                       else round(last["cache_bytes"] / 1024)),
                     "l1_evictions": last["evictions"], "l1_refused": last["refused"]}
                for k in FD_KINDS:
                    p[k + "_max"] = max(r[k] for r in rows)
                # Flat over the second half: only a process that ran all of it.
                whole = g["start"] <= self.t0 + d / 2 and g["end"] is None
                if whole:
                    ok_r, m3r, m4r = self.flat(rows, "rss_net_kb", a.rss_tol, a.rss_slack_kb)
                    ok_f, m3f, m4f = self.flat(rows, "fds", a.fd_tol, a.fd_slack)
                    ok_o, m3o, m4o = self.flat(rows, "fd_other", 0.0, 2)
                    # CLOSE_WAIT is reported, not judged: after a memcached
                    # restart an idle thread's connection to it stays so
                    # until the thread next asks that server (bounded).
                    _, m3c, m4c = self.flat(rows, "close_wait", 0.0, 0)
                    half = [r for r in rows if r["t"] >= d / 2]
                    p.update({"second_half": True,
                              "rss_net_kb_q3_max": m3r and round(m3r),
                              "rss_net_kb_q4_max": m4r and round(m4r),
                              "rss_kb_per_min_2nd_half": self.slope_per_min(half, "rss_kb"),
                              "rss_net_kb_per_min_2nd_half": self.slope_per_min(half, "rss_net_kb"),
                              "fds_q3_max": m3f, "fds_q4_max": m4f,
                              "fd_other_q3_max": m3o, "fd_other_q4_max": m4o,
                              "close_wait_q3_max": m3c, "close_wait_q4_max": m4c,
                              "rss_flat": ok_r, "fds_flat": ok_f and ok_o})
                    check("RSS of %s#%d flat over the second half" % (role, g["gen"]),
                          ok_r is True,
                          "RSS less the in-process cache: max %s KiB in the third quarter, "
                          "%s KiB in the last (allowed: +%d%% +%d KiB)"
                          % (m3r and round(m3r), m4r and round(m4r), a.rss_tol * 100,
                             a.rss_slack_kb))
                    check("open descriptors of %s#%d flat over the second half"
                          % (role, g["gen"]), ok_f is True and ok_o is True,
                          "max in the third quarter / the last: all %s / %s (allowed: +%d%% "
                          "+%d), not sockets %s / %s (allowed: +2)"
                          % (m3f, m4f, a.fd_tol * 100, a.fd_slack, m3o, m4o))
                procs.append(p)
        for role in sorted(self.addr):
            if not any(p["role"] == role and p.get("second_half") for p in procs):
                lives = [p["lived_s"] for p in procs if p["role"] == role]
                check("%s: no process ran the whole second half (%d processes, %.0f to %.0f s "
                      "each): their RSS and descriptors are reported, not judged"
                      % (role, len(lives), min(lives), max(lives)), True)
        # The pools' bounds (README.md, "Scaling out"): a worker thread's
        # own connection to each memcached plus a pool of threads + 1 and a
        # probe each; transfers to HERE; the FastCGI connections NGINX holds.
        threads, nodes = 64, len(self.mc_ports)
        bounds = {"fd_memcached": (2 * threads + 2) * nodes, "fd_here": 64,
                  "fd_fastcgi": threads + 1}
        over = ["%s#%d: %s %d > %d" % (p["role"], p["gen"], k, p[k + "_max"], b)
                for p in procs for k, b in bounds.items() if p[k + "_max"] > b]
        check("descriptors within the configured pools (memcached <= %d, HERE <= %d, "
              "FastCGI <= %d)" % (bounds["fd_memcached"], bounds["fd_here"],
                                  bounds["fd_fastcgi"]), not over, "; ".join(over))
        l1_bad = [p for p in procs if (p["l1_evictions"] or 0) > 0 or (p["l1_refused"] or 0) > 0]
        check("harness: no in-process cache evicted or refused an entry (its copies count)",
              not l1_bad, "; ".join("%s#%d: %s evictions, %s refused" % (
                  p["role"], p["gen"], p["l1_evictions"], p["l1_refused"]) for p in l1_bad))

        # -- memcached
        mc_rows = []
        ev = 0
        for node, n in enumerate(self.mc):
            for inc in n["incs"]:
                st = inc["stats"]
                ev += st.get("evictions", 0)
                mc_rows.append({"node": node + 1, "inc": inc["inc"],
                                "start": self.rel(inc["start"]) if inc["start"] > self.t0 else 0,
                                "killed": inc["killed"] and self.rel(inc["killed"]),
                                "items": st.get("curr_items"), "evictions": st.get("evictions"),
                                "get_hits": st.get("get_hits"), "get_misses": st.get("get_misses")})
        check("harness: memcached evicted nothing (its copies count)", ev == 0,
              "%d evictions" % ev)
        check("harness: the memcached key dumps saw the tiles", len(self.mc_seen_tiles) > 0,
              "%d tiles seen in %d dumps" % (len(self.mc_seen_tiles), self.mc_dumps))

        # -- load and results
        xc = {}
        for k, v in self.by_status_cache.items():
            st, c = k.split(" ", 1)
            if st == "200":
                xc[c] = xc.get(c, 0) + v
        check("the mix had MISS, HIT, STALE and COALESCED answers",
              all(xc.get(k, 0) > 0 for k in ("MISS", "HIT", "STALE", "COALESCED")),
              ", ".join("%s %d" % (k, xc.get(k, 0)) for k in ("MISS", "HIT", "STALE", "COALESCED")))
        check("corrupt bytes: none", not self.corrupt, "%d corrupt: %s" % (
            len(self.corrupt), json.dumps(self.corrupt[:3])))
        check("Content-Type as the upstream's (image/png, image/jpeg)", not self.wrong_type,
              "%d wrong: %s" % (len(self.wrong_type), json.dumps(self.wrong_type[:3])))
        check("errors where a cached copy existed: none", not self.copy_errors,
              "%d: %s" % (len(self.copy_errors), json.dumps(self.copy_errors[:3])))
        check("errors while HERE was healthy: none", not self.healthy_errors,
              "%d: %s" % (len(self.healthy_errors), json.dumps(self.healthy_errors[:3])))

        # -- faults
        missing = [k for k in a.faults if not self.fault_counts.get(k)]
        check("every fault ran at least once", not missing, "not run: %s" % missing)
        bad_restarts = [r for r in self.restarts if r["exit"] != "0"
                        or r["stop_ms"] > a.grace_ms + 2000]
        check("every SIGTERM'd instance exited 0 within SHUTDOWN_GRACE_MS + 2 s",
              not bad_restarts, json.dumps(bad_restarts[:3]))
        events = {r: self.log_events(r) for r in self.addr}
        reload_bad = ["%s: %d SIGHUP, %d reload, %d reload_failed" % (
            r, self.hups[r], events[r].get("reload", 0), events[r].get("reload_failed", 0))
            for r in sorted(self.addr)
            if events[r].get("reload", 0) != self.hups[r] or events[r].get("reload_failed", 0)]
        check("every SIGHUP reloaded the configuration (one reload event each, no "
              "reload_failed)", not reload_bad, "; ".join(reload_bad))
        check("no process died unasked (instances, NGINX, upstream, memcached)",
              not self.deaths, "; ".join(self.deaths))
        check("harness: no internal error", not self.harness_errors,
              "; ".join(self.harness_errors[:5]))

        lat = {k: {"n": len(v), "p50_ms": self.pct(v, 50), "p99_ms": self.pct(v, 99),
                   "max_ms": max(v) if v else None} for k, v in self.latency.items()}
        summary = {
            "duration_s": d, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.t0)),
            "settings": {k: v for k, v in vars(a).items()
                         if k not in ("cmd_fifo", "reply_fifo")},
            "requests": self.requests, "by_status": self.by_status,
            "by_status_and_x_cache": self.by_status_cache,
            "keepalive_retries": self.keepalive_retries,
            "errors_by_kind": self.errors_by_kind,
            "errors_where_cached_copy_existed": len(self.copy_errors),
            "errors_while_here_healthy": len(self.healthy_errors),
            "copy_errors": self.copy_errors[:200], "healthy_errors": self.healthy_errors[:200],
            "corrupt": len(self.corrupt), "corrupt_detail": self.corrupt[:50],
            "wrong_content_type": len(self.wrong_type),
            "latency": lat, "upstream_requests": self.upstream_requests,
            "faults": self.fault_counts,
            "fault_timeline": [{"kind": f["kind"], "begin": self.rel(f["begin"]),
                                "end": f["end"] and self.rel(f["end"]), "detail": f["detail"]}
                               for f in self.faults],
            "restarts": self.restarts, "sighups": self.hups,
            "log_events": events, "processes": procs, "memcached": mc_rows,
            "memcached_tiles_seen": len(self.mc_seen_tiles), "memcached_dumps": self.mc_dumps,
            "checks": checks, "passed": all(c["ok"] for c in checks),
        }
        with open(os.path.join(a.out, "summary.json"), "w") as fp:
            json.dump(summary, fp, indent=1, default=str)
        text = self.table(summary)
        with open(os.path.join(a.out, "report.txt"), "w") as fp:
            fp.write(text)
        print(text, flush=True)
        return 0 if summary["passed"] else 1

    def table(self, s):
        L = []
        L.append("")
        L.append("hereproxy soak: %d s, %d requests (%.0f/s), HERE asked %d times"
                 % (s["duration_s"], s["requests"], s["requests"] / max(1, s["duration_s"]),
                    s["upstream_requests"]))
        L.append("")
        L.append("%-28s %9s" % ("responses", "count"))
        for k in sorted(s["by_status_and_x_cache"]):
            L.append("  %-26s %9d" % (k, s["by_status_and_x_cache"][k]))
        L.append("  %-26s %9d" % ("(keep-alive retries)", s["keepalive_retries"]))
        L.append("")
        L.append("%-60s %7s" % ("errors by kind", "count"))
        for k, v in sorted(s["errors_by_kind"].items(), key=lambda kv: -kv[1]):
            L.append("  %-58s %7d" % (k[:58], v))
        if not s["errors_by_kind"]:
            L.append("  (none)")
        L.append("")
        L.append("errors where a cached copy existed: %d" % s["errors_where_cached_copy_existed"])
        L.append("errors while HERE was healthy:      %d" % s["errors_while_here_healthy"])
        L.append("corrupt bytes:                      %d" % s["corrupt"])
        L.append("wrong Content-Type:                 %d" % s["wrong_content_type"])
        L.append("")
        L.append("%-10s %8s %9s %9s %9s" % ("latency", "n", "p50 ms", "p99 ms", "max ms"))
        for k in sorted(s["latency"]):
            v = s["latency"][k]
            L.append("  %-8s %8d %9.1f %9.1f %9.1f" % (k, v["n"], v["p50_ms"] or 0,
                                                      v["p99_ms"] or 0, v["max_ms"] or 0))
        L.append("")
        L.append("faults: " + ", ".join("%s x%d" % kv for kv in sorted(s["faults"].items())))
        if s["restarts"]:
            ms = [r["stop_ms"] for r in s["restarts"]]
            L.append("restarts: %d, exit codes %s, stop took %d..%d ms"
                     % (len(ms), sorted(set(r["exit"] for r in s["restarts"])), min(ms), max(ms)))
        L.append("")
        L.append("%-6s %7s %6s %8s %8s %8s %8s %4s %4s %4s %4s %4s %4s %4s %3s"
                 % ("proc", "pid", "life s", "RSS KiB", "last", "max", "cache KiB", "fds",
                    "last", "max", "mc", "HERE", "fcgi", "othr", "thr"))
        shown = []
        for role in sorted(set(p["role"] for p in s["processes"])):
            mine = [p for p in s["processes"] if p["role"] == role]
            shown += mine if len(mine) <= 6 else mine[:2] + [None] + mine[-2:]
            if len(mine) > 6:
                shown.append("%s: %d processes, RSS max %d to %d KiB, fds max %d to %d"
                             % (role, len(mine), min(p["rss_kb_max"] for p in mine),
                                max(p["rss_kb_max"] for p in mine),
                                min(p["fds_max"] for p in mine), max(p["fds_max"] for p in mine)))
        for p in shown:
            if p is None:
                L.append("  ...")
                continue
            if isinstance(p, str):
                L.append("  " + p)
                continue
            sh = "-"
            if p.get("second_half"):
                sh = ("RSS less cache max %s -> %s KiB (%s), RSS %+.0f KiB/min; fds max "
                      "%s -> %s, not sockets %s -> %s (%s); CLOSE_WAIT %s -> %s" % (
                          p["rss_net_kb_q3_max"], p["rss_net_kb_q4_max"],
                          "flat" if p["rss_flat"] else "GROWS",
                          p["rss_kb_per_min_2nd_half"] or 0, p["fds_q3_max"], p["fds_q4_max"],
                          p["fd_other_q3_max"], p["fd_other_q4_max"],
                          "flat" if p["fds_flat"] else "GROWS", p["close_wait_q3_max"],
                          p["close_wait_q4_max"]))
            L.append("%-6s %7d %6.0f %8d %8d %8d %8s %4d %4d %4d %4d %4d %4d %4d %3d"
                     % ("%s#%d" % (p["role"], p["gen"]), p["pid"], p["lived_s"],
                        p["rss_kb_first"], p["rss_kb_last"], p["rss_kb_max"],
                        p["cache_kb_last"] if p["cache_kb_last"] is not None else "-",
                        p["fds_first"], p["fds_last"], p["fds_max"], p["fd_memcached_max"],
                        p["fd_here_max"], p["fd_fastcgi_max"], p["fd_other_max"],
                        p["threads_max"]))
            if sh != "-":
                L.append("         second half: " + sh)
        L.append("")
        L.append("log events (not access): " + "; ".join(
            "%s %s" % (r, ", ".join("%s %d" % kv for kv in sorted(ev.items()) if kv[0] != "access"))
            for r, ev in sorted(s["log_events"].items())))
        L.append("")
        items = [m["items"] for m in s["memcached"] if m["items"] is not None]
        L.append("memcached: %d tiles seen in %d key dumps; %d server lives (%s), %s to %s "
                 "items each at its end, %d evictions"
                 % (s["memcached_tiles_seen"], s["memcached_dumps"], len(s["memcached"]),
                    ", ".join("node %d: %d" % (n, sum(1 for m in s["memcached"] if m["node"] == n))
                              for n in sorted(set(m["node"] for m in s["memcached"]))),
                    min(items) if items else "-", max(items) if items else "-",
                    sum(m["evictions"] or 0 for m in s["memcached"])))
        L.append("")
        for c in s["checks"]:
            L.append("%s %s%s" % ("PASS" if c["ok"] else "FAIL", c["name"],
                                  "" if c["ok"] or not c["detail"] else ": " + c["detail"][:600]))
        L.append("")
        L.append("soak %s" % ("passed" if s["passed"] else "FAILED"))
        return "\n".join(L) + "\n"


def parse_args(argv):
    ap = argparse.ArgumentParser(description="contrib/soak driver (started by contrib/soak/run)")
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--out", required=True)
    ap.add_argument("--nginx-port", type=int, required=True)
    ap.add_argument("--upstream-port", type=int, required=True)
    ap.add_argument("--memcached", required=True, help="port,port")
    ap.add_argument("--instances", required=True, help="a=HOST:PORT,b=HOST:PORT")
    ap.add_argument("--pids", required=True, help="a=PID,b=PID,m1=PID,m2=PID")
    ap.add_argument("--logs", required=True, help="a=FILE,b=FILE")
    ap.add_argument("--conf", required=True, help="the HEREPROXY_CONFIG file")
    ap.add_argument("--cmd-fifo")
    ap.add_argument("--reply-fifo")
    ap.add_argument("--restart-role", default="b")
    ap.add_argument("--stale-ttl", type=int, required=True)
    ap.add_argument("--here-timeout-ms", type=int, required=True)
    ap.add_argument("--here-settle", type=float, required=True)
    ap.add_argument("--here-lead", type=float, default=2.5)
    ap.add_argument("--grace-ms", type=int, required=True)
    ap.add_argument("--clients", type=int, default=12)
    ap.add_argument("--rate", type=float, default=150)
    ap.add_argument("--tiles", type=int, default=1000)
    ap.add_argument("--zipf-s", type=float, default=0.9)
    ap.add_argument("--indices", type=int, default=50)
    ap.add_argument("--burst-pool", type=int, default=64)
    ap.add_argument("--burst-size", type=int, default=6)
    ap.add_argument("--burst-every", type=float, default=1.0)
    ap.add_argument("--ramp-clients", type=int, default=96)
    ap.add_argument("--faults", default="memcached_kill,sighup,restart,here_5xx,here_reset,"
                    "here_stall,here_slow")
    ap.add_argument("--fault-every", type=float, default=6)
    ap.add_argument("--fault-len", type=float, default=4)
    ap.add_argument("--mc-down", type=float, default=3)
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--sample-every", type=float, default=2)
    ap.add_argument("--dump-every", type=float, default=2)
    ap.add_argument("--rss-tol", type=float, default=0.10)
    ap.add_argument("--rss-slack-kb", type=int, default=2048)
    ap.add_argument("--fd-tol", type=float, default=0.10)
    ap.add_argument("--fd-slack", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    a.faults = [f for f in a.faults.split(",") if f and f != "none"]
    return a


def main(argv):
    a = parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    soak = Soak(a)
    try:
        return soak.run()
    except SoakError as e:
        print("soak: %s" % e, file=sys.stderr, flush=True)
        if soak.ctl is not None:
            soak.ctl.close()
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
