#!/bin/bash
# Kept-alive FastCGI connections do not hold every worker while a new
# connection waits (HEREPROXY_IDLE_RELEASE_MS): a fresh connection is
# served within the bound when idle connections hold all the threads;
# NGINX sends its requests again on new connections when the proxy closes
# idle ones, so no client sees an error; and the shipped NGINX
# configuration at default settings, with a keep-alive pool (4 workers x
# 32) larger than HEREPROXY_THREADS (64), stays responsive under wrk.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi curl python3 wrk pgrep
require_bin

FCGI_GET=$abs_top_srcdir/tests/integration/fcgi_get.py
start_upstream

# scrape URL NAME: the value of one series of URL/metrics/prometheus.
scrape() {
    curl -sS --max-time 10 "$1/metrics/prometheus" |
        awk -v want="$2" '$1 == want { print $2; found = 1 } END { if (!found) print "absent" }'
}
# below VALUE LIMIT NAME: VALUE < LIMIT (numbers).
below() {
    if python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)' \
        "$1" "$2" 2>/dev/null; then
        ok "$3"
    else
        not_ok "$3" "value '$1' not below $2"
    fi
}
# hold N PORT: N FastCGI connections to the proxy, open and silent, as
# NGINX keeps them between requests.  Sets HOLDER (kill it to close them).
hold() {
    rm -f "$RUN_DIR/held.ready"
    python3 -c 'import socket, sys, time
socks = [socket.create_connection(("127.0.0.1", int(sys.argv[2])), 5)
         for _ in range(int(sys.argv[1]))]
open(sys.argv[3], "w").close()
time.sleep(120)' "$1" "$2" "$RUN_DIR/held.ready" &
    HOLDER=$!
    _register holder "$HOLDER"
    for _ in $(seq 1 50); do [ -e "$RUN_DIR/held.ready" ] && break; sleep 0.1; done
    [ -e "$RUN_DIR/held.ready" ] || die "the holder did not connect"
}

# ----------------------------------- idle connections hold every worker
# 4 threads, 4 silent connections: every worker waits on an idle
# connection and none is in accept().  A fresh connection waits in the
# listen queue; the watcher closes the longest idle connection (idle for
# over 200 ms) and the fresh one is served at once.
start_proxy bound HEREPROXY_THREADS=4 HEREPROXY_IDLE_RELEASE_MS=200
BOUND_LOG=$PROXY_LOG
start_nginx bound "$PROXY_ADDR"
B=$NGINX_URL
hold 4 "$PROXY_PORT"
sleep 0.5   # all four accepted, and idle for longer than the bound
OUT=$(python3 "$FCGI_GET" --timeout 5 "$PROXY_ADDR" /healthz)
assert_match "$OUT" '^200 ' "all 4 workers held by idle connections: a fresh connection is served ($OUT)"
below "$(cut -d' ' -f2 <<<"$OUT")" 0.5 "... within 0.5 s (the connections were idle for longer than the bound)"
assert_eq "$(scrape "$B" hereproxy_idle_connections_closed_total)" 1 \
    "hereproxy_idle_connections_closed_total counts the one connection closed"
# The scrape itself came through NGINX on a new connection: another one
# was closed for it.
assert_eq "$(scrape "$B" 'hereproxy_workers{state="accepting"}')" 0 \
    "hereproxy_workers{state=accepting} is 0 while idle connections hold the rest"
stop_pid "$HOLDER" KILL 5

# A connection in use is not closed: with 1 thread, connection A sends a
# request every 50 ms (under the 200 ms bound) for about half a second,
# then stays open and silent. Connection C, opened 0.1 s after A, waits
# until A has been idle for 200 ms: A gets its 10 answers, and C is served
# after A's last request, not at once and not never.
start_proxy inuse HEREPROXY_THREADS=1 HEREPROXY_IDLE_RELEASE_MS=200
INUSE_LOG=$PROXY_LOG
OUT=$(python3 - "$PROXY_ADDR" "$FCGI_GET" <<'PYEOF'
import importlib.util, socket, struct, sys, threading, time
spec = importlib.util.spec_from_file_location("fcgi_get", sys.argv[2])
fg = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fg)
host, _, port = sys.argv[1].rpartition(":")
answered, a_done = [0], [None]

