#!/bin/bash
# Metrics and request logs on a live proxy (NGINX in front, memcached
# behind): an exact workload, then the exact numbers in /metrics/prometheus
# and /metrics; promtool check metrics and the Grafana dashboard's metric
# names against the live scrape; METRICS_ALLOW; X-Request-ID; lifecycle
# events; every log line as JSON with the expected fields.
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi memcached curl python3
require_bin
# promtool (Debian package prometheus) is required: a missing one fails the
# test, in CI and locally alike.
command -v promtool >/dev/null 2>&1 ||
    die "missing promtool (apt-get install prometheus): needed for 'promtool check metrics'"

start_upstream
start_memcached
T0=$(date +%s)
# 48 threads: more than NGINX's FastCGI keep-alive pool (32), which pins
# one thread per kept connection; the gauge must show exactly that.
start_proxy main "MEMCACHED_SERVERS=127.0.0.1:$MEMCACHED_PORT" \
    HEREPROXY_THREADS=48 CACHE_COALESCE_WAIT_MS=0
MAIN_LOG=$PROXY_LOG
MAIN_PID=$PROXY_PID
start_nginx main "$PROXY_ADDR"
U=$NGINX_URL

# ------------------------------------------------------------ the workload
# Indice A: one miss, then four hits of the same tile.
A_TILE=/here-proxy/base/mc/5/3/7/png
req GET "$U$A_TILE?indice=A"
check_status 200 "A: first request 200"
check_header X-Cache MISS "A: first request is a MISS"
A_LEN=$(stat -c %s "$HTTP_BODY_FILE")
for i in 1 2 3 4; do
    req GET "$U$A_TILE?indice=A"
    check_status 200 "A: request $((i + 1)) 200"
    check_header X-Cache HIT "A: request $((i + 1)) is a HIT"
done
# Indice B: three different tiles, each a miss.
B_LEN=0
for x in 1 2 3; do
    req GET "$U/here-proxy/base/mc/6/$x/9/png?indice=B"
    check_status 200 "B: tile $x 200"
    check_header X-Cache MISS "B: tile $x is a MISS"
    B_LEN=$((B_LEN + $(stat -c %s "$HTTP_BODY_FILE")))
done
assert_eq "$(upstream_requests)" 4 "the upstream was asked exactly 4 times"
# Indice P: 24 concurrent hits of A's tile, one connection each.
urls=()
for i in $(seq 1 24); do urls+=("$U$A_TILE?indice=P"); done
fetch_parallel "$RUN_DIR/par" "${urls[@]}"
assert_eq "$(results_eval "$RUN_DIR/par" 'Counter((r["status"], r["headers"].get("x-cache")) for r in rs)')" \
    '{"(200, '"'"'HIT'"'"')": 24}' "P: 24 concurrent requests, all 200 HIT"

# ------------------------------------------------------- Prometheus scrape
req GET "$U/metrics/prometheus"
check_status 200 "/metrics/prometheus answers 200 to loopback"
assert_match "$(header Content-Type)" '^text/plain; version=0\.0\.4' \
    "/metrics/prometheus Content-Type text/plain; version=0.0.4"
SCRAPE=$(save_body scrape.txt)

# sample NAME{LABELS}: the value of exactly that series in the scrape.
sample() {
    python3 - "$SCRAPE" "$1" <<'EOF'
import sys
path, want = sys.argv[1], sys.argv[2]
for line in open(path, encoding="utf-8"):
    if line.startswith("#"):
        continue
    name, _, value = line.rstrip("\n").rpartition(" ")
    if name == want:
        v = float(value)
        print(int(v) if v == int(v) else v)
        break
else:
    print("absent")
EOF
}

