#!/bin/bash
# Rate limits in one instance: RATE_LIMIT_INDEX exact under concurrency
# (10/minute: 25 concurrent requests of one índice give 10 tiles and 15
# 429s, none of which reach HERE), RateLimit-* headers on every response of
# a limited route, per-índice overrides, and RATE_LIMIT_IP keyed by the
# client address behind a trusted proxy (X-Forwarded-For).
. "$(dirname "$0")/lib.sh"

require_cmds nginx spawn-fcgi curl python3
require_bin

start_upstream
start_proxy idx RATE_LIMIT_INDEX=10/minute \
    RATE_LIMIT_INDEX_OVERRIDES=vip:1000/minute,burst=1000,free:off
LOG_IDX=$PROXY_LOG
start_nginx idx "$PROXY_ADDR"
P=$NGINX_URL/here-proxy

# ------------------------------------------------ 25 at once, one índice
urls=()
for i in $(seq 0 24); do
    urls+=("$P/base/mc/8/$i/3/png?indice=busy")
done
fetch_parallel "$RUN_DIR/burst" "${urls[@]}"
assert_eq "$(results_eval "$RUN_DIR/burst" 'Counter(r["status"] for r in rs)')" \
    '{"200": 10, "429": 15}' "25 concurrent requests of one índice: exactly 10 tiles and 15 429s"
assert_eq "$(upstream_requests)" 10 "the 15 limited requests never reached HERE"
assert_eq "$(results_eval "$RUN_DIR/burst" 'all(r["error"] is None for r in rs)')" true \
    "every one of the 25 got a whole response"
assert_eq "$(results_eval "$RUN_DIR/burst" 'sorted(int(r["headers"].get("ratelimit-remaining", -1)) for r in rs if r["status"] == 200)')" \
    '[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]' "the 10 tiles counted the bucket down: RateLimit-Remaining 9 .. 0"
assert_eq "$(results_eval "$RUN_DIR/burst" 'sorted(set(r["headers"].get("ratelimit-limit") for r in rs))')" \
    '["10"]' "RateLimit-Limit: 10 on all 25"
assert_eq "$(results_eval "$RUN_DIR/burst" 'all(r["headers"].get("ratelimit-remaining") == "0" and 1 <= int(r["headers"].get("retry-after", 0)) <= 60 and 1 <= int(r["headers"].get("ratelimit-reset", 0)) <= 60 and r["headers"].get("content-type") == "application/json" for r in rs if r["status"] == 429)')" \
    true "each 429: JSON, Retry-After 1..60, RateLimit-Remaining 0, RateLimit-Reset 1..60"
assert_eq "$(results_eval "$RUN_DIR/burst" 'sorted(set(json.load(open("%s/%d.body" % (sys.argv[1].rsplit("/", 1)[0], r["i"]))).get("status") for r in rs if r["status"] == 429))')" \
    '[429]' "each 429 body says status 429"

# A tile one of the 10 fetched: in the cache now.
CACHED=$(results_eval "$RUN_DIR/burst" 'next(r["url"] for r in rs if r["status"] == 200)')
CACHED=${CACHED%%\?*}
req GET "$CACHED?indice=busy"
check_json_error 429 "busy: a cached tile is limited too"
assert_contains "$(json_field 'd["error"]')" "rate limit exceeded for indice busy" "busy: the 429 names the índice"
assert_match "$(header Retry-After)" '^[1-9][0-9]?$' "busy: Retry-After is whole seconds"
assert_eq "$(header RateLimit-Limit)" 10 "busy: RateLimit-Limit 10 on the 429"
req GET "$P/copyright?indice=busy"
check_json_error 429 "busy: metadata is a limited route as well"

req GET "$CACHED?indice=other"
check_status 200 "another índice is untouched: 200"
check_header X-Cache HIT "another índice: the tile busy fetched is a HIT"
check_header RateLimit-Limit 10 "another índice: RateLimit-Limit 10"
check_header RateLimit-Remaining 9 "another índice: RateLimit-Remaining 9 (its own bucket)"
assert_match "$(header RateLimit-Reset)" '^[1-9]$|^10$' "another índice: RateLimit-Reset is when its bucket is full again (<= 10 s)"