def conn_a():
    s = socket.create_connection((host, int(port)), 5)
    params = b"".join(fg.pair(k.encode(), v.encode()) for k, v in {
        "REQUEST_METHOD": "GET", "REQUEST_URI": "/healthz",
        "SCRIPT_NAME": "/healthz", "REMOTE_ADDR": "127.0.0.1"}.items())
    for i in range(10):
        if i > 0:
            time.sleep(0.05)
        # FCGI_KEEP_CONN: the connection stays open after each answer.
        s.sendall(fg.record(fg.BEGIN, struct.pack(">HB5x", 1, 1)) +
                  fg.record(fg.PARAMS, params) + fg.record(fg.PARAMS, b"") +
                  fg.record(fg.STDIN, b""))
        buf = b""
        while b"Status: 200" not in buf or len(buf) < 16:
            chunk = s.recv(65536)
            if not chunk:
                return
            buf += chunk
        answered[0] += 1
    a_done[0] = time.monotonic()
    time.sleep(3)      # open and silent
    s.close()

t = threading.Thread(target=conn_a)
t.start()
time.sleep(0.1)
t0 = time.monotonic()
status, secs, _ = fg.get(sys.argv[1], "/healthz", 5)
served = t0 + secs
t.join()
after_a = served - a_done[0] if a_done[0] else -1
print("%d %s %.3f %.3f" % (answered[0], status, secs, after_a))
PYEOF
)
diag "A answered, C status, C waited, C served after A's last request: $OUT"
read -r A_N C_STATUS C_WAIT C_AFTER_A <<<"$OUT"
assert_eq "$A_N" 10 "a connection in use (a request every 50 ms) keeps its worker: 10 answers"
assert_eq "$C_STATUS" 200 "the waiting connection is served once the other has been idle"
python3 -c 'import sys; sys.exit(0 if 0.15 <= float(sys.argv[1]) <= 2 else 1)' "$C_AFTER_A" &&
    ok "... about the bound (200 ms) after the last request of the other ($C_AFTER_A s)" ||
    not_ok "... about the bound (200 ms) after the last request of the other" "served $C_AFTER_A s after it"

# ------------------------- NGINX with more connections than workers
# 2 threads, 8 misses at once through NGINX, HERE taking 300 ms each:
# NGINX opens 8 FastCGI connections and keeps each in its pool once
# answered, so after the first two every answered connection holds a
# worker while the rest wait. Each is closed after 200 ms idle: all 8 are
# answered in about 4 x 0.5 s, and exactly 6 connections were closed.
start_proxy few HEREPROXY_THREADS=2 HEREPROXY_IDLE_RELEASE_MS=200
FEW_LOG=$PROXY_LOG
start_nginx few "$PROXY_ADDR"
F=$NGINX_URL
upstream_control delay 'ms=300&times=8'
urls=()
for i in $(seq 1 8); do urls+=("$F/here-proxy/base/mc/4/3/$i/png?indice=few"); done
fetch_parallel "$RUN_DIR/few" "${urls[@]}"
assert_eq "$(results_eval "$RUN_DIR/few" 'Counter((r["status"], r["error"]) for r in rs)')" \
    '{"(200, None)": 8}' "8 misses at once through NGINX on 2 threads: all 200"
below "$(results_eval "$RUN_DIR/few" 'max(r["t_end"] - r["t_start"] for r in rs)')" 8 \
    "... the last within 8 s (not NGINX's 35 s read timeout)"
assert_eq "$(scrape "$F" hereproxy_idle_connections_closed_total)" 6 \
    "6 idle connections were closed for the 6 that waited"
# NGINX sends later requests on pooled connections some of which the proxy
# closed: none fails.
for i in $(seq 1 12); do
    req GET "$F/here-proxy/base/mc/4/3/$((i % 8 + 1))/png?indice=few"
    [ "$HTTP_STATUS" = 200 ] || break