expect() { # SERIES VALUE
    assert_eq "$(sample "$1")" "$2" "scrape: $1 = $2"
}
expect 'hereproxy_requests_total{indice="A",cache="miss",code="200"}' 1
expect 'hereproxy_requests_total{indice="A",cache="hit",code="200"}' 4
expect 'hereproxy_requests_total{indice="B",cache="miss",code="200"}' 3
expect 'hereproxy_requests_total{indice="B",cache="hit",code="200"}' absent
expect 'hereproxy_requests_total{indice="P",cache="hit",code="200"}' 24
expect 'hereproxy_response_bytes_total{indice="P"}' $((24 * A_LEN))
expect 'hereproxy_upstream_requests_total{indice="A",outcome="ok"}' 1
expect 'hereproxy_upstream_requests_total{indice="B",outcome="ok"}' 3
expect 'hereproxy_upstream_bytes_total{indice="A"}' "$A_LEN"
expect 'hereproxy_upstream_bytes_total{indice="B"}' "$B_LEN"
expect 'hereproxy_response_bytes_total{indice="A"}' $((5 * A_LEN))
expect 'hereproxy_response_bytes_total{indice="B"}' "$B_LEN"
expect 'hereproxy_request_duration_seconds_count{cache="hit"}' 28
expect 'hereproxy_request_duration_seconds_count{cache="miss"}' 4
expect 'hereproxy_upstream_duration_seconds_count' 4
expect 'hereproxy_upstream_http_version_total{version="1.1"}' 4
expect 'hereproxy_upstream_retries_total' 0
expect 'hereproxy_cache_entries' 4
expect 'hereproxy_memcached_configured' 1
expect 'hereproxy_memcached_up' 1
expect 'hereproxy_memcached_errors_total' 0
expect 'hereproxy_breaker_open' 0
expect 'hereproxy_threads' 48
expect 'hereproxy_indices_tracked' 3
VERSION=$("$HEREPROXY_BIN" --version | awk '{print $2}')
assert_match "$(grep '^hereproxy_build_info{' "$SCRAPE")" \
    "^hereproxy_build_info\\{version=\"${VERSION//./\\.}\",libcurl=\"[0-9]+\\.[0-9]+[^\"]*\"\\} 1\$" \
    "scrape: hereproxy_build_info{version=$VERSION,libcurl=...} 1"
# The scrape itself is a busy worker; the previous request's worker may
# not have counted itself out yet.
assert_match "$(sample 'hereproxy_threads_busy')" '^[12]$' "scrape: 1 or 2 threads busy"
assert_match "$(sample 'hereproxy_memcached_duration_seconds_count')" '^[1-9][0-9]*$' \
    "scrape: memcached operations were timed"
assert_match "$(sample 'hereproxy_cache_bytes')" '^[1-9][0-9]*$' "scrape: cache bytes > 0"
assert_match "$(sample 'hereproxy_uptime_seconds')" '^[0-9.]+$' "scrape: uptime is a number"
assert_match "$(sample 'hereproxy_start_time_seconds')" '^1[0-9]{9}' "scrape: start time is a Unix time"

# ------------------------------------------------- process metrics
# The process collector's families (Prometheus client conventions), read
# from /proc at scrape time; each checked against what the kernel says.
between() { # VALUE LOW HIGH NAME: LOW <= VALUE <= HIGH (numbers)
    if python3 -c 'import sys; v, lo, hi = map(float, sys.argv[1:4]); sys.exit(0 if lo <= v <= hi else 1)' \
        "$1" "$2" "$3" 2>/dev/null; then
        ok "$4"
    else
        not_ok "$4" "value '$1' not within [$2, $3]"
    fi
}
NOW=$(date +%s)
between "$(sample process_start_time_seconds)" $((T0 - 2)) $((NOW + 1)) \
    "scrape: process_start_time_seconds is when the proxy started (within this test)"
between "$(sample process_start_time_seconds)" "$(sample hereproxy_start_time_seconds)" \
    "$(sample hereproxy_start_time_seconds)" "scrape: process_ and hereproxy_start_time_seconds agree"
RSS_KB=$(awk '/^VmRSS:/ { print $2 }' "/proc/$MAIN_PID/status")
between "$(sample process_resident_memory_bytes)" $((RSS_KB * 1024 / 2)) $((RSS_KB * 1024 * 2)) \
    "scrape: process_resident_memory_bytes near VmRSS ($RSS_KB kB)"
VM_KB=$(awk '/^VmSize:/ { print $2 }' "/proc/$MAIN_PID/status")
between "$(sample process_virtual_memory_bytes)" $((VM_KB * 1024 * 9 / 10)) $((VM_KB * 1024 * 11 / 10)) \
    "scrape: process_virtual_memory_bytes near VmSize ($VM_KB kB)"
# A few dozen requests have run: some CPU time, less than the wall time.
between "$(sample process_cpu_seconds_total)" 0.01 $((NOW - T0 + 1)) \
    "scrape: process_cpu_seconds_total counts CPU time"
MAX_FDS=$(awk '/^Max open files/ { print $4 }' "/proc/$MAIN_PID/limits")
expect process_max_fds "$MAX_FDS"
between "$(sample hereproxy_cpus_available)" 0.01 "$(nproc --all)" \
    "scrape: hereproxy_cpus_available within 0 and the CPUs of the machine"