# ------------------------------------------------ overrides
vip_ok=0 free_ok=0 free_hdr=0
for i in $(seq 1 15); do
    req GET "$P/base/mc/8/$i/3/png?indice=vip"
    [ "$HTTP_STATUS" = 200 ] && vip_ok=$((vip_ok + 1))
    req GET "$P/base/mc/8/$i/3/png?indice=free"
    [ "$HTTP_STATUS" = 200 ] && free_ok=$((free_ok + 1))
    [ -n "$(header RateLimit-Limit)" ] && free_hdr=$((free_hdr + 1))
done
assert_eq "$vip_ok" 15 "override vip:1000/minute: 15 requests, all 200"
req GET "$P/base/mc/8/1/3/png?indice=vip"
check_header RateLimit-Limit 1000 "override vip: RateLimit-Limit 1000"
assert_eq "$free_ok" 15 "override free:off: 15 requests, all 200"
assert_eq "$free_hdr" 0 "override free:off: no RateLimit headers (not limited)"

req GET "$NGINX_URL/healthz"
check_status 200 "/healthz 200"
assert_eq "$(header RateLimit-Limit)" "" "/healthz carries no RateLimit headers"

limited=$(python3 - "$LOG_IDX" <<'EOF'
import json, sys
n = 0
for line in open(sys.argv[1]):
    try:
        o = json.loads(line)
    except ValueError:
        continue
    if o.get("event") == "access" and o.get("indice") == "busy" and o.get("status") == 429:
        n += 1
print(n)
EOF
)
assert_eq "$limited" 17 "the access log has the 17 429s of índice busy"

# ------------------------------------------------ per client, trusted proxy
start_proxy ip RATE_LIMIT_IP=3/minute RATE_TRUSTED_PROXIES=10.0.0.0/8,127.0.0.1
start_nginx ip "$PROXY_ADDR"
Q=$NGINX_URL/here-proxy
for i in 1 2 3; do
    req GET "$Q/base/mc/9/$i/1/png?indice=a$i" -H "X-Forwarded-For: 203.0.113.5"
    check_status 200 "RATE_LIMIT_IP: client 203.0.113.5 request $i of 3: 200"
done
check_header RateLimit-Remaining 0 "RATE_LIMIT_IP: RateLimit-Remaining 0 after 3"
req GET "$Q/base/mc/9/4/1/png?indice=a4" -H "X-Forwarded-For: 203.0.113.5"
check_json_error 429 "RATE_LIMIT_IP: 203.0.113.5's 4th request is 429 whatever the índice"
assert_contains "$(json_field 'd["error"]')" "RATE_LIMIT_IP" "RATE_LIMIT_IP: the 429 says it is the address limit"
req GET "$Q/base/mc/9/4/1/png" -H "X-Forwarded-For: 198.51.100.99, 203.0.113.5"
check_status 429 "RATE_LIMIT_IP: a hop the client prepended is ignored (the rightmost untrusted hop counts)"
req GET "$Q/base/mc/9/4/1/png" -H "X-Forwarded-For: 203.0.113.5, 10.1.2.3"
check_status 429 "RATE_LIMIT_IP: through a second trusted proxy (10.1.2.3) it is still 203.0.113.5"
req GET "$Q/base/mc/9/4/1/png" -H "X-Forwarded-For: 203.0.113.6"
check_status 200 "RATE_LIMIT_IP: another client (203.0.113.6) is untouched"
check_header RateLimit-Remaining 2 "RATE_LIMIT_IP: 203.0.113.6 has its own bucket"

# Behind an untrusted sender X-Forwarded-For is not believed.
start_proxy untrusted RATE_LIMIT_IP=2/minute RATE_TRUSTED_PROXIES=10.0.0.0/8
start_nginx untrusted "$PROXY_ADDR"
U=$NGINX_URL/here-proxy
codes=
for i in 1 2 3; do
    req GET "$U/base/mc/9/$i/2/png" -H "X-Forwarded-For: 192.0.2.$i"
    codes="$codes $HTTP_STATUS"
done
assert_eq "$codes" " 200 200 429" "untrusted REMOTE_ADDR: X-Forwarded-For is ignored, 127.0.0.1 is the client"

check_log_json "$LOG_IDX" "proxy log is JSON lines with complete access lines" 20
check_no_key_leak "no key in responses or logs" "$LOG_IDX"
finish