done
check_status 200 "12 requests in a row on NGINX's pool after the closes: all 200"
assert_eq "$(grep -c ' 200 ' "$NGINX_DIR/access.log")" "$(wc -l <"$NGINX_DIR/access.log")" \
    "NGINX's access log: every response a 200"
diag "NGINX retried $(grep -c 'upstream prematurely closed' "$NGINX_DIR/error.log") requests on connections closed under it"
assert_eq "$(log_events "$FEW_LOG" idle_connections_closed)" 1 \
    "one idle_connections_closed log event (at most one a minute)"

# ------------------------- the race, made to happen
# A request NGINX sends on a pooled connection that the proxy has just
# closed: NGINX's worker is stopped (SIGSTOP) with a request of a kept-
# alive client waiting in it; the proxy closes NGINX's idle connection
# for a connection waiting at the proxy; then NGINX goes on. It reads the
# request before it sees the close, sends it on the closed connection,
# finds it closed, and sends it again on a new one: the client gets 200.
start_proxy race HEREPROXY_THREADS=1 HEREPROXY_IDLE_RELEASE_MS=100
RACE_LOG=$PROXY_LOG
RACE_ADDR=$PROXY_ADDR
start_nginx race "$PROXY_ADDR"
RACE_WORKER=$(pgrep -P "$NGINX_PID" | head -1)
[ -n "$RACE_WORKER" ] || die "no NGINX worker process under $NGINX_PID"
OUT=$(python3 - "$NGINX_PORT" "$RACE_WORKER" "$RACE_ADDR" "$FCGI_GET" <<'PYEOF'
import http.client, os, signal, subprocess, sys, time
port, worker, addr, fcgi_get = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
c.request("GET", "/here-proxy/base/mc/3/1/1/png?indice=race")
r1 = c.getresponse(); r1.read()          # NGINX's connection now holds the worker
time.sleep(0.3)                          # ... idle for over the bound
os.kill(worker, signal.SIGSTOP)
try:
    c.putrequest("GET", "/here-proxy/base/mc/3/1/1/png?indice=race")
    c.endheaders()                       # waits in the stopped NGINX
    time.sleep(0.1)
    # A connection straight to the proxy: the idle one is closed for it.
    got = subprocess.run([sys.executable, fcgi_get, "--timeout", "5", addr, "/healthz"],
                         capture_output=True, text=True).stdout.split()
finally:
    os.kill(worker, signal.SIGCONT)
r2 = c.getresponse(); body = r2.read()
print(r1.status, got[0] if got else "none", r2.status, len(body))
PYEOF
)
read -r R1 RDIRECT R2 RLEN <<<"$OUT"
assert_eq "$R1" 200 "race: the first request 200"
assert_eq "$RDIRECT" 200 "race: the connection straight to the proxy is served (NGINX's idle one closed)"
assert_eq "$R2" 200 "race: the request NGINX held while its connection was closed gets 200"
assert_match "$(grep 'upstream prematurely closed' "$NGINX_DIR/error.log")" 'while reading response header' \
    "race: NGINX sent it on the closed connection first (its error log says so), then again"
assert_eq "$(awk '$9 != 200' "$NGINX_DIR/access.log" | wc -l)" 0 "race: NGINX's access log has only 200s"

# ------------------------- HEREPROXY_IDLE_RELEASE_MS=0: the old rule
start_proxy off HEREPROXY_THREADS=2 HEREPROXY_IDLE_RELEASE_MS=0
OFF_LOG=$PROXY_LOG
assert_match "$(grep 'HEREPROXY_IDLE_RELEASE_MS=0' "$OFF_LOG")" 'must exceed the web server' \
    "HEREPROXY_IDLE_RELEASE_MS=0: a warning at start states the rule"