assert_eq "$(python3 -c 'import sys; print(int(sum(map(float, sys.argv[1:]))))' \
    "$(sample 'hereproxy_workers{state="accepting"}')" \
    "$(sample 'hereproxy_workers{state="busy"}')" \
    "$(sample 'hereproxy_workers{state="idle_conn"}')")" 48 \
    "scrape: hereproxy_workers by state add up to the 48 threads"
assert_eq "$(sample hereproxy_idle_connections_closed_total)" 0 \
    "scrape: no idle connection was closed (threads to spare)"

# Hold 12 FastCGI connections to the proxy itself (no request on them):
# 12 more descriptors, and 12 more workers waiting on an idle connection.
FDS_BEFORE=$(sample process_open_fds)
IDLE_BEFORE=$(sample 'hereproxy_workers{state="idle_conn"}')
python3 -c 'import socket, sys, time
socks = [socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5) for _ in range(12)]
open(sys.argv[2], "w").close()
time.sleep(60)' "$PROXY_PORT" "$RUN_DIR/held.ready" &
HOLDER=$!
_register holder "$HOLDER"
for _ in $(seq 1 50); do [ -e "$RUN_DIR/held.ready" ] && break; sleep 0.1; done
sleep 0.3   # the workers accept them
req GET "$U/metrics/prometheus"
SCRAPE=$(save_body scrape-held.txt)
between "$(sample process_open_fds)" $((FDS_BEFORE + 12)) $((FDS_BEFORE + 40)) \
    "scrape: process_open_fds grows by the 12 held connections (from $FDS_BEFORE)"
between "$(sample 'hereproxy_workers{state="idle_conn"}')" $((IDLE_BEFORE + 12)) 48 \
    "scrape: hereproxy_workers{state=idle_conn} counts the 12 held connections"
stop_pid "$HOLDER" KILL 5
sleep 0.5   # the workers see the connections close
req GET "$U/metrics/prometheus"
SCRAPE=$(save_body scrape-released.txt)
between "$(sample process_open_fds)" 0 $((FDS_BEFORE + 6)) \
    "scrape: process_open_fds falls back once they are closed"
SCRAPE=$RUN_DIR/scrape.txt

if out=$(promtool check metrics <"$SCRAPE" 2>&1); then
    ok "promtool check metrics accepts the live scrape"
else
    not_ok "promtool check metrics accepts the live scrape" "$out"
fi
if out=$("$abs_top_srcdir/contrib/grafana/metric-names" --check "$SCRAPE" 2>&1); then
    ok "every metric name the dashboard and rules use is in the live scrape"
else
    not_ok "every metric name the dashboard and rules use is in the live scrape" "$out"
fi

# ------------------------------------------------------------ JSON summary
req GET "$U/metrics"
check_status 200 "/metrics answers 200 to loopback"
assert_match "$(header Content-Type)" '^application/json' "/metrics Content-Type application/json"
J=$(save_body metrics.json)
jf() { json_field "$1" "$J"; }
assert_eq "$(jf '[d["indices"]["A"][k] for k in ("requests","hits","misses","stale","coalesced","upstream_calls","errors","rate_limited")]')" \
    "[5, 4, 1, 0, 0, 1, 0, 0]" "JSON: A requests/hits/misses/stale/coalesced/upstream_calls/errors/rate_limited"
assert_eq "$(jf '[d["indices"]["B"][k] for k in ("requests","hits","misses","stale","coalesced","upstream_calls","errors","rate_limited")]')" \
    "[3, 0, 3, 0, 0, 3, 0, 0]" "JSON: B requests/hits/misses/stale/coalesced/upstream_calls/errors/rate_limited"
assert_eq "$(jf 'd["indices"]["A"]["hit_ratio"]')" 0.8 "JSON: A hit_ratio 0.8"
assert_eq "$(jf 'd["indices"]["B"]["hit_ratio"]')" 0 "JSON: B hit_ratio 0"
assert_eq "$(jf '[d["indices"]["A"]["bytes"], d["indices"]["A"]["upstream_bytes"]]')" \
    "[$((5 * A_LEN)), $A_LEN]" "JSON: A bytes and upstream_bytes"
assert_eq "$(jf '[d["indices"]["B"]["bytes"], d["indices"]["B"]["upstream_bytes"]]')" \
    "[$B_LEN, $B_LEN]" "JSON: B bytes and upstream_bytes"
