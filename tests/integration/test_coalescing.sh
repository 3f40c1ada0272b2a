#!/bin/bash
# Concurrent misses for one tile cost one upstream request: inside one
# process (a flight that every request reads), and across processes that
# share memcached (an add lock; the others wait for the entry).
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi memcached curl python3
require_bin

start_upstream
start_memcached

# check_burst DIR NAME N: N responses, all 200, whole and identical.
check_burst() {
    local r=$1 name=$2 n=$3
    assert_eq "$(results_eval "$r" 'len(rs)')" "$n" "$name: $n responses"
    assert_eq "$(results_eval "$r" 'dict(Counter(x["status"] for x in rs))')" "{\"200\": $n}" "$name: all 200"
    assert_eq "$(results_eval "$r" '[x["error"] for x in rs if x["error"]][:3]')" "[]" "$name: every body whole"
    assert_eq "$(results_eval "$r" 'len(set(x["sha1"] for x in rs))')" 1 "$name: $n identical bodies"
    assert_eq "$(results_eval "$r" 'all(x["length"] == int(x["headers"].get("content-length", -1)) > 0 for x in rs)')" true \
        "$name: every body as long as its Content-Length"
    assert_eq "$(results_eval "$r" 'all(x["headers"].get("content-type", "").startswith("image/png") for x in rs)')" true \
        "$name: every response image/png"
}

# ------------------------------------------------ one process, 64 requests
start_proxy one
LOG_ONE=$PROXY_LOG
start_nginx one "$PROXY_ADDR"
P=$NGINX_URL/here-proxy
TILE=/base/mc/8/100/101/png
# Slow enough that all 64 arrive while the first is still in flight.
upstream_control delay "ms=1500&times=-1&path=/v3$TILE"
urls=()
for i in $(seq 64); do urls+=("$P$TILE?indice=c$i"); done
fetch_parallel "$RUN_DIR/one" "${urls[@]}"
check_burst "$RUN_DIR/one" "one process, 64 concurrent" 64
assert_eq "$(upstream_path_requests "/v3$TILE")" 1 "one process, 64 concurrent: exactly 1 upstream request"
assert_eq "$(results_eval "$RUN_DIR/one" 'sum(1 for x in rs if x["headers"].get("x-cache") == "MISS")')" 1 \
    "one process, 64 concurrent: exactly one X-Cache MISS"
assert_eq "$(results_eval "$RUN_DIR/one" 'sorted(set(x["headers"].get("x-cache") for x in rs) - {"MISS"})')" '["COALESCED"]' \
    "one process, 64 concurrent: the others are X-Cache COALESCED"
assert_eq "$(results_eval "$RUN_DIR/one" 'sorted(x["headers"].get("x-index") for x in rs) == sorted("c%d" % i for i in range(1, 65))')" true \
    "one process, 64 concurrent: each response carries its own X-Index"
n=$(python3 - "$LOG_ONE" <<'EOF'
import json, sys
c = {}
for line in open(sys.argv[1]):
    try:
        o = json.loads(line)
    except ValueError:
        continue
    if o.get("path") == "/here-proxy/base/mc/8/100/101/png":
        c[o.get("cache_status")] = c.get(o.get("cache_status"), 0) + 1
print(json.dumps(c, sort_keys=True))
EOF
)
assert_eq "$n" '{"COALESCED": 63, "MISS": 1}' "one process: access log has 1 MISS and 63 COALESCED lines"
req GET "$P$TILE"
check_header X-Cache HIT "one process: afterwards a HIT"
assert_eq "$(upstream_path_requests "/v3$TILE")" 1 "one process: still 1 upstream request"

# ------------------------------------------------ a failed flight
# Every reader of a flight that fails gets the error; nothing is cached.
TILE=/base/mc/8/100/102/png
upstream_control delay "ms=1000&times=-1&path=/v3$TILE"
upstream_control fail "status=404&times=1&path=/v3$TILE"
urls=()
for i in $(seq 16); do urls+=("$P$TILE"); done
fetch_parallel "$RUN_DIR/fail" "${urls[@]}"
assert_eq "$(results_eval "$RUN_DIR/fail" 'dict(Counter(x["status"] for x in rs))')" '{"404": 16}' \
    "one process, 16 concurrent on an upstream 404: all 404"
assert_eq "$(results_eval "$RUN_DIR/fail" 'all(x["headers"].get("content-type", "").startswith("application/json") for x in rs)')" true \
    "one process, 16 concurrent on an upstream 404: all JSON"
assert_eq "$(upstream_path_requests "/v3$TILE")" 1 "one process, 16 concurrent on an upstream 404: 1 upstream request"

# ------------------------------------------------ two processes, one memcached
start_proxy a "MEMCACHED_SERVERS=127.0.0.1:$MEMCACHED_PORT"
LOG_A=$PROXY_LOG
start_nginx a "$PROXY_ADDR"
A=$NGINX_URL/here-proxy
start_proxy b "MEMCACHED_SERVERS=127.0.0.1:$MEMCACHED_PORT"
LOG_B=$PROXY_LOG
start_nginx b "$PROXY_ADDR"
B=$NGINX_URL/here-proxy
TILE=/base/mc/8/100/103/png
upstream_control delay "ms=1500&times=-1&path=/v3$TILE"
urls=()
for i in $(seq 32); do urls+=("$A$TILE?indice=a$i" "$B$TILE?indice=b$i"); done
fetch_parallel "$RUN_DIR/two" "${urls[@]}"
check_burst "$RUN_DIR/two" "two processes, 2x32 concurrent" 64
assert_eq "$(upstream_path_requests "/v3$TILE")" 1 "two processes, 2x32 concurrent: exactly 1 upstream request"
assert_eq "$(results_eval "$RUN_DIR/two" 'sum(1 for x in rs if x["headers"].get("x-cache") == "MISS")')" 1 \
    "two processes, 2x32 concurrent: exactly one X-Cache MISS"
for n in A B; do
    eval "url=\$$n"
    req GET "$url$TILE"
    check_header X-Cache HIT "two processes: afterwards a HIT via $n"
done
assert_eq "$(upstream_path_requests "/v3$TILE")" 1 "two processes: still 1 upstream request"

check_log_json "$LOG_ONE" "proxy one: JSON log lines" 64
check_log_json "$LOG_A" "proxy a: JSON log lines" 32
check_log_json "$LOG_B" "proxy b: JSON log lines" 32
check_no_key_leak "no key in responses or logs" "$LOG_ONE" "$LOG_A" "$LOG_B"
finish