hold 2 "$PROXY_PORT"
sleep 0.3
OUT=$(python3 "$FCGI_GET" --timeout 1.5 "$PROXY_ADDR" /healthz)
assert_match "$OUT" '^error ' "HEREPROXY_IDLE_RELEASE_MS=0: idle connections keep their workers, a fresh one waits ($OUT)"
stop_pid "$HOLDER" KILL 5

# ------------------------- the shipped configuration under wrk
# Defaults everywhere: 64 threads, the shipped server block (keepalive 32
# per NGINX worker), and 4 NGINX workers as worker_processes auto gives on
# four cores: a pool of up to 128 connections against 64 threads. wrk with
# 256 connections for 3 s: no errors, no timeouts, no status but 200; then
# a fresh connection straight to the proxy is served within the bound
# (100 ms by default; 1 s allowed on a loaded machine).
start_proxy defaults
DEF_LOG=$PROXY_LOG
DEF_ADDR=$PROXY_ADDR
NGINX_WORKERS=4 start_nginx defaults "$PROXY_ADDR"
D=$NGINX_URL
TILE=/here-proxy/base/mc/5/6/7/png
req GET "$D$TILE"
check_status 200 "defaults: the tile, cached"
wrk -t 2 -c 256 -d 3s --timeout 10s "$D$TILE" >"$RUN_DIR/wrk.out" 2>&1
diag "$(cat "$RUN_DIR/wrk.out")"
REQS=$(awk '/requests in/ { print $1 }' "$RUN_DIR/wrk.out")
assert_match "${REQS:-0}" '^[1-9][0-9]*$' "wrk -c 256: requests were answered ($REQS)"
assert_not_contains "$(cat "$RUN_DIR/wrk.out")" "Socket errors" "wrk -c 256: no socket errors or timeouts"
assert_not_contains "$(cat "$RUN_DIR/wrk.out")" "Non-2xx" "wrk -c 256: every response 2xx"
# wrk ends with requests in flight: NGINX logs those as 499, nothing else.
assert_eq "$(awk '$9 != 200 && $9 != 499' "$NGINX_DIR/access.log" | wc -l)" 0 \
    "NGINX's access log: no status but 200 (and 499 for what wrk left in flight)"
below "$(awk '$9 == 499' "$NGINX_DIR/access.log" | wc -l)" 257 "... at most one 499 per wrk connection"
# A request NGINX sent on a pooled connection just as the proxy closed it
# shows in its error log ("upstream prematurely closed connection"), and
# NGINX sent it again on a new connection: the client got its 200.
diag "NGINX retried $(grep -c 'upstream prematurely closed' "$NGINX_DIR/error.log") requests on connections closed under it"
diag "after wrk: workers $(curl -sS "$D/metrics/prometheus" | grep -E '^hereproxy_(workers|idle_conn)' | tr '\n' ' ')"
# What wrk left: NGINX's pools hold connections that hold workers.
OUT=$(python3 "$FCGI_GET" --timeout 5 "$DEF_ADDR" /healthz)
assert_match "$OUT" '^200 ' "after wrk: a fresh connection straight to the proxy is served ($OUT)"
below "$(cut -d' ' -f2 <<<"$OUT")" 1 "... within 1 s"
# And through each NGINX worker (a new connection where its pool is empty).
urls=()
for i in $(seq 1 16); do urls+=("$D$TILE?indice=after"); done
fetch_parallel "$RUN_DIR/after" "${urls[@]}"
assert_eq "$(results_eval "$RUN_DIR/after" 'Counter((r["status"], r["error"]) for r in rs)')" \
    '{"(200, None)": 16}' "after wrk: 16 requests at once through NGINX, all 200"

for f in "$BOUND_LOG" "$INUSE_LOG" "$FEW_LOG" "$RACE_LOG" "$OFF_LOG" "$DEF_LOG"; do
    check_log_json "$f" "$(basename "$f"): JSON lines" 0
done
check_no_key_leak "no key in responses or logs" "$BOUND_LOG" "$INUSE_LOG" "$FEW_LOG" "$RACE_LOG" \
    "$OFF_LOG" "$DEF_LOG"
finish