assert_eq "$(jf '[d["indices"]["P"][k] for k in ("requests","hits","misses","upstream_calls")]')" \
    "[24, 24, 0, 0]" "JSON: P requests/hits/misses/upstream_calls"
assert_eq "$(jf '[d["totals"][k] for k in ("hits","misses","stale","coalesced","upstream_calls","errors")]')" \
    "[28, 4, 0, 0, 4, 0]" "JSON: totals hits/misses/stale/coalesced/upstream_calls/errors"
assert_eq "$(jf 'd["totals"]["hit_ratio"]')" 0.875 "JSON: totals hit_ratio 28/32"
# Exactly the documented shape: the live panel of the demo page reads it.
assert_eq "$(jf 'sorted(d)')" '["indices", "totals"]' "JSON: top level is indices and totals"
assert_eq "$(jf 'sorted(set(tuple(sorted(v)) for v in list(d["indices"].values()) + [d["totals"]]))')" \
    '[["bytes", "coalesced", "errors", "hit_ratio", "hits", "latency_ms", "misses", "rate_limited", "requests", "stale", "upstream_bytes", "upstream_calls"]]' \
    "JSON: every indice and the totals have exactly the documented fields"
assert_eq "$(jf 'all(sorted(v["latency_ms"]) == ["p50", "p95"] and all(isinstance(q, (int, float)) and q > 0 for q in v["latency_ms"].values()) for v in [d["indices"]["A"], d["indices"]["B"], d["indices"]["P"], d["totals"]])')" \
    true "JSON: latency_ms p50 and p95 are positive numbers for A, B and totals"
assert_eq "$(jf 'all(v["latency_ms"]["p50"] <= v["latency_ms"]["p95"] for v in [d["indices"]["A"], d["indices"]["B"], d["totals"]])')" \
    true "JSON: p50 <= p95"
# The scrapes themselves count under indice "-" (no lookup): not in A or B.
assert_eq "$(jf 'd["indices"]["-"]["requests"] >= 1 and d["indices"]["-"]["hits"] == 0')" true \
    "JSON: metric requests count under indice - without cache lookups"

req HEAD "$U/metrics/prometheus"
check_status 200 "HEAD /metrics/prometheus 200"
req POST "$U/metrics"
check_json_error 405 "POST /metrics: 405 JSON"
check_header Allow "GET, HEAD" "POST /metrics: Allow GET, HEAD"

# ------------------------------------------------------------ X-Request-ID
req GET "$U$A_TILE?indice=R" -H 'X-Request-ID: given-id_1.2:3'
check_header X-Request-ID 'given-id_1.2:3' "a valid X-Request-ID is echoed"
req GET "$U$A_TILE?indice=R"
GEN_ID=$(header X-Request-ID)
assert_match "$GEN_ID" '^[0-9a-f]{16,}$' "without X-Request-ID one is generated (16+ hex digits)"
req GET "$U$A_TILE?indice=R" -H 'X-Request-ID: bad id"<script>'
BAD_ID=$(header X-Request-ID)
assert_match "$BAD_ID" '^[0-9a-f]{16,}$' "an invalid X-Request-ID is replaced by a generated one"
req GET "$U/here-proxy/nothing" -H 'X-Request-ID: err-1'
check_json_error 404 "an error response: 404 JSON"
check_header X-Request-ID err-1 "an error response carries X-Request-ID too"
LONG_ID=$(printf 'x%.0s' $(seq 1 129))
req GET "$U/healthz" -H "X-Request-ID: $LONG_ID"
assert_match "$(header X-Request-ID)" '^[0-9a-f]{16,}$' "a 129-byte X-Request-ID is replaced"

log_has() { # PYEXPR NAME: some line l of the main log satisfies PYEXPR
    local out
    if out=$(python3 - "$MAIN_LOG" "$1" <<'EOF'
import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    try:
        l = json.loads(line)
    except ValueError:
        continue
    if eval(sys.argv[2]):
        sys.exit(0)
print("no log line satisfies " + sys.argv[2]); sys.exit(1)
EOF
    ); then ok "$2"; else not_ok "$2" "$out"; fi
}
log_has 'l.get("request_id") == "given-id_1.2:3" and l.get("indice") == "R"' \
    "log: the given request id is on its access line"
log_has "l.get(\"request_id\") == \"$GEN_ID\" and l.get(\"indice\") == \"R\"" \
    "log: the generated request id is on its access line"
log_has 'l.get("request_id") == "err-1" and l.get("status") == 404' \
    "log: the error's request id is on its access line"
log_has 'l.get("indice") == "A" and l.get("cache_status") == "MISS" and l.get("upstream_attempts") == 1 and l.get("upstream_status") == 200 and l.get("upstream_http") == "HTTP/1.1" and l.get("bytes") > 0' \
    "log: the miss line has upstream attempts 1, status 200, HTTP/1.1 and bytes"
log_has 'l.get("indice") == "A" and l.get("cache_status") == "HIT" and l.get("upstream_attempts") == 0 and l.get("upstream_status") is None and l.get("upstream_http") is None' \
    "log: a hit line has upstream attempts 0 and null upstream status and version"

# ---------------------------------------------- memcached lost and back
stop_memcached
req GET "$U/here-proxy/base/mc/7/1/1/png?indice=M"
check_status 200 "memcached down: a new tile still 200"
req GET "$U/metrics/prometheus"
SCRAPE=$(save_body scrape2.txt)
expect 'hereproxy_memcached_up' 0
assert_match "$(sample 'hereproxy_memcached_errors_total')" '^[1-9][0-9]*$' \
    "scrape: memcached errors counted while it is down"
start_memcached "$MEMCACHED_PORT"
wait_status 200 15 "$U/readyz"
check_status 200 "memcached back: /readyz 200"
assert_eq "$(log_events "$MAIN_LOG" memcached_lost)" 1 "log: one memcached_lost event"
assert_eq "$(log_events "$MAIN_LOG" memcached_back)" 1 "log: one memcached_back event"

# ------------------------------------------- METRICS_ALLOW, breaker events
start_proxy closed METRICS_ALLOW=10.0.0.0/8 HERE_RETRIES=1 \
    HERE_BREAKER_THRESHOLD=2 HERE_BREAKER_COOLDOWN_MS=3000
CLOSED_LOG=$PROXY_LOG
start_nginx closed "$PROXY_ADDR"
C=$NGINX_URL
req GET "$C/metrics/prometheus"
check_json_error 403 "METRICS_ALLOW=10.0.0.0/8: /metrics/prometheus 403 JSON to loopback"
req GET "$C/metrics"
check_json_error 403 "METRICS_ALLOW=10.0.0.0/8: /metrics 403 JSON to loopback"
assert_not_contains "$HTTP_BODY" hereproxy_requests_total "403: no metrics in the body"

upstream_control fail 'status=500&times=2'
req GET "$C/here-proxy/base/mc/8/1/1/png?indice=K"
check_json_error 502 "HERE 500: 502 JSON"
req GET "$C/here-proxy/base/mc/8/1/2/png?indice=K"
check_json_error 502 "HERE 500 again: 502 JSON (breaker opens)"
req GET "$C/here-proxy/base/mc/8/1/3/png?indice=K"
check_json_error 503 "breaker open: 503 JSON"
sleep 3.3   # HERE_BREAKER_COOLDOWN_MS=3000: long enough for a loaded machine
req GET "$C/here-proxy/base/mc/8/1/4/png?indice=K"
check_status 200 "after the cooldown the probe succeeds: 200"
assert_eq "$(log_events "$CLOSED_LOG" breaker_open)" 1 "log: one breaker_open event"
assert_eq "$(log_events "$CLOSED_LOG" breaker_closed)" 1 "log: one breaker_closed event"

# ------------------------------------------- refused before admission
# METRICS_MAX_INDICES=5, and many requests naming junk índices that are
# refused before admission (parse errors, unlisted índices, bad tokens):
# they count under indice="_refused" and take no series, so the admitted
# índice still gets its own (before, the junk filled the table and it
# was counted as _other).
REF_TOKEN="tok-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
start_proxy refused METRICS_MAX_INDICES=5 HEREPROXY_INDICES=good \
    "HEREPROXY_CLIENT_TOKENS=$REF_TOKEN:good"
REFUSED_LOG=$PROXY_LOG
start_nginx refused "$PROXY_ADDR"
R=$NGINX_URL/here-proxy
for i in $(seq 1 20); do
    req GET "$R/base/mc/3/1/1/png?indice=junk$i&bogus=1&token=$REF_TOKEN"
    [ "$HTTP_STATUS" = 400 ] || break
done
check_json_error 400 "refused: 20 requests with unknown parameters, each 400"
for i in $(seq 21 30); do
    req GET "$R/base/mc/3/1/1/png?indice=junk$i"
    [ "$HTTP_STATUS" = 401 ] || break
done
check_json_error 401 "refused: 10 requests without a token, each 401"
req GET "$R/base/mc/99/1/1/png?indice=junk31&token=$REF_TOKEN"
check_json_error 400 "refused: a zoom out of range, 400"
req GET "$R/nothing?indice=junk32"
check_json_error 404 "refused: no such endpoint, 404"
req GET "$R/base/mc/3/1/1/png?token=$REF_TOKEN"
check_status 200 "refused: the admitted índice's request is served"
req GET "$NGINX_URL/metrics/prometheus"
assert_contains "$HTTP_BODY" 'hereproxy_requests_total{indice="good",cache="miss",code="200"} 1' \
    "refused: the admitted índice has a series of its own"
assert_contains "$HTTP_BODY" 'hereproxy_requests_total{indice="_refused",cache="none",code="400"} 21' \
    "refused: the 400s count under indice=_refused"
assert_contains "$HTTP_BODY" 'hereproxy_requests_total{indice="_refused",cache="none",code="401"} 10' \
    "refused: the 401s count under indice=_refused"
assert_contains "$HTTP_BODY" 'hereproxy_errors_total{indice="_refused",kind="unauthorized"} 10' \
    "refused: ... and their errors too"
assert_not_contains "$HTTP_BODY" 'indice="junk' "refused: no junk índice has a series"
assert_not_contains "$HTTP_BODY" 'indice="_other"' "refused: nothing was pushed to _other"
assert_eq "$(printf '%s\n' "$HTTP_BODY" | sed -n 's/^hereproxy_indices_tracked //p')" 1 \
    "refused: one índice tracked"
sleep 0.3   # LOG_FLUSH_MS
assert_eq "$(grep '"event":"access"' "$REFUSED_LOG" | grep -c '"indice":"junk')" 30 \
    "refused: the access lines keep the índice that was asked"

# ----------------------------------------------- stop, then every line
stop_pid "$MAIN_PID" TERM 15
assert_eq "$STOP_RC" 0 "main proxy stops cleanly on SIGTERM"
assert_eq "$(log_events "$MAIN_LOG" start)" 1 "log: one start event"
assert_eq "$(log_events "$MAIN_LOG" stop)" 1 "log: one stop event"

check_every_line() { # LOG NAME MIN_ACCESS
    local out
    if out=$(python3 - "$1" "$3" <<'EOF'
import json, re, sys
path, min_access = sys.argv[1], int(sys.argv[2])
need = {"ts": str, "level": str, "event": str, "request_id": str,
        "method": str, "path": str, "indice": str, "cache_status": str,
        "status": int, "latency_ms": (int, float), "bytes": int,
        "upstream_attempts": int}
nullable = {"upstream_status": int, "upstream_http": str}
bad, access, lines = [], 0, 0
for n, line in enumerate(open(path, encoding="utf-8"), 1):
    lines += 1
    try:
        l = json.loads(line)
    except ValueError as e:
        bad.append("line %d is not JSON (%s): %s" % (n, e, line[:200]))
        continue
    if not isinstance(l, dict) or not isinstance(l.get("ts"), str) \
            or l.get("level") not in ("debug", "info", "warn", "error"):
        bad.append("line %d lacks ts/level: %s" % (n, line[:200]))
        continue
    if l.get("event") != "access":
        if "event" not in l and "msg" not in l:
            bad.append("line %d is neither an event nor a message: %s" % (n, line[:200]))
        continue
    access += 1
    for k, t in need.items():
        if not isinstance(l.get(k), t):
            bad.append("access line %d: %s missing or not %s: %s" % (n, k, t, line[:200]))
    for k, t in nullable.items():
        if k not in l or not (l[k] is None or isinstance(l[k], t)):
            bad.append("access line %d: %s missing: %s" % (n, k, line[:200]))
    if not re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", l.get("request_id") or ""):
        bad.append("access line %d: bad request_id: %s" % (n, line[:200]))
if access < min_access:
    bad.append("only %d access lines of %d, expected at least %d" % (access, lines, min_access))
print("\n".join(bad[:10]))
sys.exit(1 if bad else 0)
EOF
    ); then ok "$2"; else not_ok "$2" "$out"; fi
}
check_every_line "$MAIN_LOG" "main log: every line is JSON; access lines have every field" 20
check_every_line "$CLOSED_LOG" "second log: every line is JSON; access lines have every field" 6
check_every_line "$REFUSED_LOG" "refused log: every line is JSON; access lines have every field" 30
check_no_key_leak "no key in responses or logs" "$MAIN_LOG" "$CLOSED_LOG" "$REFUSED_LOG"
finish
